// Max pooling and global average pooling over NHWC on the CPU; parallel over images. Storage S is float,
// double or bf16 (float math, one rounding per stored value).
#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "engine/cpu/cpu_backend.h"

namespace byol::cpu {

template <class S>
void max_pool2d_forward(const S* x, S* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad) {
  using T = compute_t<S>;
  // The window's valid taps in row-major order; the first one initialises the output, each later one
  // replaces it where it is larger (the first maximum wins ties) or where it is the first NaN (NaN
  // propagates, as in PyTorch). The maximum of stored values is a stored value, so the output is written
  // directly, exact in every storage type. Branch-free over channels, so the loop vectorises.
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const S* img = x + n * H * W * C;
    for (int64_t p = 0; p < P; ++p) {
      const int64_t h0 = std::max<int64_t>(p * stride - pad, 0);
      const int64_t h1 = std::min<int64_t>(p * stride - pad + kernel, H);
      for (int64_t q = 0; q < Q; ++q) {
        const int64_t w0 = std::max<int64_t>(q * stride - pad, 0);
        const int64_t w1 = std::min<int64_t>(q * stride - pad + kernel, W);
        S* __restrict__ out = y + ((n * P + p) * Q + q) * C;
        int32_t* __restrict__ arg = argmax + ((n * P + p) * Q + q) * C;
        if (h0 >= h1 || w0 >= w1) {  // a window of padding only (the op's checks rule it out)
          for (int64_t c = 0; c < C; ++c) {
            out[c] = from_compute<S>(-std::numeric_limits<T>::infinity());
            arg[c] = -1;
          }
          continue;
        }
        const int32_t first = static_cast<int32_t>((h0 * W + w0) * C);
        for (int64_t c = 0; c < C; ++c) {
          out[c] = img[first + c];
          arg[c] = first + static_cast<int32_t>(c);
        }
        for (int64_t h = h0; h < h1; ++h) {
          for (int64_t w = (h == h0 ? w0 + 1 : w0); w < w1; ++w) {
            const int32_t base = static_cast<int32_t>((h * W + w) * C);
            const S* __restrict__ in = img + base;
            for (int64_t c = 0; c < C; ++c) {
              const T v = to_compute(in[c]);
              const T best = to_compute(out[c]);
              const bool take = v > best || (v != v && best == best);
              if constexpr (std::is_same_v<S, bf16>) {
                out[c].bits = take ? in[c].bits : out[c].bits;  // on the bits: the loop vectorises
              } else {
                out[c] = take ? in[c] : out[c];
              }
              arg[c] = take ? base + static_cast<int32_t>(c) : arg[c];
            }
          }
        }
      }
    }
  }
}

template <class S>
void max_pool2d_backward(const S* dy, const int32_t* argmax, S* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q) {
  using T = compute_t<S>;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const int64_t base = n * P * Q * C;
    S* img = dx + n * H * W * C;
    if constexpr (std::is_same_v<S, T>) {
      for (int64_t i = 0; i < H * W * C; ++i) img[i] = T(0);
      for (int64_t i = 0; i < P * Q * C; ++i) img[argmax[base + i]] += dy[base + i];
    } else {
      // Overlapping windows add several gradients into one input: summed in T, stored (rounded) once.
      std::vector<T> acc(H * W * C, T(0));
      for (int64_t i = 0; i < P * Q * C; ++i) acc[argmax[base + i]] += to_compute(dy[base + i]);
      for (int64_t i = 0; i < H * W * C; ++i) img[i] = from_compute<S>(acc[i]);
    }
  }
}

template <class S>
void global_avg_pool_forward(const S* x, S* y, int64_t N, int64_t HW, int64_t C) {
  using T = compute_t<S>;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    std::vector<T> sum(C, T(0));
    const S* img = x + n * HW * C;
    for (int64_t i = 0; i < HW; ++i)
      for (int64_t c = 0; c < C; ++c) sum[c] += to_compute(img[i * C + c]);
    const T inv = T(1) / static_cast<T>(HW);
    for (int64_t c = 0; c < C; ++c) y[n * C + c] = from_compute<S>(sum[c] * inv);
  }
}

template <class S>
void global_avg_pool_backward(const S* dy, S* dx, int64_t N, int64_t HW, int64_t C) {
  using T = compute_t<S>;
  const T inv = T(1) / static_cast<T>(HW);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t i = 0; i < HW; ++i)
      for (int64_t c = 0; c < C; ++c)
        dx[(n * HW + i) * C + c] = from_compute<S>(to_compute(dy[n * C + c]) * inv);
  }
}

#define BYOL_INSTANTIATE_POOL(T)                                                                           \
  template void max_pool2d_forward<T>(const T*, T*, int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                      int64_t, int, int, int);                                             \
  template void max_pool2d_backward<T>(const T*, const int32_t*, T*, int64_t, int64_t, int64_t, int64_t,   \
                                       int64_t, int64_t);                                                  \
  template void global_avg_pool_forward<T>(const T*, T*, int64_t, int64_t, int64_t);                       \
  template void global_avg_pool_backward<T>(const T*, T*, int64_t, int64_t, int64_t);
BYOL_INSTANTIATE_POOL(float)
BYOL_INSTANTIATE_POOL(double)
BYOL_INSTANTIATE_POOL(bf16)

}  // namespace byol::cpu
