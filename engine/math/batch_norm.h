// Batch-norm math shared by the CPU backend and the CUDA kernels.
//
// Training forward over M = N*H*W values per channel (paper: Ioffe & Szegedy 2015, alg. 1):
//   mean = sum/M,  var = sum_sq/M - mean^2 (biased, as Haiku's BatchNorm in the official BYOL code),
//   x_hat = (x - mean) * rsqrt(var + eps),  y = gamma * x_hat + beta.
// Backward, with the two per-channel reductions s1 = sum(dy) and s2 = sum(dy * x_hat):
//   dx = gamma * invstd / M * (M * dy - s1 - x_hat * s2),  dgamma = s2,  dbeta = s1.
// Statistics are accumulated in double on the host; on the device each thread keeps fp32 sums shifted
// by its first value, and the per-thread, per-block and per-chunk results are merged as moments
// (count, mean, M2) with Chan et al.'s formula below, in double. Either way f32 inputs whose mean is
// large against their spread do not lose the variance to cancellation (the kernels' E[x^2] - mean^2 in
// fp32 did: at mean / std = 100 it kept about three digits).
#pragma once

#include <cmath>

#include "engine/math/elementwise.h"
#include "engine/math/hd.h"

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

// Count, mean and M2 = sum of squared deviations from the mean of a set of values.
template <class T>
struct Moments {
  T count;
  T mean;
  T m2;
};

// The moments of n values from sums shifted by a value near them (any one of the values):
// s = sum(x - shift), ss = sum((x - shift)^2). The shift keeps the sums small, so the subtraction
// below loses nothing to a large mean.
template <class T>
BYOL_HD Moments<T> moments_from_shifted_sums(T n, T shift, T s, T ss) {
  if (n <= T(0)) return {T(0), T(0), T(0)};
  const T d = s / n;
  const T m2 = ss - s * d;
  return {n, shift + d, m2 > T(0) ? m2 : T(0)};
}

// Chan, Golub & LeVeque (1979): the moments of the union of two disjoint sets. Either may be empty.
template <class T>
BYOL_HD Moments<T> moments_merge(const Moments<T>& a, const Moments<T>& b) {
  const T n = a.count + b.count;
  if (b.count <= T(0)) return a;
  if (a.count <= T(0)) return b;
  const T delta = b.mean - a.mean;
  const T wb = b.count / n;
  return {n, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.count * wb};
}

// The two sums the training statistics travel as (sum, sum of squares; they add across ranks), from
// moments. In double, sum_sq keeps 16 digits, so bn_stats_from_sums still recovers the variance to about
// 1e-16 * (mean / std)^2 relative.
BYOL_HD void moments_to_sums(const Moments<double>& m, double& sum, double& sum_sq) {
  sum = m.count * m.mean;
  sum_sq = m.m2 + m.count * m.mean * m.mean;
}

template <class T>
BYOL_HD T bn_normalize(T x, T mean, T invstd, T gamma, T beta) {
  return (x - mean) * invstd * gamma + beta;
}

template <class T>
BYOL_HD T bn_backward_dx(T dy, T x_hat, T count, T s1, T s2, T gamma, T invstd) {
  return gamma * invstd / count * (count * dy - s1 - x_hat * s2);
}

// The fused epilogue of a ResNet block: relu(bn_normalize(x) + residual), each step rounded to T as the
// separate ops (batch_norm, add, relu) round it, so the fused op gives the same bits. No residual: 0.
template <class T>
BYOL_HD T bn_normalize_add_relu(T x, T mean, T invstd, T gamma, T beta, T residual) {
  return relu(bn_normalize(x, mean, invstd, gamma, beta) + residual);
}

// EMA of a running statistic: decay * running + (1 - decay) * batch.
template <class T>
BYOL_HD T bn_running_update(T running, T batch, T decay) {
  return decay * running + (T(1) - decay) * batch;
}

}  // namespace byol::math
