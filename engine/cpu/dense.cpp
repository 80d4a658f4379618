// Linear layers, matrix products and softmax cross-entropy on the CPU (Eigen GEMM).
#include <Eigen/Core>
#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "kernels/math/elementwise_math.h"

namespace byol::cpu {
namespace {
template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using CMap = Eigen::Map<const RowMat<T>>;
template <class T>
using MMap = Eigen::Map<RowMat<T>>;
template <class T>
using CVec = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;
template <class T>
using MVec = Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>;
}  // namespace

template <class T>
void linear_forward(const T* x, const T* w, const T* b, T* y, int64_t N, int64_t in, int64_t out) {
  MMap<T> Y(y, N, out);
  Y.noalias() = CMap<T>(x, N, in) * CMap<T>(w, out, in).transpose();
  if (b) Y.rowwise() += CVec<T>(b, out);
}

template <class T>
void linear_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, int64_t N, int64_t in,
                     int64_t out) {
  CMap<T> dY(dy, N, out);
  if (dx) MMap<T>(dx, N, in).noalias() = dY * CMap<T>(w, out, in);
  if (dw) MMap<T>(dw, out, in).noalias() = dY.transpose() * CMap<T>(x, N, in);
  if (db) MVec<T>(db, out) = dY.colwise().sum();
}

template <class T>
void matmul(const T* a, const T* b, T* c, int64_t M, int64_t K, int64_t N, bool trans_a, bool trans_b) {
  MMap<T> C(c, M, N);
  // a is stored [M, K] (or [K, M] when trans_a), b is stored [K, N] (or [N, K] when trans_b).
  if (!trans_a && !trans_b) {
    C.noalias() = CMap<T>(a, M, K) * CMap<T>(b, K, N);
  } else if (trans_a && !trans_b) {
    C.noalias() = CMap<T>(a, K, M).transpose() * CMap<T>(b, K, N);
  } else if (!trans_a && trans_b) {
    C.noalias() = CMap<T>(a, M, K) * CMap<T>(b, N, K).transpose();
  } else {
    C.noalias() = CMap<T>(a, K, M).transpose() * CMap<T>(b, N, K).transpose();
  }
}

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
    const double log_z = mx + std::log(z);
    for (int64_t k = 0; k < K; ++k) probs[i * K + k] = static_cast<T>(std::exp(row[k] - log_z));
    total += log_z - row[labels[i]];
  }
  *loss = static_cast<T>(total / static_cast<double>(N));
}

template <class T, class I>
void softmax_cross_entropy_backward(const T* probs, const I* labels, const T* g, T* dlogits, int64_t N,
                                    int64_t K) {
  const T s = static_cast<T>(static_cast<double>(*g) / static_cast<double>(N));
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t k = 0; k < K; ++k) dlogits[i * K + k] = probs[i * K + k] * s;
    dlogits[i * K + labels[i]] -= s;
  }
}

template <class T, class I>
void count_top1_correct(const T* logits, const I* labels, int64_t N, int64_t K, T* count) {
  int64_t correct = 0;
  for (int64_t i = 0; i < N; ++i)
    correct += math::argmax_first(logits + i * K, K) == static_cast<int64_t>(labels[i]);
  *count = static_cast<T>(correct);
}

#define BYOL_INSTANTIATE_DENSE(T)                                                                           \
  template void linear_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t);             \
  template void linear_backward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, int64_t);    \
  template void matmul<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, bool, bool);                   \
  template void softmax_cross_entropy_forward<T, int32_t>(const T*, const int32_t*, T*, T*, int64_t,        \
                                                          int64_t);                                         \
  template void softmax_cross_entropy_forward<T, int64_t>(const T*, const int64_t*, T*, T*, int64_t,        \
                                                          int64_t);                                         \
  template void softmax_cross_entropy_backward<T, int32_t>(const T*, const int32_t*, const T*, T*, int64_t, \
                                                           int64_t);                                        \
  template void softmax_cross_entropy_backward<T, int64_t>(const T*, const int64_t*, const T*, T*, int64_t, \
                                                           int64_t);                                        \
  template void count_top1_correct<T, int32_t>(const T*, const int32_t*, int64_t, int64_t, T*);             \
  template void count_top1_correct<T, int64_t>(const T*, const int64_t*, int64_t, int64_t, T*);
BYOL_INSTANTIATE_DENSE(float)
BYOL_INSTANTIATE_DENSE(double)

}  // namespace byol::cpu
