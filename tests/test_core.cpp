// core/ and io/dtype.hpp: errors, host matrices, the seeded RNG, half-precision
// conversions.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>

#include <loranull/core/error.hpp>
#include <loranull/core/host_matrix.hpp>
#include <loranull/core/random.hpp>
#include <loranull/io/dtype.hpp>

using namespace loranull;

TEST_CASE("error names the function and derives from std::runtime_error") {
    try {
        require(false, "Thing::method", "X is ", shape_string(3, 4), ", expected ", 5, " rows");
        FAIL("no throw");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "loranull::Thing::method: X is 3 x 4, expected 5 rows");
        CHECK(dynamic_cast<const loranull::error*>(&e) != nullptr);
    }
    CHECK_NOTHROW(require(true, "f", "never built"));
}

TEST_CASE("HostMatrix is column-major and rejects negative shapes") {
    HostMatrix<float> m(2, 3);
    m(1, 2) = 7;
    CHECK(m.data()[1 + 2 * 2] == 7);
    CHECK(m.size() == 6);
    CHECK_THROWS_AS(HostMatrix<float>(-1, 2), loranull::error);
    HostMatrix<double> e(0, 5);
    CHECK(e.size() == 0);
}

TEST_CASE("Rng: same seed same bits, different seeds differ, sane moments") {
    Rng a(42), b(42), c(43);
    for (int i = 0; i < 100; ++i) {
        const auto x = a.next_u64();
        CHECK(x == b.next_u64());
        (void)c.next_u64();
    }
    CHECK(Rng(42).next_u64() != Rng(43).next_u64());
    // First output of xoshiro256** seeded through splitmix64(0) (the state's
    // first word is splitmix64's well-known 0xE220A8397B1DCDAF), computed
    // independently in Python: pins the generator so that a seed means the
    // same numbers across versions and platforms.
    CHECK(Rng(0).next_u64() == 11091344671253066420ull);

    Rng rng(7);
    const int n = 200000;
    double sum = 0, sum2 = 0, usum = 0;
    for (int i = 0; i < n; ++i) {
        const double x = rng.normal();
        sum += x;
        sum2 += x * x;
        const double u = rng.uniform();
        CHECK_UNARY(u >= 0.0);
        CHECK_UNARY(u < 1.0);
        usum += u;
    }
    // Standard errors: mean 1/sqrt(n) = 0.0022, variance sqrt(2/n) = 0.0032.
    CHECK(std::abs(sum / n) < 0.012);
    CHECK(std::abs(sum2 / n - 1.0) < 0.016);
    CHECK(std::abs(usum / n - 0.5) < 0.004);
}

TEST_CASE("random_normal fills column by column from one stream") {
    Rng r1(5), r2(5);
    auto m = random_normal<double>(3, 4, r1);
    for (Index j = 0; j < 4; ++j)
        for (Index i = 0; i < 3; ++i) CHECK(m(i, j) == r2.normal());
    Rng r3(5);
    auto f = random_normal<float>(3, 4, r3);
    CHECK(f(2, 3) == static_cast<float>(m(2, 3)));
}

TEST_CASE("BF16: exact on representable values, round to nearest even") {
    using namespace loranull::io;
    for (std::uint32_t bits = 0; bits < 65536; ++bits) {
        const float f = bf16_to_float(static_cast<std::uint16_t>(bits));
        if (std::isnan(f)) {
            CHECK(std::isnan(bf16_to_float(float_to_bf16(f))));
            continue;
        }
        CHECK(float_to_bf16(f) == bits);
    }
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to even gives 1.
    CHECK(bf16_to_float(float_to_bf16(1.0f + 0x1.0p-8f)) == 1.0f);
    CHECK(bf16_to_float(float_to_bf16(1.0f + 0x1.8p-8f)) == 1.0f + 0x1.0p-7f);
}

TEST_CASE("F16: every bit pattern round-trips, rounding, subnormals, overflow") {
    using namespace loranull::io;
    for (std::uint32_t bits = 0; bits < 65536; ++bits) {
        const float f = f16_to_float(static_cast<std::uint16_t>(bits));
        if (std::isnan(f)) {
            CHECK(std::isnan(f16_to_float(float_to_f16(f))));
            continue;
        }
        CHECK(float_to_f16(f) == bits);
    }
    CHECK(f16_to_float(0x3C00) == 1.0f);
    CHECK(f16_to_float(0x0001) == 0x1.0p-24f);          // smallest subnormal
    CHECK(f16_to_float(0x7BFF) == 65504.0f);            // largest finite
    CHECK(std::isinf(f16_to_float(float_to_f16(65520.0f))));
    CHECK(f16_to_float(float_to_f16(65519.0f)) == 65504.0f);
    CHECK(f16_to_float(float_to_f16(1.0f + 0x1.0p-11f)) == 1.0f);  // tie to even
    CHECK(f16_to_float(float_to_f16(0x1.8p-25f)) == 0x1.0p-24f);   // 0.75 of the smallest subnormal rounds up to it
    CHECK(f16_to_float(float_to_f16(-3.0f)) == -3.0f);
}
