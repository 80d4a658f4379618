// Max pooling and global average pooling kernels: one thread per output element (forward) or per
// input element (max-pool backward); consecutive threads take consecutive channels, so every warp
// reads and writes contiguous NHWC memory.
#include "engine/cuda/cuda_check.h"
#include "kernels/common.cuh"
#include "kernels/pool.cuh"

namespace byol::kernels {
namespace {

template <class T>
__global__ void max_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y,
                                          int32_t* __restrict__ argmax, int64_t N, int64_t H, int64_t W,
                                          int64_t C, int64_t P, int64_t Q, int kernel, int stride, int pad) {
  const int64_t total = N * P * Q * C;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t c = i % C;
    const int64_t q = (i / C) % Q;
    const int64_t p = (i / (C * Q)) % P;
    const int64_t n = i / (C * Q * P);
    const T* img = x + n * H * W * C;
    T best = T(0);
    int32_t arg = -1;
    for (int r = 0; r < kernel; ++r) {
      const int64_t h = p * stride - pad + r;
      if (h < 0 || h >= H) continue;
      for (int s = 0; s < kernel; ++s) {
        const int64_t w = q * stride - pad + s;
        if (w < 0 || w >= W) continue;
        const int64_t off = (h * W + w) * C + c;
        const T v = img[off];
        // The first maximum wins ties; a NaN replaces a number and is then kept (as on the CPU).
        const bool nan_first = v != v && best == best;
        if (arg < 0 || v > best || nan_first) {
          best = v;
          arg = static_cast<int32_t>(off);
        }
      }
    }
    y[i] = best;
    argmax[i] = arg;
  }
}

template <class T>
__global__ void max_pool2d_backward_kernel(const T* __restrict__ dy, const int32_t* __restrict__ argmax,
                                           T* __restrict__ dx, int64_t N, int64_t H, int64_t W, int64_t C,
                                           int64_t P, int64_t Q, int kernel, int stride, int pad) {
  const int64_t total = N * H * W * C;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t c = i % C;
    const int64_t w = (i / C) % W;
    const int64_t h = (i / (C * W)) % H;
    const int64_t n = i / (C * W * H);
    const int32_t self = static_cast<int32_t>((h * W + w) * C + c);
    const IndexRange ps = pool_windows_covering(h, kernel, stride, pad, P);
    const IndexRange qs = pool_windows_covering(w, kernel, stride, pad, Q);
    T acc = T(0);
    // Same summation order as the CPU's scatter (outputs in increasing order).
    for (int64_t p = ps.first; p < ps.last; ++p)
      for (int64_t q = qs.first; q < qs.last; ++q) {
        const int64_t o = ((n * P + p) * Q + q) * C + c;
        if (argmax[o] == self) acc += dy[o];
      }
    dx[i] = acc;
  }
}

template <class T>
__global__ void global_avg_pool_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t N,
                                               int64_t HW, int64_t C) {
  const T inv = T(1) / static_cast<T>(HW);
  for (int64_t i = global_thread(); i < N * C; i += grid_threads()) {
    const int64_t n = i / C, c = i % C;
    const T* img = x + n * HW * C + c;
    T acc = T(0);  // the CPU sums in T in the same order
    for (int64_t k = 0; k < HW; ++k) acc += img[k * C];
    y[i] = acc * inv;
  }
}

template <class T>
__global__ void global_avg_pool_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, int64_t N,
                                                int64_t HW, int64_t C) {
  const T inv = T(1) / static_cast<T>(HW);
  for (int64_t i = global_thread(); i < N * HW * C; i += grid_threads()) {
    const int64_t c = i % C, n = i / (HW * C);
    dx[i] = dy[n * C + c] * inv;
  }
}

}  // namespace

template <class T>
void max_pool2d_forward(const T* x, T* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad, cudaStream_t stream) {
  const int64_t total = N * P * Q * C;
  if (total == 0) return;
  max_pool2d_forward_kernel<<<grid_1d(total), kThreads, 0, stream>>>(x, y, argmax, N, H, W, C, P, Q, kernel,
                                                                     stride, pad);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void max_pool2d_backward(const T* dy, const int32_t* argmax, T* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q, int kernel, int stride, int pad,
                         cudaStream_t stream) {
  const int64_t total = N * H * W * C;
  if (total == 0) return;
  max_pool2d_backward_kernel<<<grid_1d(total), kThreads, 0, stream>>>(dy, argmax, dx, N, H, W, C, P, Q,
                                                                      kernel, stride, pad);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void global_avg_pool_forward(const T* x, T* y, int64_t N, int64_t HW, int64_t C, cudaStream_t stream) {
  if (N * C == 0) return;
  global_avg_pool_forward_kernel<<<grid_1d(N * C), kThreads, 0, stream>>>(x, y, N, HW, C);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void global_avg_pool_backward(const T* dy, T* dx, int64_t N, int64_t HW, int64_t C, cudaStream_t stream) {
  if (N * HW * C == 0) return;
  global_avg_pool_backward_kernel<<<grid_1d(N * HW * C), kThreads, 0, stream>>>(dy, dx, N, HW, C);
  BYOL_CUDA_CHECK_LAUNCH();
}

#define BYOL_INSTANTIATE_POOL(T)                                                                           \
  template void max_pool2d_forward<T>(const T*, T*, int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                      int64_t, int, int, int, cudaStream_t);                               \
  template void max_pool2d_backward<T>(const T*, const int32_t*, T*, int64_t, int64_t, int64_t, int64_t,   \
                                       int64_t, int64_t, int, int, int, cudaStream_t);                     \
  template void global_avg_pool_forward<T>(const T*, T*, int64_t, int64_t, int64_t, cudaStream_t);         \
  template void global_avg_pool_backward<T>(const T*, T*, int64_t, int64_t, int64_t, cudaStream_t);
BYOL_INSTANTIATE_POOL(float)
BYOL_INSTANTIATE_POOL(double)

}  // namespace byol::kernels
