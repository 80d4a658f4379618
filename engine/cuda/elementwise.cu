// Elementwise kernels: grid-stride loops over contiguous buffers in packs of 16 bytes where the pointers
// allow (engine/cuda/pack.cuh), per-element math from engine/math/elementwise.h. Full sums go through CUB's
// device reduction in double.
//
// The first GPU run (H200, 2026-12-04) timed the scalar float32 kernels at 91-98 % of the copy bandwidth
// and the casts at 60 %; bf16 rows move 2 bytes per scalar access, half a float's. Packs give every thread
// 16-byte accesses at every dtype; elementwise_lab times them next to the scalar kernels
// (force_unpacked_elementwise).
#include <cub/device/device_reduce.cuh>
#include <cuda/std/functional>
#include <type_traits>

#include "engine/common.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/elementwise.cuh"
#include "engine/cuda/pack.cuh"
#include "engine/dtype.h"
#include "engine/math/elementwise.h"

namespace byol::kernels {
namespace {

// Packed maps (engine/cuda/pack.cuh): the packs [0, n / V) first, then the last n % V elements one by
// one; V = 1 is the scalar kernel. Per element the scalar formula, so every V gives the same bits.
struct Relu {
  template <class F>
  __device__ F operator()(F x) const {
    return math::relu(x);
  }
};
struct ReluBackward {  // (saved output, dy): relu(x) > 0 exactly where x > 0, so the output decides
  template <class F>
  __device__ F operator()(F y, F dy) const {
    return math::relu_backward(y, dy);
  }
};
struct Plus {
  template <class F>
  __device__ F operator()(F a, F b) const {
    return a + b;
  }
};
template <class T>
struct Times {  // float and double only: the product in T, as the CPU's scale
  T alpha;
  __device__ T operator()(T x) const { return x * alpha; }
};

template <int V, class T, class Op>
__global__ void map1_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, Op op) {
  const int64_t packs = n / V;
  for (int64_t i = global_thread(); i < packs; i += grid_threads()) {
    const Pack<T, V> a = load_pack<V>(x + i * V);
    Pack<T, V> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = from_compute<T>(op(to_compute(a.v[k])));
    store_pack<V>(y + i * V, r);
  }
  for (int64_t i = packs * V + global_thread(); i < n; i += grid_threads())
    y[i] = from_compute<T>(op(to_compute(x[i])));
}

template <int V, class T, class Op>
__global__ void map2_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y, int64_t n,
                            Op op) {
  const int64_t packs = n / V;
  for (int64_t i = global_thread(); i < packs; i += grid_threads()) {
    const Pack<T, V> pa = load_pack<V>(a + i * V), pb = load_pack<V>(b + i * V);
    Pack<T, V> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = from_compute<T>(op(to_compute(pa.v[k]), to_compute(pb.v[k])));
    store_pack<V>(y + i * V, r);
  }
  for (int64_t i = packs * V + global_thread(); i < n; i += grid_threads())
    y[i] = from_compute<T>(op(to_compute(a[i]), to_compute(b[i])));
}

// y += x (y is read and written, so it is not __restrict__-qualified against itself).
template <int V, class T>
__global__ void add_inplace_kernel(T* y, const T* __restrict__ x, int64_t n) {
  const int64_t packs = n / V;
  for (int64_t i = global_thread(); i < packs; i += grid_threads()) {
    const Pack<T, V> px = load_pack<V>(x + i * V);
    Pack<T, V> r = load_pack<V>(static_cast<const T*>(y + i * V));
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = from_compute<T>(to_compute(r.v[k]) + to_compute(px.v[k]));
    store_pack<V>(y + i * V, r);
  }
  for (int64_t i = packs * V + global_thread(); i < n; i += grid_threads())
    y[i] = from_compute<T>(to_compute(y[i]) + to_compute(x[i]));
}

template <int V, class T>
__global__ void fill_from_scalar_kernel(T* __restrict__ y, const T* __restrict__ scalar, double factor,
                                        int64_t n) {
  const T v = static_cast<T>(factor * static_cast<double>(scalar[0]));
  Pack<T, V> r;
#pragma unroll
  for (int k = 0; k < V; ++k) r.v[k] = v;
  const int64_t packs = n / V;
  for (int64_t i = global_thread(); i < packs; i += grid_threads()) store_pack<V>(y + i * V, r);
  for (int64_t i = packs * V + global_thread(); i < n; i += grid_threads()) y[i] = v;
}

struct ToDouble {
  template <class T>
  __device__ double operator()(T v) const {
    return static_cast<double>(v);
  }
};

bool g_force_unpacked = false;  // force_unpacked_elementwise
bool g_force_64bit = false;     // force_64bit_elementwise_indices

// Whether every pointer is aligned to a pack of 16 bytes (a sliced view can start anywhere).
template <class T, class... P>
bool packs_fit(const P*... p) {
  return !g_force_unpacked && pack_aligned<kPack<T>>(p...);
}

template <class T>
__global__ void store_scaled_kernel(const double* __restrict__ acc, double factor, T* __restrict__ out) {
  out[0] = static_cast<T>(acc[0] * factor);
}

// Column sums of an [rows, cols] matrix, each column's in double: blocks of 32 columns x 32 row lanes; lane
// ty adds rows ty, ty + 32, ... (in that order), then the column's thread adds the 32 lanes' sums in lane
// order. One thread per column walking every row (version 1) left most of the GPU idle at a linear layer's
// [256, 4096] (16 blocks) and ran at 3 % of the copy bandwidth at [4096, 4096] on an H200 (2026-12-04).
constexpr int kColumnLanes = 32;
template <class T>
__global__ void __launch_bounds__(kWarp* kColumnLanes)
    column_sums_kernel(const T* __restrict__ x, int64_t rows, int64_t cols, T* __restrict__ out) {
  __shared__ double partial[kColumnLanes][kWarp];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kWarp + threadIdx.x;
  double s = 0;
  if (c < cols) {
#pragma unroll 4  // loads issued ahead of the adds, which stay in row order
    for (int64_t r = threadIdx.y; r < rows; r += kColumnLanes) s += static_cast<double>(x[r * cols + c]);
  }
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double total = 0;
    for (int lane = 0; lane < kColumnLanes; ++lane) total += partial[lane][threadIdx.x];
    out[c] = static_cast<T>(total);
  }
}

// y[r, c] += bias[c] in packs of columns (cols % V == 0), the index type I 32-bit where it fits: version 1
// spent a 64-bit i % cols per element (61 % of the copy bandwidth on an H200, 2026-12-04).
template <int V, class T, class I>
__global__ void add_row_bias_kernel(T* y, const T* __restrict__ bias, I rows, I cols) {
  const I packs_per_row = cols / V;
  const I packs = rows * packs_per_row;
  for (I i = static_cast<I>(global_thread()); i < packs; i += static_cast<I>(grid_threads())) {
    const I c = (i - i / packs_per_row * packs_per_row) * V;
    Pack<T, V> r = load_pack<V>(static_cast<const T*>(y + static_cast<int64_t>(i) * V));
    const Pack<T, V> b = load_pack<V>(bias + c);
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] += b.v[k];
    store_pack<V>(y + static_cast<int64_t>(i) * V, r);
  }
}

// Casts: one kernel per (source, destination) type pair, in packs of the wider type's 16 bytes. Every value
// goes through the scalar rule: widen the source (to_compute: bf16 -> float), convert to the destination's
// type; bf16 destinations round a float once (a double first narrows to float, as the CPU cast does).
template <class D, class S>
__device__ __forceinline__ D convert(S v) {
  if constexpr (std::is_same_v<D, bf16>) {
    return float_to_bf16(static_cast<float>(to_compute(v)));
  } else {
    return static_cast<D>(to_compute(v));
  }
}
template <int V, class S, class D>
__global__ void cast_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  const int64_t packs = n / V;
  for (int64_t i = global_thread(); i < packs; i += grid_threads()) {
    const Pack<S, V> a = load_pack<V>(src + i * V);
    Pack<D, V> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = convert<D>(a.v[k]);
    store_pack<V>(dst + i * V, r);
  }
  for (int64_t i = packs * V + global_thread(); i < n; i += grid_threads()) dst[i] = convert<D>(src[i]);
}

template <class S, class D>
void launch_cast(const S* src, D* dst, int64_t n, cudaStream_t stream) {
  constexpr int V = kPack<S> < kPack<D> ? kPack<S> : kPack<D>;  // the wider type's 16 bytes
  if (!g_force_unpacked && pack_aligned<V>(src, dst)) {
    cast_kernel<V><<<grid_1d(n / V), kThreads, 0, stream>>>(src, dst, n);
  } else {
    cast_kernel<1><<<grid_1d(n), kThreads, 0, stream>>>(src, dst, n);
  }
}

template <class S>
void launch_cast_from(const S* src, void* dst, int dst_dtype, int64_t n, cudaStream_t stream) {
  switch (static_cast<DType>(dst_dtype)) {
    case DType::f32:
      return launch_cast(src, static_cast<float*>(dst), n, stream);
    case DType::f64:
      return launch_cast(src, static_cast<double*>(dst), n, stream);
    case DType::bf16:
      return launch_cast(src, static_cast<bf16*>(dst), n, stream);
    default:
      BYOL_FAIL("kernels::cast: destination dtype ", dtype_name(static_cast<DType>(dst_dtype)),
                " is not f32, f64 or bf16");
  }
}

}  // namespace

void force_unpacked_elementwise(bool on) {
  g_force_unpacked = on;
}

void force_64bit_elementwise_indices(bool on) {
  g_force_64bit = on;
}

template <class T, class Op>
void launch_map1(const T* x, T* y, int64_t n, Op op, cudaStream_t stream) {
  if (n == 0) return;
  with_pack<T>(packs_fit<T>(x, y), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    map1_kernel<V><<<grid_1d(n / V), kThreads, 0, stream>>>(x, y, n, op);
  });
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T, class Op>
void launch_map2(const T* a, const T* b, T* y, int64_t n, Op op, cudaStream_t stream) {
  if (n == 0) return;
  with_pack<T>(packs_fit<T>(a, b, y), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    map2_kernel<V><<<grid_1d(n / V), kThreads, 0, stream>>>(a, b, y, n, op);
  });
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void relu_forward(const T* x, T* y, int64_t n, cudaStream_t stream) {
  launch_map1(x, y, n, Relu{}, stream);
}

template <class T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t n, cudaStream_t stream) {
  launch_map2(y, dy, dx, n, ReluBackward{}, stream);
}

template <class T>
void add(const T* a, const T* b, T* y, int64_t n, cudaStream_t stream) {
  launch_map2(a, b, y, n, Plus{}, stream);
}

template <class T>
void add_inplace(T* y, const T* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  with_pack<T>(packs_fit<T>(y, x), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    add_inplace_kernel<V><<<grid_1d(n / V), kThreads, 0, stream>>>(y, x, n);
  });
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void scale(const T* x, double alpha, T* y, int64_t n, cudaStream_t stream) {
  launch_map1(x, y, n, Times<T>{static_cast<T>(alpha)}, stream);
}

template <class T>
void fill_from_scalar(T* y, const T* scalar, double factor, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  with_pack<T>(packs_fit<T>(y), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    fill_from_scalar_kernel<V><<<grid_1d(n / V), kThreads, 0, stream>>>(y, scalar, factor, n);
  });
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void sum(const T* x, int64_t n, double factor, T* out, cudaStream_t stream) {
  cuda::DeviceBuffer acc(sizeof(double));
  size_t temp_bytes = 0;
  BYOL_CUDA_CHECK(cub::DeviceReduce::TransformReduce(nullptr, temp_bytes, x, acc.as<double>(), n,
                                                     ::cuda::std::plus<double>{}, ToDouble{}, 0.0, stream));
  cuda::DeviceBuffer temp(temp_bytes);
  BYOL_CUDA_CHECK(cub::DeviceReduce::TransformReduce(temp.get(), temp_bytes, x, acc.as<double>(), n,
                                                     ::cuda::std::plus<double>{}, ToDouble{}, 0.0, stream));
  store_scaled_kernel<<<1, 1, 0, stream>>>(acc.as<double>(), factor, out);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void column_sums(const T* x, int64_t rows, int64_t cols, T* out, cudaStream_t stream) {
  if (cols == 0) return;
  const int64_t blocks = (cols + kWarp - 1) / kWarp;
  BYOL_CHECK(blocks <= int64_t(0x7fffffff), "kernels::column_sums: ", cols, " columns are too many");
  column_sums_kernel<<<static_cast<unsigned>(blocks), dim3(kWarp, kColumnLanes), 0, stream>>>(x, rows, cols,
                                                                                              out);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void add_row_bias(T* y, const T* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  const int64_t total = rows * cols;
  if (total == 0) return;
  constexpr int V = kPack<T>;
  const bool packed = cols % V == 0 && packs_fit<T>(y, bias);
  const int64_t threads = packed ? total / V : total;
  // 32-bit indices when every element index (and the grid's stride past the end) fits in int32
  const bool narrow =
      !g_force_64bit && total + static_cast<int64_t>(kMaxBlocks) * kThreads < (int64_t(1) << 31);
  const unsigned grid = grid_1d(threads);
  if (packed && narrow) {
    add_row_bias_kernel<V, T, int32_t>
        <<<grid, kThreads, 0, stream>>>(y, bias, static_cast<int32_t>(rows), static_cast<int32_t>(cols));
  } else if (packed) {
    add_row_bias_kernel<V, T, int64_t><<<grid, kThreads, 0, stream>>>(y, bias, rows, cols);
  } else if (narrow) {
    add_row_bias_kernel<1, T, int32_t>
        <<<grid, kThreads, 0, stream>>>(y, bias, static_cast<int32_t>(rows), static_cast<int32_t>(cols));
  } else {
    add_row_bias_kernel<1, T, int64_t><<<grid, kThreads, 0, stream>>>(y, bias, rows, cols);
  }
  BYOL_CUDA_CHECK_LAUNCH();
}

void cast(const void* src, int src_dtype, void* dst, int dst_dtype, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  switch (static_cast<DType>(src_dtype)) {
    case DType::f32:
      launch_cast_from(static_cast<const float*>(src), dst, dst_dtype, n, stream);
      break;
    case DType::f64:
      launch_cast_from(static_cast<const double*>(src), dst, dst_dtype, n, stream);
      break;
    case DType::bf16:
      launch_cast_from(static_cast<const bf16*>(src), dst, dst_dtype, n, stream);
      break;
    default:
      BYOL_FAIL("kernels::cast: source dtype ", dtype_name(static_cast<DType>(src_dtype)),
                " is not f32, f64 or bf16");
  }
  BYOL_CUDA_CHECK_LAUNCH();
}

#define BYOL_INSTANTIATE_ELEMENTWISE(T)                                           \
  template void relu_forward<T>(const T*, T*, int64_t, cudaStream_t);             \
  template void relu_backward<T>(const T*, const T*, T*, int64_t, cudaStream_t);  \
  template void add<T>(const T*, const T*, T*, int64_t, cudaStream_t);            \
  template void add_inplace<T>(T*, const T*, int64_t, cudaStream_t);              \
  template void scale<T>(const T*, double, T*, int64_t, cudaStream_t);            \
  template void fill_from_scalar<T>(T*, const T*, double, int64_t, cudaStream_t); \
  template void sum<T>(const T*, int64_t, double, T*, cudaStream_t);              \
  template void column_sums<T>(const T*, int64_t, int64_t, T*, cudaStream_t);     \
  template void add_row_bias<T>(T*, const T*, int64_t, int64_t, cudaStream_t);
BYOL_INSTANTIATE_ELEMENTWISE(float)
BYOL_INSTANTIATE_ELEMENTWISE(double)
// bf16 activations: relu and add (float math, one rounding per result; batch norm's fused ReLU and autograd's
// sums of gradients), as on the CPU.
template void relu_forward<bf16>(const bf16*, bf16*, int64_t, cudaStream_t);
template void relu_backward<bf16>(const bf16*, const bf16*, bf16*, int64_t, cudaStream_t);
template void add<bf16>(const bf16*, const bf16*, bf16*, int64_t, cudaStream_t);
template void add_inplace<bf16>(bf16*, const bf16*, int64_t, cudaStream_t);

}  // namespace byol::kernels
