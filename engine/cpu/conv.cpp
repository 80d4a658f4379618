// NHWC convolution on the CPU as im2col + Eigen GEMM (float32 goes to oneDNN first when the build has it:
// engine/cpu/conv_onednn.cpp), processed in chunks of images so the column
// buffer stays in the last-level cache.
//
//   forward          Y[rows, K]    = col[rows, RSC] * W[K, RSC]^T
//   backward data    dcol[rows, RSC] = dY[rows, K] * W[K, RSC], then col2im (scatter-add) into dX
//   backward filter  dW[K, RSC]   += dY[rows, K]^T * col[rows, RSC]
// with rows = images_in_chunk * P * Q. A pointwise (1x1, stride 1, no padding) convolution needs no
// im2col at all: X itself is the column matrix. Eigen parallelises each GEMM with OpenMP; the im2col
// and col2im loops are parallel over output rows / images.
#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/im2col.h"
#include "engine/dtype.h"

namespace byol::cpu {
namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using CMap = Eigen::Map<const RowMat<T>>;
template <class T>
using MMap = Eigen::Map<RowMat<T>>;

// Number of images per chunk so that the column buffer is about 16 MB (at least one image).
int64_t images_per_chunk(const ConvGeom& g, size_t elem) {
  const int64_t per_image = g.P * g.Q * g.R * g.S * g.C * static_cast<int64_t>(elem);
  const int64_t budget = int64_t(16) << 20;
  return std::clamp<int64_t>(budget / std::max<int64_t>(per_image, 1), 1, g.N);
}

// A copy of n floats rounded to bf16 and back (nearest even): the operands of ConvGeom::bf16's products.
std::vector<float> rounded_to_bf16(const float* x, int64_t n) {
  std::vector<float> r(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) r[i] = bf16_to_float(float_to_bf16(x[i]));
  return r;
}

}  // namespace

template <class T>
void conv2d_forward(const T* x, const T* w, T* y, const ConvGeom& g) {
  if constexpr (std::is_same_v<T, float>) {
    if (conv_algorithm() != ConvAlgorithm::im2col && onednn_conv2d_forward(x, w, y, g)) return;
    if (g.bf16) {  // the im2col path on rounded operands
      ConvGeom f = g;
      f.bf16 = false;
      const std::vector<float> xr = rounded_to_bf16(x, g.N * g.H * g.W * g.C),
                               wr = rounded_to_bf16(w, g.K * g.R * g.S * g.C);
      return conv2d_forward(xr.data(), wr.data(), y, f);
    }
  }
  const int64_t rsc = g.R * g.S * g.C;
  CMap<T> W(w, g.K, rsc);
  if (g.is_pointwise()) {
    MMap<T>(y, g.N * g.P * g.Q, g.K).noalias() = CMap<T>(x, g.N * g.H * g.W, g.C) * W.transpose();
    return;
  }
  const int64_t chunk = images_per_chunk(g, sizeof(T));
  std::vector<T> col(static_cast<size_t>(chunk * g.P * g.Q * rsc));
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.N - n0);
    const int64_t rows = nb * g.P * g.Q;
    im2col(x, col.data(), g, n0, nb);
    MMap<T>(y + n0 * g.P * g.Q * g.K, rows, g.K).noalias() = CMap<T>(col.data(), rows, rsc) * W.transpose();
  }
}

template <class T>
void conv2d_backward_data(const T* dy, const T* w, T* dx, const ConvGeom& g) {
  if constexpr (std::is_same_v<T, float>) {
    if (conv_algorithm() != ConvAlgorithm::im2col && onednn_conv2d_backward_data(dy, w, dx, g)) return;
    if (g.bf16) {
      ConvGeom f = g;
      f.bf16 = false;
      const std::vector<float> dyr = rounded_to_bf16(dy, g.N * g.P * g.Q * g.K),
                               wr = rounded_to_bf16(w, g.K * g.R * g.S * g.C);
      return conv2d_backward_data(dyr.data(), wr.data(), dx, f);
    }
  }
  const int64_t rsc = g.R * g.S * g.C;
  CMap<T> W(w, g.K, rsc);
  if (g.is_pointwise()) {
    MMap<T>(dx, g.N * g.H * g.W, g.C).noalias() = CMap<T>(dy, g.N * g.P * g.Q, g.K) * W;
    return;
  }
  std::fill(dx, dx + g.N * g.H * g.W * g.C, T(0));
  const int64_t chunk = images_per_chunk(g, sizeof(T));
  std::vector<T> dcol(static_cast<size_t>(chunk * g.P * g.Q * rsc));
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.N - n0);
    const int64_t rows = nb * g.P * g.Q;
    MMap<T>(dcol.data(), rows, rsc).noalias() = CMap<T>(dy + n0 * g.P * g.Q * g.K, rows, g.K) * W;
    col2im(dcol.data(), dx, g, n0, nb);
  }
}

template <class T>
void conv2d_backward_filter(const T* dy, const T* x, T* dw, const ConvGeom& g) {
  if constexpr (std::is_same_v<T, float>) {
    if (conv_algorithm() != ConvAlgorithm::im2col && onednn_conv2d_backward_filter(dy, x, dw, g)) return;
    if (g.bf16) {
      ConvGeom f = g;
      f.bf16 = false;
      if (!bf16_backward_filter(g)) return conv2d_backward_filter(dy, x, dw, f);  // float32 pass
      const std::vector<float> dyr = rounded_to_bf16(dy, g.N * g.P * g.Q * g.K),
                               xr = rounded_to_bf16(x, g.N * g.H * g.W * g.C);
      return conv2d_backward_filter(dyr.data(), xr.data(), dw, f);
    }
  }
  const int64_t rsc = g.R * g.S * g.C;
  MMap<T> dW(dw, g.K, rsc);
  if (g.is_pointwise()) {
    dW.noalias() = CMap<T>(dy, g.N * g.P * g.Q, g.K).transpose() * CMap<T>(x, g.N * g.H * g.W, g.C);
    return;
  }
  dW.setZero();
  const int64_t chunk = images_per_chunk(g, sizeof(T));
  std::vector<T> col(static_cast<size_t>(chunk * g.P * g.Q * rsc));
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.N - n0);
    const int64_t rows = nb * g.P * g.Q;
    im2col(x, col.data(), g, n0, nb);
    dW.noalias() +=
        CMap<T>(dy + n0 * g.P * g.Q * g.K, rows, g.K).transpose() * CMap<T>(col.data(), rows, rsc);
  }
}

#define BYOL_INSTANTIATE_CONV(T)                                                  \
  template void conv2d_forward<T>(const T*, const T*, T*, const ConvGeom&);       \
  template void conv2d_backward_data<T>(const T*, const T*, T*, const ConvGeom&); \
  template void conv2d_backward_filter<T>(const T*, const T*, T*, const ConvGeom&);
BYOL_INSTANTIATE_CONV(float)
BYOL_INSTANTIATE_CONV(double)

// bf16 activations: oneDNN reads and writes them as they are (its convolution kernels, or the im2col +
// matmul path; onednn_conv2d_* on bf16). Where neither runs (BYOL_CPU_CONV=im2col, or a geometry oneDNN has
// no kernel for), the float32 convolution with bf16 products (ConvGeom::bf16) on widened copies, its float32
// sums rounded once into the bf16 output: bf16 -> float32 is exact, so the products are those of the bf16
// values, and the bits are the same either way.
namespace {
// Float32 scratch per thread and role (0: x, 1: y or dy, 2: dx), grown to the largest call and kept: a fresh
// buffer of tens of MB per call was zero-filled and page-faulted in every time (a third of this path's
// time in a profile of the ResNet-18 CIFAR step).
float* scratch(int role, int64_t n) {
  thread_local std::vector<float> buffers[3];
  std::vector<float>& b = buffers[role];
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}
const float* widened(int role, const bf16* v, int64_t n) {
  float* out = scratch(role, n);
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(v[i]);
  return out;
}
void narrow(const float* v, int64_t n, bf16* out) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(v[i]);
}
ConvGeom with_bf16_products(ConvGeom g) {
  g.bf16 = true;
  return g;
}
}  // namespace

void conv2d_forward_bf16(const bf16* x, const float* w, bf16* y, const ConvGeom& g) {
  const ConvGeom b = with_bf16_products(g);
  if (conv_algorithm() != ConvAlgorithm::im2col && onednn_conv2d_forward(x, w, y, b)) return;
  const int64_t ny = g.N * g.P * g.Q * g.K;
  float* yf = scratch(1, ny);
  conv2d_forward(widened(0, x, g.N * g.H * g.W * g.C), w, yf, b);
  narrow(yf, ny, y);
}

void conv2d_backward_data_bf16(const bf16* dy, const float* w, bf16* dx, const ConvGeom& g) {
  const ConvGeom b = with_bf16_products(g);
  if (conv_algorithm() != ConvAlgorithm::im2col && onednn_conv2d_backward_data(dy, w, dx, b)) return;
  const int64_t nx = g.N * g.H * g.W * g.C;
  float* dxf = scratch(2, nx);
  conv2d_backward_data(widened(1, dy, g.N * g.P * g.Q * g.K), w, dxf, b);
  narrow(dxf, nx, dx);
}

void conv2d_backward_filter_bf16(const bf16* dy, const bf16* x, float* dw, const ConvGeom& g) {
  const ConvGeom b = with_bf16_products(g);
  if (conv_algorithm() != ConvAlgorithm::im2col && onednn_conv2d_backward_filter(dy, x, dw, b)) return;
  conv2d_backward_filter(widened(1, dy, g.N * g.P * g.Q * g.K), widened(0, x, g.N * g.H * g.W * g.C), dw, b);
}

}  // namespace byol::cpu
