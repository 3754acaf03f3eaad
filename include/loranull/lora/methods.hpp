#pragma once
// The initialisation methods by name, and the one dispatch over them.
//
//   Method            which initialiser (lora/initialisers.hpp) runs
//   method_table      every name a user may type, with what it means: the
//                     method, what trains by default, whether it needs data
//   parse_method      a name -> its table row, or an error listing the names
//                     (find_method: nullptr instead of the error)
//   initialise        (backend, W, method, data, config) -> LoraFactors
//
// Names (the tools' --method, the experiment's arms):
//
//   lora          A Kaiming-uniform from the seed, B = 0          no data
//   pissa         top-r singular triplets of W                    no data
//   pissa-fast    the same from a randomized SVD (q = 4)          no data
//   milora        bottom-r singular triplets of W                 no data
//   corda-kpm     last r triplets of W C_f (knowledge data)       covariance
//   corda-ipm     first r triplets of W C_f (task data)           covariance
//   lora-null     W P, P on C's r least-used directions           covariance
//   lora-null-v1  the same; A and B train                         covariance
//   lora-null-v2  the same; A frozen, B trains (SPEC.md section 4) covariance
//   olora         thin QR of W                                    no data
//   eva           A = top-r eigenvectors of the task covariance   covariance
//
// v1 and v2 share one initialisation: they differ only in what trains, which
// is MethodInfo::trainable, so every caller that attaches the factors reads it
// from the same row.

#include <string>
#include <string_view>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"
#include "loranull/linalg/covariance.hpp"
#include "loranull/linalg/null_space.hpp"
#include "loranull/lora/initialisers.hpp"
#include "loranull/lora/lora_linear.hpp"

namespace loranull {

enum class Method { lora, pissa, pissa_fast, milora, corda_kpm, corda_ipm, lora_null, olora, eva };

struct MethodInfo {
    std::string_view name;  // as typed: "lora-null-v2"
    Method method;
    Trainable trainable;    // what trains when the factors are attached
    bool needs_data;        // a covariance of calibration activations
};

inline constexpr MethodInfo method_table[] = {
    {"lora", Method::lora, Trainable::both, false},
    {"pissa", Method::pissa, Trainable::both, false},
    {"pissa-fast", Method::pissa_fast, Trainable::both, false},
    {"milora", Method::milora, Trainable::both, false},
    {"corda-kpm", Method::corda_kpm, Trainable::both, true},
    {"corda-ipm", Method::corda_ipm, Trainable::both, true},
    {"lora-null", Method::lora_null, Trainable::both, true},
    {"lora-null-v1", Method::lora_null, Trainable::both, true},
    {"lora-null-v2", Method::lora_null, Trainable::B_only, true},
    {"olora", Method::olora, Trainable::both, false},
    {"eva", Method::eva, Trainable::both, true},
};

/// "lora, pissa, ..., eva": every accepted name, for help texts and errors.
inline std::string method_names() {
    std::string out;
    for (const MethodInfo& m : method_table) out += (out.empty() ? "" : ", ") + std::string(m.name);
    return out;
}

/// The row of `name`, or nullptr.
inline const MethodInfo* find_method(std::string_view name) {
    for (const MethodInfo& m : method_table)
        if (m.name == name) return &m;
    return nullptr;
}

/// "unknown method 'x' (expected one of: lora, ...)".
inline std::string unknown_method_message(std::string_view name) {
    return "unknown method '" + std::string(name) + "' (expected one of: " + method_names() + ")";
}

/// The row of `name`; an unknown name is an error that lists the known ones.
inline const MethodInfo& parse_method(std::string_view name) {
    if (const MethodInfo* m = find_method(name)) return *m;
    fail("parse_method", unknown_method_message(name));
}

/// The first (canonical) row of a method: "lora-null" for Method::lora_null.
inline const MethodInfo& method_info(Method method) {
    for (const MethodInfo& m : method_table)
        if (m.method == method) return m;
    fail("method_info", "method ", static_cast<int>(method), " is not in the table");
}

/// What a data-driven method reads, in the precision Tc of the decompositions.
/// Give one of covariance / covariance_matrix; LoRA-Null also takes a ready
/// null space (computed once per input and shared by the layers that read it,
/// e.g. q, k and v), which then wins. Methods without data ignore all three.
template <class Bk, Real Tc = double>
struct MethodData {
    const Covariance<Bk, Tc>* covariance = nullptr;       // accumulated activations (token counts known)
    const matrix_t<Bk, Tc>* covariance_matrix = nullptr;  // or C as a plain n x n matrix
    const NullSpace<Bk, Tc>* null_space = nullptr;        // LoRA-Null: U_null (n x r), r = rank
};

/// The factors of `method` for W (m x n): W = W_res + s B A, computed in the
/// data's precision and cast to W's type last (lora/initialisers.hpp).
template <class Bk, class M, Real Tc = double>
LoraFactors<Bk, typename M::Scalar> initialise(Bk& b, const M& w, Method method, const MethodData<Bk, Tc>& data,
                                               const LoraConfig& config) {
    const MethodInfo& info = method_info(method);
    const bool has_covariance = data.covariance || data.covariance_matrix;
    require(!info.needs_data || has_covariance || (method == Method::lora_null && data.null_space), "initialise",
            "method ", info.name, " needs calibration data (a covariance, or for lora-null a null space)");
    // CorDA and EVA read C itself: the plain matrix when given (no copy), else
    // the accumulator's. LoRA-Null prefers the accumulator, whose token count
    // the rank report uses.
    auto with_matrix = [&](auto&& init) {
        return data.covariance_matrix ? init(*data.covariance_matrix) : init(*data.covariance);
    };
    switch (method) {
        case Method::lora: return lora(b, w, config);
        case Method::pissa: return pissa(b, w, config);
        case Method::pissa_fast: return pissa_fast(b, w, config);
        case Method::milora: return milora(b, w, config);
        case Method::olora: return olora(b, w, config);
        case Method::corda_kpm:
            return with_matrix([&](const auto& c) { return corda_kpm(b, w, c, config); });
        case Method::corda_ipm:
            return with_matrix([&](const auto& c) { return corda_ipm(b, w, c, config); });
        case Method::eva:
            return with_matrix([&](const auto& c) { return eva(b, w, c, config); });
        case Method::lora_null:
            if (data.null_space) return lora_null(b, w, *data.null_space, config);
            if (data.covariance) return lora_null(b, w, *data.covariance, config);
            return lora_null(b, w, *data.covariance_matrix, config);
    }
    fail("initialise", "method ", static_cast<int>(method), " is not handled");
}

}  // namespace loranull
