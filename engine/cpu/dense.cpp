// Linear layers and matrix products on the CPU (Eigen GEMM).
#include <Eigen/Core>
#include <cmath>

#include "engine/cpu/cpu_backend.h"

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

namespace {
ConvGeom linear_as_conv(int64_t N, int64_t in, int64_t out) {
  ConvGeom g{N, 1, 1, in, out, 1, 1, 1, 1, 1, 0};
  g.bf16 = true;
  return g;
}
}  // namespace

void linear_forward_bf16(const float* x, const float* w, const float* b, float* y, int64_t N, int64_t in,
                         int64_t out) {
  conv2d_forward(x, w, y, linear_as_conv(N, in, out));
  if (b) MMap<float>(y, N, out).rowwise() += CVec<float>(b, out);
}

void linear_backward_bf16(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                          int64_t N, int64_t in, int64_t out) {
  const ConvGeom g = linear_as_conv(N, in, out);
  if (dx) conv2d_backward_data(dy, w, dx, g);
  if (dw) conv2d_backward_filter(dy, x, dw, g);  // bf16 operands: cpu::bf16_backward_filter (1x1 outputs)
  if (db) MVec<float>(db, out) = CMap<float>(dy, N, out).colwise().sum();
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

#define BYOL_INSTANTIATE_DENSE(T)                                                                        \
  template void linear_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t);          \
  template void linear_backward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, int64_t); \
  template void matmul<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, bool, bool);
BYOL_INSTANTIATE_DENSE(float)
BYOL_INSTANTIATE_DENSE(double)

}  // namespace byol::cpu
