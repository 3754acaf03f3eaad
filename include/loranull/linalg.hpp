#pragma once
// loranull/linalg: the covariance accumulator, symmetric eigensolvers (all
// pairs and index ranges), exact and randomized SVDs, the null space.
// Generic over the backend; no Eigen, no CUDA.

#include "loranull/linalg/covariance.hpp"
#include "loranull/linalg/null_space.hpp"
#include "loranull/linalg/svd.hpp"
#include "loranull/linalg/symmetric_eigen.hpp"
