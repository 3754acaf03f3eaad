# The dependencies of loranull::loranull, shared by the build tree and by
# find_package(loranull) in an installed tree (so both resolve them the same way).
include(CMakeFindDependencyMacro)
find_dependency(Eigen3 3.4 NO_MODULE)
find_dependency(nlohmann_json 3.10)
find_dependency(Threads)

if(NOT DEFINED LORANULL_USE_LAPACK OR LORANULL_USE_LAPACK)
  if(NOT TARGET loranull_lapack)
    # OpenBLAS (BLAS + LAPACK) and LAPACKE. Debian's OpenBLAS exports no
    # LAPACKE_* symbols, so liblapacke is linked as well.
    find_path(LORANULL_CBLAS_INCLUDE_DIR cblas.h
      PATHS /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas PATH_SUFFIXES openblas)
    find_path(LORANULL_LAPACKE_INCLUDE_DIR lapacke.h)
    find_library(LORANULL_OPENBLAS_LIBRARY NAMES openblas
      PATHS /usr/lib/x86_64-linux-gnu/openblas-pthread)
    find_library(LORANULL_LAPACKE_LIBRARY NAMES lapacke)
    if(NOT LORANULL_CBLAS_INCLUDE_DIR OR NOT LORANULL_LAPACKE_INCLUDE_DIR OR NOT LORANULL_OPENBLAS_LIBRARY
       OR NOT LORANULL_LAPACKE_LIBRARY)
      message(FATAL_ERROR "loranull needs OpenBLAS and LAPACKE (Debian: apt-get install libopenblas-dev "
                          "liblapacke-dev), or LORANULL_USE_LAPACK=OFF for Eigen-only decompositions")
    endif()
    add_library(loranull_lapack INTERFACE IMPORTED GLOBAL)
    target_include_directories(loranull_lapack INTERFACE ${LORANULL_CBLAS_INCLUDE_DIR} ${LORANULL_LAPACKE_INCLUDE_DIR})
    target_link_libraries(loranull_lapack INTERFACE ${LORANULL_LAPACKE_LIBRARY} ${LORANULL_OPENBLAS_LIBRARY})
  endif()
endif()

# --- loranull/text (tokenizers): PCRE2 for tokenizer.json's regexes, utf8proc for
# Unicode classes and normal forms (Debian: libpcre2-dev libutf8proc-dev) ---------
# Optional: without them the rest of the library builds (the GPU check's bare
# machine has neither), and <loranull/loranull.hpp> leaves out text/ and
# pipeline/ (which tokenizes --calib-text); the tools and the tests that need
# them are not built then.
if(NOT TARGET loranull_text_deps)
  find_path(LORANULL_PCRE2_INCLUDE_DIR pcre2.h)
  find_library(LORANULL_PCRE2_LIBRARY NAMES pcre2-8)
  find_path(LORANULL_UTF8PROC_INCLUDE_DIR utf8proc.h)
  find_library(LORANULL_UTF8PROC_LIBRARY NAMES utf8proc)
  if(LORANULL_PCRE2_INCLUDE_DIR AND LORANULL_PCRE2_LIBRARY AND LORANULL_UTF8PROC_INCLUDE_DIR
     AND LORANULL_UTF8PROC_LIBRARY)
    add_library(loranull_text_deps INTERFACE IMPORTED GLOBAL)
    target_include_directories(loranull_text_deps INTERFACE ${LORANULL_PCRE2_INCLUDE_DIR} ${LORANULL_UTF8PROC_INCLUDE_DIR})
    target_link_libraries(loranull_text_deps INTERFACE ${LORANULL_PCRE2_LIBRARY} ${LORANULL_UTF8PROC_LIBRARY})
  else()
    message(WARNING "loranull: PCRE2 or utf8proc not found (Debian: apt-get install libpcre2-dev libutf8proc-dev): "
                    "the tokenizers (loranull/text) and the adapter builder (loranull/pipeline) are not available")
  endif()
endif()
