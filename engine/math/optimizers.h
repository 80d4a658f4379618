// Per-element optimizer and EMA math shared by the CPU backend and the CUDA kernels.
#pragma once

#include <cmath>

#include "engine/math/hd.h"

namespace byol::math {

// a * b + c rounded once, on the host (std::fma) and on the device (CUDA's fma overloads: fmaf for
// float). Formulas that both backends must compute bitwise alike write their products this way: left
// to the compilers, nvcc contracts a * b + c into an FMA by default and GCC does so only where the
// target has FMA instructions and -ffp-contract allows it, so the two results could differ in the last bit.
template <class T>
BYOL_HD T fused_multiply_add(T a, T b, T c) {
#if defined(__CUDA_ARCH__)
  return fma(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// [byol:ema]
// Target EMA (BYOL eq. 1 of sec. 3.1): target <- tau * target + (1 - tau) * online, written as a lerp
// from target toward online with weight w = 1 - tau. As in ATen's lerp, the formula is chosen by
// |w| < 0.5 so that it stays exact at both ends (tau near 1 is the case that matters here). The
// products are explicit FMAs, so the CPU loop and the kernel agree bitwise.
template <class T>
BYOL_HD T ema_update(T target, T online, T tau) {
  const T w = T(1) - tau;
  const T diff = online - target;
  return w < T(0.5) ? fused_multiply_add(w, diff, target) : fused_multiply_add(-diff, T(1) - w, online);
}

// [byol:lars]
// LARS (You et al. 2017) as the official BYOL code chains it, per element of one tensor:
//   g' = g + wd * w                       (wd = 0 for tensors tagged no-weight-decay)
//   u  = trust * g',  trust = eta * |w| / |g'|  (1 if either norm is 0, or tagged no-adapt)
//   m  = momentum * m + u
//   w  = w - lr * m
// The norms are per tensor, so they are computed before this per-element step.
template <class T>
BYOL_HD void lars_update(T& w, T& m, T g, T weight_decay, T trust, T lr, T momentum) {
  const T update = trust * (g + weight_decay * w);
  m = momentum * m + update;
  w = w - lr * m;
}

// The decayed gradient g' = g + wd * w in double, element by element: |g'| is the trust ratio's denominator,
// summed the same way on both backends (engine/cpu/optimizers.cpp, engine/cuda/lars.cu).
BYOL_HD double lars_decayed_gradient(double g, double w, double weight_decay) {
  return g + weight_decay * w;
}

BYOL_HD double lars_trust_ratio(double param_norm, double update_norm, double eta) {
  return (param_norm > 0 && update_norm > 0) ? eta * param_norm / update_norm : 1.0;
}

// SGD with momentum as PyTorch's torch.optim.SGD (dampening 0): g' = g + wd * w; m = mu * m + g';
// w -= lr * (nesterov ? g' + mu * m : m).
template <class T>
BYOL_HD void sgd_update(T& w, T& m, T g, T weight_decay, T lr, T momentum, bool nesterov) {
  const T gd = g + weight_decay * w;
  m = momentum * m + gd;
  w = w - lr * (nesterov ? gd + momentum * m : m);
}

// AdamW (Loshchilov & Hutter) as torch.optim.AdamW; bias1 = 1 - beta1^t, bias2 = 1 - beta2^t.
template <class T>
BYOL_HD void adamw_update(T& w, T& m, T& v, T g, T lr, T beta1, T beta2, T eps, T weight_decay, T bias1,
                          T bias2) {
  w = w * (T(1) - lr * weight_decay);
  m = beta1 * m + (T(1) - beta1) * g;
  v = beta2 * v + (T(1) - beta2) * g * g;
  w = w - lr * (m / bias1) / (sqrt(v / bias2) + eps);
}

}  // namespace byol::math
