// Softmax cross-entropy and the top-1 count on the CPU, with the row formulas of
// engine/math/cross_entropy.h (the CUDA kernels of engine/cuda/cross_entropy.cu use the same ones).
#include <algorithm>
#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "engine/math/cross_entropy.h"

namespace byol::cpu {

template <class T, class I>
void softmax_cross_entropy_forward(const T* logits, const I* labels, T* probs, T* loss, int64_t N,
                                   int64_t K) {
  double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (N * K > 32768)
  for (int64_t i = 0; i < N; ++i) {
    const T* row = logits + i * K;
    double mx = row[0];
    for (int64_t k = 1; k < K; ++k) mx = std::max<double>(mx, row[k]);
    double z = 0;
    for (int64_t k = 0; k < K; ++k) z += std::exp(static_cast<double>(row[k]) - mx);
    const double log_z = math::log_partition(mx, z);
    for (int64_t k = 0; k < K; ++k) probs[i * K + k] = math::softmax_prob(row[k], log_z);
    total += log_z - static_cast<double>(row[labels[i]]);
  }
  *loss = static_cast<T>(total / static_cast<double>(N));
}

template <class T, class I>
void softmax_cross_entropy_backward(const T* probs, const I* labels, const T* g, T* dlogits, int64_t N,
                                    int64_t K) {
  const T s = static_cast<T>(static_cast<double>(*g) / static_cast<double>(N));
  for (int64_t i = 0; i < N; ++i) {
    const int64_t label = static_cast<int64_t>(labels[i]);
    for (int64_t k = 0; k < K; ++k)
      dlogits[i * K + k] = math::cross_entropy_grad(probs[i * K + k], k == label, s);
  }
}

template <class T, class I>
void count_top1_correct(const T* logits, const I* labels, int64_t N, int64_t K, T* count) {
  int64_t correct = 0;
  for (int64_t i = 0; i < N; ++i)
    correct += math::argmax_first(logits + i * K, K) == static_cast<int64_t>(labels[i]);
  *count = static_cast<T>(correct);
}

#define BYOL_INSTANTIATE_CROSS_ENTROPY(T, I)                                                              \
  template void softmax_cross_entropy_forward<T, I>(const T*, const I*, T*, T*, int64_t, int64_t);        \
  template void softmax_cross_entropy_backward<T, I>(const T*, const I*, const T*, T*, int64_t, int64_t); \
  template void count_top1_correct<T, I>(const T*, const I*, int64_t, int64_t, T*);
BYOL_INSTANTIATE_CROSS_ENTROPY(float, int32_t)
BYOL_INSTANTIATE_CROSS_ENTROPY(float, int64_t)
BYOL_INSTANTIATE_CROSS_ENTROPY(double, int32_t)
BYOL_INSTANTIATE_CROSS_ENTROPY(double, int64_t)

}  // namespace byol::cpu
