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

// One output position per image (P = Q = 1): the last stage of a ResNet on 28 px images (Fashion-MNIST, the
// default job: 2x2 inputs to 1x1 outputs, then 1x1 inputs to 3x3 kernels padded by one). Output (0, 0) reads
// input row r - pad under tap row r whatever the stride, so only the taps with 0 <= r - pad < H (and the
// same for columns) see the input, and the convolution is one matrix product over them:
//   forward          Y[N, K]     = X[N, TC] * Wt[K, TC]^T
//   backward data    dX[N, TC]   = dY[N, K] * Wt[K, TC]           (zero where no tap reads)
//   backward filter  dWt[K, TC]  = dY[N, K]^T * X[N, TC]          (zero for the taps that read padding)
// with X the input pixels under the taps and Wt the weights of those taps (T of them, in (r, s) order). At
// a 1x1 input with a 3x3 kernel that is one tap: oneDNN's direct kernels spent 0.45 ms on that forward pass
// (9 GFLOP/s) and its gemm-based weight gradient 2.3 ms, a fifth of the default job's step between them
// (docs/benchmarks.md, "One output position per image"). Any algorithm but im2col (the reference) takes it.
struct TapWindow {
  int64_t r0, r1, s0, s1;  // the taps [r0, r1) x [s0, s1) that read the input (maybe none)
  bool whole_input;        // those taps read every input pixel, in the input's own order
  bool whole_kernel;       // every tap reads the input
  int64_t taps() const { return (r1 - r0) * (s1 - s0); }
};
TapWindow single_position_taps(const ConvGeom& g) {
  TapWindow t;
  t.r0 = std::min(g.pad, g.R), t.r1 = std::clamp<int64_t>(g.pad + g.H, t.r0, g.R);
  t.s0 = std::min(g.pad, g.S), t.s1 = std::clamp<int64_t>(g.pad + g.W, t.s0, g.S);
  t.whole_input = t.r1 - t.r0 == g.H && t.s1 - t.s0 == g.W;
  t.whole_kernel = t.r0 == 0 && t.r1 == g.R && t.s0 == 0 && t.s1 == g.S;
  return t;
}
bool single_position(const ConvGeom& g) {
  return g.P == 1 && g.Q == 1 && !g.bf16 && conv_algorithm() != ConvAlgorithm::im2col;
}

// For each of `rows` images [height, width, C] (or filters [R, S, C]) and each pixel (h, w) of the window
// [h0, h1) x [w0, w1): f(offset in the image tensor, offset in the [rows, window pixels x C] matrix); C
// values are contiguous at both.
template <class F>
void for_window(int64_t rows, int64_t height, int64_t width, int64_t C, int64_t h0, int64_t h1, int64_t w0,
                int64_t w1, F&& f) {
  const int64_t cols = (h1 - h0) * (w1 - w0) * C;
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t n = 0; n < rows; ++n)
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w)
        f(((n * height + h) * width + w) * C, n * cols + ((h - h0) * (w1 - w0) + (w - w0)) * C);
}

template <class T>
struct SinglePosition {
  const ConvGeom& g;
  TapWindow t;
  int64_t tc;  // columns of the product: taps x C
  std::vector<T> buffer_x, buffer_w;

  explicit SinglePosition(const ConvGeom& geom)
      : g(geom), t(single_position_taps(geom)), tc(t.taps() * g.C) {}

  // The input pixels under the taps as [N, TC]: the input itself when the taps read all of it.
  const T* x_matrix(const T* x) {
    if (t.whole_input) return x;
    buffer_x.resize(static_cast<size_t>(g.N * tc));
    T* m = buffer_x.data();
    for_window(g.N, g.H, g.W, g.C, t.r0 - g.pad, t.r1 - g.pad, t.s0 - g.pad, t.s1 - g.pad,
               [&](int64_t full, int64_t win) { std::copy(x + full, x + full + g.C, m + win); });
    return m;
  }
  // The taps' weights as [K, TC]: all of w when every tap reads the input.
  const T* w_matrix(const T* w) {
    if (t.whole_kernel) return w;
    buffer_w.resize(static_cast<size_t>(g.K * tc));
    T* m = buffer_w.data();
    for_window(g.K, g.R, g.S, g.C, t.r0, t.r1, t.s0, t.s1,
               [&](int64_t full, int64_t win) { std::copy(w + full, w + full + g.C, m + win); });
    return m;
  }
  // Writes an [N, TC] input gradient into dx (zero where no tap reads).
  void scatter_x(const T* m, T* dx) const {
    std::fill(dx, dx + g.N * g.H * g.W * g.C, T(0));
    for_window(g.N, g.H, g.W, g.C, t.r0 - g.pad, t.r1 - g.pad, t.s0 - g.pad, t.s1 - g.pad,
               [&](int64_t full, int64_t win) { std::copy(m + win, m + win + g.C, dx + full); });
  }
  // Writes a [K, TC] weight gradient into dw (zero for the taps that read only padding).
  void scatter_w(const T* m, T* dw) const {
    std::fill(dw, dw + g.K * g.R * g.S * g.C, T(0));
    for_window(g.K, g.R, g.S, g.C, t.r0, t.r1, t.s0, t.s1,
               [&](int64_t full, int64_t win) { std::copy(m + win, m + win + g.C, dw + full); });
  }
};

template <class T>
void single_position_forward(const T* x, const T* w, T* y, const ConvGeom& g) {
  SinglePosition<T> sp(g);
  if (sp.tc == 0) return std::fill(y, y + g.N * g.K, T(0));
  MMap<T>(y, g.N, g.K).noalias() =
      CMap<T>(sp.x_matrix(x), g.N, sp.tc) * CMap<T>(sp.w_matrix(w), g.K, sp.tc).transpose();
}

// Evaluates `product` ([rows, cols]) straight into `out` where the tap window covers all of it (`whole`),
// else into a buffer that `scatter` writes into `out` (zeros elsewhere).
template <class T, class Product, class Scatter>
void into_window(bool whole, T* out, int64_t rows, int64_t cols, const Product& product, Scatter&& scatter) {
  if (whole) {
    MMap<T>(out, rows, cols).noalias() = product;
    return;
  }
  std::vector<T> m(static_cast<size_t>(rows * cols));
  MMap<T>(m.data(), rows, cols).noalias() = product;
  scatter(m.data(), out);
}

template <class T>
void single_position_backward_data(const T* dy, const T* w, T* dx, const ConvGeom& g) {
  SinglePosition<T> sp(g);
  if (sp.tc == 0) return std::fill(dx, dx + g.N * g.H * g.W * g.C, T(0));
  const CMap<T> dY(dy, g.N, g.K), Wt(sp.w_matrix(w), g.K, sp.tc);
  into_window(sp.t.whole_input, dx, g.N, sp.tc, dY * Wt, [&](const T* m, T* out) { sp.scatter_x(m, out); });
}

template <class T>
void single_position_backward_filter(const T* dy, const T* x, T* dw, const ConvGeom& g) {
  SinglePosition<T> sp(g);
  if (sp.tc == 0) return std::fill(dw, dw + g.K * g.R * g.S * g.C, T(0));
  const CMap<T> dY(dy, g.N, g.K), X(sp.x_matrix(x), g.N, sp.tc);
  into_window(sp.t.whole_kernel, dw, g.K, sp.tc, dY.transpose() * X,
              [&](const T* m, T* out) { sp.scatter_w(m, out); });
}

}  // namespace

template <class T>
void conv2d_forward(const T* x, const T* w, T* y, const ConvGeom& g) {
  if (single_position(g)) return single_position_forward(x, w, y, g);
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
  if (single_position(g)) return single_position_backward_data(dy, w, dx, g);
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
  if (single_position(g)) return single_position_backward_filter(dy, x, dw, g);
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
