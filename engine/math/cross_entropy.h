// Row math of softmax cross-entropy and of its top-1 metric, shared by the CPU backend
// (engine/cpu/cross_entropy.cpp) and the CUDA kernels (engine/cuda/cross_entropy.cu).
//
// Per row of logits x[0..K) with label y, in double (the exponentials of a K = 1000 row would lose
// digits in float):
//   m = max_k x_k,   log Z = m + log sum_k exp(x_k - m),   p_k = exp(x_k - log Z),
//   loss_row = log Z - x_y,   d loss / d x_k = (p_k - [k == y]) * g / N   for the mean over N rows.
#pragma once

#include <cmath>
#include <cstdint>

#include "engine/math/hd.h"

namespace byol::math {

// log Z from the row's maximum and the sum of exp(x_k - maximum).
BYOL_HD double log_partition(double row_max, double sum_exp_shifted) {
  return row_max + log(sum_exp_shifted);
}

// The softmax probability of a logit, given the row's log Z.
template <class T>
BYOL_HD T softmax_prob(T x, double log_z) {
  return static_cast<T>(exp(static_cast<double>(x) - log_z));
}

// The gradient of the mean loss for one logit: s = g / N, the label's logit gets p - 1 scaled by s.
template <class T>
BYOL_HD T cross_entropy_grad(T prob, bool is_label, T s) {
  return prob * s - (is_label ? s : T(0));
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
