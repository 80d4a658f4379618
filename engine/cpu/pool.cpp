// Max pooling and global average pooling over NHWC on the CPU; parallel over images.
#include <limits>

#include "engine/cpu/cpu_backend.h"

namespace byol::cpu {

template <class T>
void max_pool2d_forward(const T* x, T* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* img = x + n * H * W * C;
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t q = 0; q < Q; ++q) {
        T* out = y + ((n * P + p) * Q + q) * C;
        int32_t* arg = argmax + ((n * P + p) * Q + q) * C;
        for (int64_t c = 0; c < C; ++c) {
          out[c] = -std::numeric_limits<T>::infinity();
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
              const T v = img[base + c];
              const bool nan_first = v != v && out[c] == out[c];
              if (arg[c] < 0 || v > out[c] || nan_first) {
                out[c] = v;
                arg[c] = static_cast<int32_t>(base + c);
              }
            }
          }
        }
      }
    }
  }
}

template <class T>
void max_pool2d_backward(const T* dy, const int32_t* argmax, T* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* img = dx + n * H * W * C;
    for (int64_t i = 0; i < H * W * C; ++i) img[i] = T(0);
    const int64_t base = n * P * Q * C;
    for (int64_t i = 0; i < P * Q * C; ++i) img[argmax[base + i]] += dy[base + i];
  }
}

template <class T>
void global_avg_pool_forward(const T* x, T* y, int64_t N, int64_t HW, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* out = y + n * C;
    for (int64_t c = 0; c < C; ++c) out[c] = T(0);
    const T* img = x + n * HW * C;
    for (int64_t i = 0; i < HW; ++i)
      for (int64_t c = 0; c < C; ++c) out[c] += img[i * C + c];
    const T inv = T(1) / static_cast<T>(HW);
    for (int64_t c = 0; c < C; ++c) out[c] *= inv;
  }
}

template <class T>
void global_avg_pool_backward(const T* dy, T* dx, int64_t N, int64_t HW, int64_t C) {
  const T inv = T(1) / static_cast<T>(HW);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t i = 0; i < HW; ++i)
      for (int64_t c = 0; c < C; ++c) dx[(n * HW + i) * C + c] = dy[n * C + c] * inv;
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

}  // namespace byol::cpu
