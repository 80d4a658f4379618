// Per-element math shared by the CPU backend and the CUDA kernels ("one formula, two backends").
#pragma once

#include <cstdint>

#include "engine/math/hd.h"

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

}  // namespace byol::math
