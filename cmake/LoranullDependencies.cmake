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
