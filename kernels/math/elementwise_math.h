// Per-element math shared by the CPU backend and the CUDA kernels ("one formula, two backends").
#pragma once

#include <cstdint>

#include "engine/common.h"

namespace byol::math {

template <class T>
BYOL_HD T relu(T x) {
  return x > T(0) ? x : T(0);
}

// ReLU's derivative taken as 0 at x == 0 (as PyTorch and JAX do).
template <class T>
BYOL_HD T relu_backward(T x, T dy) {
  return x > T(0) ? dy : T(0);
}

// The predicted class of one row of logits: the index of the largest value, the first one on ties, as
// std::max_element (a NaN is never replaced and never replaces: the comparison is `best < x`).
template <class T>
BYOL_HD int64_t argmax_first(const T* row, int64_t K) {
  int64_t best = 0;
  for (int64_t k = 1; k < K; ++k)
    if (row[best] < row[k]) best = k;
  return best;
}

}  // namespace byol::math
