// Max pooling and global average pooling kernels: one thread per output element (forward) or per
// input element (max-pool backward), or per pack of them (below); consecutive threads take consecutive
// channels, so every warp reads and writes contiguous NHWC memory. Storage T is float, double or bf16 (bf16:
// float math, one rounding per stored value, as on the CPU).
//
// Index arithmetic in 32 bits whenever the tensors have fewer than 2^31 elements (index type I): the
// first GPU run (H200, 2026-12-04) timed the 64-bit version at 18 % (forward) and 8 % (backward) of the
// copy bandwidth on ResNet-50's stem, where each element's four 64-bit divisions and remainders cost more
// than its memory traffic; in 32 bits the second run measured 30 % and 11 %.
//
// Packs (engine/cuda/pack.cuh): where C divides by kPack<T> (16 bytes of channels) and the buffers are
// aligned, a thread takes a pack of channels of one pixel, so the index arithmetic (and, for max pooling
// backward, the window search) is paid once per pack and every access is 16 bytes wide. Per channel the
// taps, the comparisons and the summation order are the scalar kernel's: the same bits.
#include <algorithm>
#include <type_traits>

#include "engine/cuda/common.cuh"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/pack.cuh"
#include "engine/cuda/pool.cuh"
#include "engine/dtype.h"

namespace byol::kernels {
namespace {

// Max pooling forward: V channels of one output pixel per thread (C % V == 0; V = 1 is channel by channel).
// Per channel: the window's taps in row-major order; the first maximum wins ties; a NaN replaces a number
// and is then kept (as on the CPU).
template <class T, class I, int V>
__global__ void max_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y,
                                          int32_t* __restrict__ argmax, I N, I H, I W, I C, I P, I Q,
                                          int kernel, int stride, int pad) {
  const I packs = C / V;
  const I total = N * P * Q * packs;
  for (I i = static_cast<I>(global_thread()); i < total; i += static_cast<I>(grid_threads())) {
    const I pixel = i / packs;
    const I c = (i - pixel * packs) * V;
    const I pq = pixel / Q;
    const I q = pixel - pq * Q;
    const I n = pq / P;
    const I p = pq - n * P;
    const T* img = x + static_cast<int64_t>(n) * H * W * C;
    compute_t<T> best[V];
    int32_t arg[V];
#pragma unroll
    for (int k = 0; k < V; ++k) {
      best[k] = 0;
      arg[k] = -1;
    }
    for (int r = 0; r < kernel; ++r) {
      const I h = p * stride - pad + r;
      if (h < 0 || h >= H) continue;
      for (int s = 0; s < kernel; ++s) {
        const I w = q * stride - pad + s;
        if (w < 0 || w >= W) continue;
        const I off = (h * W + w) * C + c;
        const Pack<T, V> taps = load_pack<V>(img + off);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const compute_t<T> v = to_compute(taps.v[k]);
          const bool nan_first = v != v && best[k] == best[k];
          if (arg[k] < 0 || v > best[k] || nan_first) {
            best[k] = v;
            arg[k] = static_cast<int32_t>(off) + k;
          }
        }
      }
    }
    Pack<T, V> out;
    Pack<int32_t, V> out_arg;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      out.v[k] = from_compute<T>(best[k]);
      out_arg.v[k] = arg[k];
    }
    const I o = pixel * C + c;
    store_pack<V>(y + o, out);
    store_pack<V>(argmax + o, out_arg);
  }
}

// Max pooling backward, a gather: V channels of one input pixel per thread sum the gradients of the windows
// whose maximum they are, in increasing window order (the CPU's scatter order); a window's gradients are read
// only where one of the pack's channels took its maximum there.
template <class T, class I, int V>
__global__ void max_pool2d_backward_kernel(const T* __restrict__ dy, const int32_t* __restrict__ argmax,
                                           T* __restrict__ dx, I N, I H, I W, I C, I P, I Q, int kernel,
                                           int stride, int pad) {
  const I packs = C / V;
  const I total = N * H * W * packs;
  for (I i = static_cast<I>(global_thread()); i < total; i += static_cast<I>(grid_threads())) {
    const I pixel = i / packs;
    const I c = (i - pixel * packs) * V;
    const I hw = pixel / W;
    const I w = pixel - hw * W;
    const I n = hw / H;
    const I h = hw - n * H;
    const int32_t self = static_cast<int32_t>((h * W + w) * C + c);
    const IndexRangeOf<I> ps = pool_windows_covering<I>(h, kernel, stride, pad, P);
    const IndexRangeOf<I> qs = pool_windows_covering<I>(w, kernel, stride, pad, Q);
    compute_t<T> acc[V];
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = 0;
    for (I p = ps.first; p < ps.last; ++p)
      for (I q = qs.first; q < qs.last; ++q) {
        const I o = ((n * P + p) * Q + q) * C + c;
        const Pack<int32_t, V> args = load_pack<V>(argmax + o);
        bool any = false;
#pragma unroll
        for (int k = 0; k < V; ++k) any |= args.v[k] == self + k;
        if (!any) continue;
        const Pack<T, V> g = load_pack<V>(dy + o);
#pragma unroll
        for (int k = 0; k < V; ++k)
          if (args.v[k] == self + k) acc[k] += to_compute(g.v[k]);
      }
    Pack<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = from_compute<T>(acc[k]);
    store_pack<V>(dx + (pixel * C + c), out);
  }
}

// Global average pooling, in packs of V channels (V = 1: one channel per thread); each channel sums its
// HW values in the compute type in order, as the CPU does.
template <int V, class T>
__global__ void global_avg_pool_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t N,
                                               int64_t HW, int64_t C) {
  using F = compute_t<T>;
  const F inv = F(1) / static_cast<F>(HW);
  const int64_t packs = C / V;
  for (int64_t i = global_thread(); i < N * packs; i += grid_threads()) {
    const int64_t n = i / packs, c = (i - n * packs) * V;
    const T* img = x + n * HW * C + c;
    F acc[V];
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = F(0);
#pragma unroll 7
    for (int64_t h = 0; h < HW; ++h) {
      const Pack<T, V> v = load_pack<V>(img + h * C);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += to_compute(v.v[k]);
    }
    Pack<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = from_compute<T>(acc[k] * inv);
    store_pack<V>(y + n * C + c, out);
  }
}

template <int V, class T, class I>
__global__ void global_avg_pool_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, I N, I HW,
                                                I C) {
  using F = compute_t<T>;
  const F inv = F(1) / static_cast<F>(HW);
  const I packs = C / V;
  const I total = N * HW * packs;
  for (I i = static_cast<I>(global_thread()); i < total; i += static_cast<I>(grid_threads())) {
    const I pixel = i / packs;
    const I c = (i - pixel * packs) * V, n = pixel / HW;
    const Pack<T, V> g = load_pack<V>(dy + (n * C + c));
    Pack<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = from_compute<T>(to_compute(g.v[k]) * inv);
    store_pack<V>(dx + (pixel * C + c), out);
  }
}

bool g_force_64bit = false;     // force_64bit_pool_indices
bool g_force_unpacked = false;  // force_unpacked_pools

// 32-bit indices when every index of the launch (and the grid's stride past the end) fits in int32.
bool fits_int32(int64_t total) {
  return !g_force_64bit && total + static_cast<int64_t>(kMaxBlocks) * kThreads < (int64_t(1) << 31);
}

}  // namespace

void force_64bit_pool_indices(bool on) {
  g_force_64bit = on;
}

void force_unpacked_pools(bool on) {
  g_force_unpacked = on;
}

// Launches kernel<T, I, V> over `threads` threads with the pooling's shape: I = int32_t where every index
// fits (`elements`: the larger tensor's count), V = the pack the launcher chose.
template <int V, class Launch>
void launch_pool(int64_t threads, int64_t elements, Launch&& launch) {
  if (fits_int32(elements)) {
    launch(std::integral_constant<int, V>{}, int32_t{}, grid_1d(threads));
  } else {
    launch(std::integral_constant<int, V>{}, int64_t{}, grid_1d(threads));
  }
}

template <class T>
void max_pool2d_forward(const T* x, T* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad, cudaStream_t stream) {
  const int64_t total = N * P * Q * C, elements = std::max(total, N * H * W * C);
  if (total == 0) return;
  auto launch = [&](auto v, auto index, unsigned grid) {
    using I = decltype(index);
    max_pool2d_forward_kernel<T, I, decltype(v)::value><<<grid, kThreads, 0, stream>>>(
        x, y, argmax, static_cast<I>(N), static_cast<I>(H), static_cast<I>(W), static_cast<I>(C),
        static_cast<I>(P), static_cast<I>(Q), kernel, stride, pad);
  };
  constexpr int V = kPack<T>;
  if (!g_force_unpacked && C % V == 0 && pack_aligned<V>(x, y, argmax)) {
    launch_pool<V>(total / V, elements, launch);
  } else {
    launch_pool<1>(total, elements, launch);
  }
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void max_pool2d_backward(const T* dy, const int32_t* argmax, T* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q, int kernel, int stride, int pad,
                         cudaStream_t stream) {
  const int64_t total = N * H * W * C, elements = std::max(total, N * P * Q * C);
  if (total == 0) return;
  auto launch = [&](auto v, auto index, unsigned grid) {
    using I = decltype(index);
    max_pool2d_backward_kernel<T, I, decltype(v)::value><<<grid, kThreads, 0, stream>>>(
        dy, argmax, dx, static_cast<I>(N), static_cast<I>(H), static_cast<I>(W), static_cast<I>(C),
        static_cast<I>(P), static_cast<I>(Q), kernel, stride, pad);
  };
  constexpr int V = kPack<T>;
  if (!g_force_unpacked && C % V == 0 && pack_aligned<V>(dy, argmax, dx)) {
    launch_pool<V>(total / V, elements, launch);
  } else {
    launch_pool<1>(total, elements, launch);
  }
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void global_avg_pool_forward(const T* x, T* y, int64_t N, int64_t HW, int64_t C, cudaStream_t stream) {
  if (N * C == 0) return;
  constexpr int V = kPack<T>;
  if (!g_force_unpacked && C % V == 0 && pack_aligned<V>(x, y)) {
    global_avg_pool_forward_kernel<V><<<grid_1d(N * C / V), kThreads, 0, stream>>>(x, y, N, HW, C);
  } else {
    global_avg_pool_forward_kernel<1><<<grid_1d(N * C), kThreads, 0, stream>>>(x, y, N, HW, C);
  }
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void global_avg_pool_backward(const T* dy, T* dx, int64_t N, int64_t HW, int64_t C, cudaStream_t stream) {
  const int64_t total = N * HW * C;
  if (total == 0) return;
  constexpr int V = kPack<T>;
  const bool packed = !g_force_unpacked && C % V == 0 && pack_aligned<V>(dy, dx);
  const int64_t threads = packed ? total / V : total;
  if (packed && fits_int32(total)) {
    global_avg_pool_backward_kernel<V, T, int32_t><<<grid_1d(threads), kThreads, 0, stream>>>(
        dy, dx, static_cast<int32_t>(N), static_cast<int32_t>(HW), static_cast<int32_t>(C));
  } else if (packed) {
    global_avg_pool_backward_kernel<V, T, int64_t>
        <<<grid_1d(threads), kThreads, 0, stream>>>(dy, dx, N, HW, C);
  } else if (fits_int32(total)) {
    global_avg_pool_backward_kernel<1, T, int32_t><<<grid_1d(threads), kThreads, 0, stream>>>(
        dy, dx, static_cast<int32_t>(N), static_cast<int32_t>(HW), static_cast<int32_t>(C));
  } else {
    global_avg_pool_backward_kernel<1, T, int64_t>
        <<<grid_1d(threads), kThreads, 0, stream>>>(dy, dx, N, HW, C);
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
