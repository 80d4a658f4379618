// Batch-norm math shared by the CPU backend and the CUDA kernels.
//
// Training forward over M = N*H*W values per channel (paper: Ioffe & Szegedy 2015, alg. 1):
//   mean = sum/M,  var = sum_sq/M - mean^2 (biased, as Haiku's BatchNorm in the official BYOL code),
//   x_hat = (x - mean) * rsqrt(var + eps),  y = gamma * x_hat + beta.
// Backward, with the two per-channel reductions s1 = sum(dy) and s2 = sum(dy * x_hat):
//   dx = gamma * invstd / M * (M * dy - s1 - x_hat * s2),  dgamma = s2,  dbeta = s1.
// Statistics are accumulated in double on the host (float on the device, in Welford-free two-level
// sums) so that f32 inputs with a large mean do not lose the variance to cancellation.
#pragma once

#include <cmath>

#include "engine/common.h"

namespace byol::math {

struct BnStats {
  double mean;
  double invstd;
};

BYOL_HD BnStats bn_stats_from_sums(double count, double sum, double sum_sq, double eps) {
  double mean = sum / count;
  double var = sum_sq / count - mean * mean;
  if (var < 0) var = 0;  // rounding can push a constant channel's variance just below zero
  return {mean, 1.0 / sqrt(var + eps)};
}

// Biased batch variance from the same sums (the statistic the running variance tracks).
BYOL_HD double bn_batch_var(double count, double sum, double sum_sq) {
  double mean = sum / count;
  double var = sum_sq / count - mean * mean;
  return var < 0 ? 0 : var;
}

template <class T>
BYOL_HD T bn_normalize(T x, T mean, T invstd, T gamma, T beta) {
  return (x - mean) * invstd * gamma + beta;
}

template <class T>
BYOL_HD T bn_backward_dx(T dy, T x_hat, T count, T s1, T s2, T gamma, T invstd) {
  return gamma * invstd / count * (count * dy - s1 - x_hat * s2);
}

// EMA of a running statistic: decay * running + (1 - decay) * batch.
template <class T>
BYOL_HD T bn_running_update(T running, T batch, T decay) {
  return decay * running + (T(1) - decay) * batch;
}

}  // namespace byol::math
