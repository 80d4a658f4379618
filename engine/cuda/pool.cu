// Max pooling and global average pooling kernels: one thread per output element (forward) or per
// input element (max-pool backward); consecutive threads take consecutive channels, so every warp
// reads and writes contiguous NHWC memory. Storage T is float, double or bf16 (bf16: float math, one
// rounding per stored value, as on the CPU).
//
// Index arithmetic in 32 bits whenever the tensors have fewer than 2^31 elements (index type I): the
// first GPU run (H200, 2026-12-04) timed the 64-bit version at 18 % (forward) and 8 % (backward) of the
// copy bandwidth on ResNet-50's stem, where each element's four 64-bit divisions and remainders cost more
// than its memory traffic.
#include "engine/cuda/common.cuh"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/pool.cuh"
#include "engine/dtype.h"

namespace byol::kernels {
namespace {

template <class T, class I>
__global__ void max_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y,
                                          int32_t* __restrict__ argmax, I N, I H, I W, I C, I P, I Q,
                                          int kernel, int stride, int pad) {
  const I total = N * P * Q * C;
  for (I i = static_cast<I>(global_thread()); i < total; i += static_cast<I>(grid_threads())) {
    const I pixel = i / C;  // one division and one multiplication per coordinate
    const I c = i - pixel * C;
    const I pq = pixel / Q;
    const I q = pixel - pq * Q;
    const I n = pq / P;
    const I p = pq - n * P;
    const T* img = x + static_cast<int64_t>(n) * H * W * C;
    compute_t<T> best = 0;
    int32_t arg = -1;
    for (int r = 0; r < kernel; ++r) {
      const I h = p * stride - pad + r;
      if (h < 0 || h >= H) continue;
      for (int s = 0; s < kernel; ++s) {
        const I w = q * stride - pad + s;
        if (w < 0 || w >= W) continue;
        const I off = (h * W + w) * C + c;
        const compute_t<T> v = to_compute(img[off]);
        // The first maximum wins ties; a NaN replaces a number and is then kept (as on the CPU).
        const bool nan_first = v != v && best == best;
        if (arg < 0 || v > best || nan_first) {
          best = v;
          arg = static_cast<int32_t>(off);
        }
      }
    }
    y[i] = from_compute<T>(best);
    argmax[i] = arg;
  }
}

template <class T, class I>
__global__ void max_pool2d_backward_kernel(const T* __restrict__ dy, const int32_t* __restrict__ argmax,
                                           T* __restrict__ dx, I N, I H, I W, I C, I P, I Q, int kernel,
                                           int stride, int pad) {
  const I total = N * H * W * C;
  for (I i = static_cast<I>(global_thread()); i < total; i += static_cast<I>(grid_threads())) {
    const I pixel = i / C;
    const I c = i - pixel * C;
    const I hw = pixel / W;
    const I w = pixel - hw * W;
    const I n = hw / H;
    const I h = hw - n * H;
    const int32_t self = static_cast<int32_t>((h * W + w) * C + c);
    const IndexRange ps = pool_windows_covering(h, kernel, stride, pad, P);
    const IndexRange qs = pool_windows_covering(w, kernel, stride, pad, Q);
    compute_t<T> acc = 0;
    // Same summation order as the CPU's scatter (outputs in increasing order).
    for (I p = static_cast<I>(ps.first); p < static_cast<I>(ps.last); ++p)
      for (I q = static_cast<I>(qs.first); q < static_cast<I>(qs.last); ++q) {
        const I o = ((n * P + p) * Q + q) * C + c;
        if (argmax[o] == self) acc += to_compute(dy[o]);
      }
    dx[i] = from_compute<T>(acc);
  }
}

template <class T>
__global__ void global_avg_pool_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t N,
                                               int64_t HW, int64_t C) {
  using F = compute_t<T>;
  const F inv = F(1) / static_cast<F>(HW);
  for (int64_t i = global_thread(); i < N * C; i += grid_threads()) {
    const int64_t n = i / C, c = i % C;
    const T* img = x + n * HW * C + c;
    F acc = F(0);  // the CPU sums in the compute type in the same order
    for (int64_t k = 0; k < HW; ++k) acc += to_compute(img[k * C]);
    y[i] = from_compute<T>(acc * inv);
  }
}

template <class T, class I>
__global__ void global_avg_pool_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, I N, I HW,
                                                I C) {
  using F = compute_t<T>;
  const F inv = F(1) / static_cast<F>(HW);
  const I total = N * HW * C;
  for (I i = static_cast<I>(global_thread()); i < total; i += static_cast<I>(grid_threads())) {
    const I pixel = i / C;
    const I c = i - pixel * C, n = pixel / HW;
    dx[i] = from_compute<T>(to_compute(dy[n * C + c]) * inv);
  }
}

bool g_force_64bit = false;  // force_64bit_pool_indices

// 32-bit indices when every index of the launch (and the grid's stride past the end) fits in int32.
bool fits_int32(int64_t total) {
  return !g_force_64bit && total + static_cast<int64_t>(kMaxBlocks) * kThreads < (int64_t(1) << 31);
}

}  // namespace

void force_64bit_pool_indices(bool on) {
  g_force_64bit = on;
}

template <class T>
void max_pool2d_forward(const T* x, T* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad, cudaStream_t stream) {
  const int64_t total = N * P * Q * C;
  if (total == 0) return;
  if (fits_int32(total) && fits_int32(N * H * W * C)) {
    max_pool2d_forward_kernel<T, int32_t><<<grid_1d(total), kThreads, 0, stream>>>(
        x, y, argmax, static_cast<int32_t>(N), static_cast<int32_t>(H), static_cast<int32_t>(W),
        static_cast<int32_t>(C), static_cast<int32_t>(P), static_cast<int32_t>(Q), kernel, stride, pad);
  } else {
    max_pool2d_forward_kernel<T, int64_t>
        <<<grid_1d(total), kThreads, 0, stream>>>(x, y, argmax, N, H, W, C, P, Q, kernel, stride, pad);
  }
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void max_pool2d_backward(const T* dy, const int32_t* argmax, T* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q, int kernel, int stride, int pad,
                         cudaStream_t stream) {
  const int64_t total = N * H * W * C;
  if (total == 0) return;
  if (fits_int32(total) && fits_int32(N * P * Q * C)) {
    max_pool2d_backward_kernel<T, int32_t><<<grid_1d(total), kThreads, 0, stream>>>(
        dy, argmax, dx, static_cast<int32_t>(N), static_cast<int32_t>(H), static_cast<int32_t>(W),
        static_cast<int32_t>(C), static_cast<int32_t>(P), static_cast<int32_t>(Q), kernel, stride, pad);
  } else {
    max_pool2d_backward_kernel<T, int64_t>
        <<<grid_1d(total), kThreads, 0, stream>>>(dy, argmax, dx, N, H, W, C, P, Q, kernel, stride, pad);
  }
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
  const int64_t total = N * HW * C;
  if (total == 0) return;
  if (fits_int32(total)) {
    global_avg_pool_backward_kernel<T, int32_t><<<grid_1d(total), kThreads, 0, stream>>>(
        dy, dx, static_cast<int32_t>(N), static_cast<int32_t>(HW), static_cast<int32_t>(C));
  } else {
    global_avg_pool_backward_kernel<T, int64_t><<<grid_1d(total), kThreads, 0, stream>>>(dy, dx, N, HW, C);
  }
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
BYOL_INSTANTIATE_POOL(bf16)

}  // namespace byol::kernels
