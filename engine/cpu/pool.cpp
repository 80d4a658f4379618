// Max pooling and global average pooling over NHWC on the CPU; parallel over images. Storage S is float,
// double or bf16 (float math, one rounding per stored value).
#include <limits>
#include <type_traits>
#include <vector>

#include "engine/cpu/cpu_backend.h"

namespace byol::cpu {

template <class S>
void max_pool2d_forward(const S* x, S* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad) {
  using T = compute_t<S>;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const S* img = x + n * H * W * C;
    std::vector<T> best(C);
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t q = 0; q < Q; ++q) {
        S* out = y + ((n * P + p) * Q + q) * C;
        int32_t* arg = argmax + ((n * P + p) * Q + q) * C;
        for (int64_t c = 0; c < C; ++c) {
          best[c] = -std::numeric_limits<T>::infinity();
          arg[c] = -1;
        }
        for (int r = 0; r < kernel; ++r) {
          const int64_t h = p * stride - pad + r;
          if (h < 0 || h >= H) continue;
          for (int s = 0; s < kernel; ++s) {
            const int64_t w = q * stride - pad + s;
            if (w < 0 || w >= W) continue;
            const int64_t base = (h * W + w) * C;
            for (int64_t c = 0; c < C; ++c) {
              // The first maximum wins ties; NaN propagates (as in PyTorch).
              const T v = to_compute(img[base + c]);
              const bool nan_first = v != v && best[c] == best[c];
              if (arg[c] < 0 || v > best[c] || nan_first) {
                best[c] = v;
                arg[c] = static_cast<int32_t>(base + c);
              }
            }
          }
        }
        for (int64_t c = 0; c < C; ++c) out[c] = from_compute<S>(best[c]);
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
