// Elementwise kernels: grid-stride loops over contiguous buffers, per-element math from
// engine/math/elementwise.h. Full sums go through CUB's device reduction in double.
#include <cub/device/device_reduce.cuh>
#include <cuda/std/functional>

#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/elementwise.cuh"
#include "engine/dtype.h"
#include "engine/math/elementwise.h"

namespace byol::kernels {
namespace {

template <class T>
__global__ void relu_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    y[i] = from_compute<T>(math::relu(to_compute(x[i])));
}

template <class T>
__global__ void relu_backward_kernel(const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx,
                                     int64_t n) {
  // relu(x) > 0 exactly where x > 0, so the saved output decides as well as the input would.
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    dx[i] = from_compute<T>(math::relu_backward(to_compute(y[i]), to_compute(dy[i])));
}

template <class T>
__global__ void add_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    y[i] = from_compute<T>(to_compute(a[i]) + to_compute(b[i]));
}

template <class T>
__global__ void add_inplace_kernel(T* __restrict__ y, const T* __restrict__ x, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    y[i] = from_compute<T>(to_compute(y[i]) + to_compute(x[i]));
}

template <class T>
__global__ void scale_kernel(const T* __restrict__ x, T alpha, T* __restrict__ y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = x[i] * alpha;
}

template <class T>
__global__ void fill_from_scalar_kernel(T* __restrict__ y, const T* __restrict__ scalar, double factor,
                                        int64_t n) {
  const T v = static_cast<T>(factor * static_cast<double>(scalar[0]));
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = v;
}

template <class T>
__global__ void store_scaled_kernel(const double* __restrict__ acc, double factor, T* __restrict__ out) {
  out[0] = static_cast<T>(acc[0] * factor);
}

template <class T>
__global__ void column_sums_kernel(const T* __restrict__ x, int64_t rows, int64_t cols, T* __restrict__ out) {
  for (int64_t c = global_thread(); c < cols; c += grid_threads()) {
    double s = 0;
    for (int64_t r = 0; r < rows; ++r) s += static_cast<double>(x[r * cols + c]);
    out[c] = static_cast<T>(s);
  }
}

template <class T>
__global__ void add_row_bias_kernel(T* __restrict__ y, const T* __restrict__ bias, int64_t rows,
                                    int64_t cols) {
  for (int64_t i = global_thread(); i < rows * cols; i += grid_threads()) y[i] += bias[i % cols];
}

struct ToDouble {
  template <class T>
  __device__ double operator()(T v) const {
    return static_cast<double>(v);
  }
};

__device__ double load_as_double(const void* p, int dtype, int64_t i) {
  switch (static_cast<DType>(dtype)) {
    case DType::f32:
      return static_cast<const float*>(p)[i];
    case DType::f64:
      return static_cast<const double*>(p)[i];
    default:
      return bf16_to_float(static_cast<const bf16*>(p)[i]);
  }
}

__global__ void cast_kernel(const void* __restrict__ src, int src_dtype, void* __restrict__ dst,
                            int dst_dtype, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    switch (static_cast<DType>(dst_dtype)) {
      case DType::f32:
        static_cast<float*>(dst)[i] = static_cast<float>(load_as_double(src, src_dtype, i));
        break;
      case DType::f64:
        static_cast<double*>(dst)[i] = load_as_double(src, src_dtype, i);
        break;
      default:
        // f32 -> bf16 rounds once; f64 -> bf16 goes through float, as the CPU cast does.
        static_cast<bf16*>(dst)[i] = float_to_bf16(static_cast<float>(load_as_double(src, src_dtype, i)));
        break;
    }
  }
}

}  // namespace

template <class T>
void relu_forward(const T* x, T* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  relu_forward_kernel<<<grid_1d(n), kThreads, 0, stream>>>(x, y, n);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  relu_backward_kernel<<<grid_1d(n), kThreads, 0, stream>>>(y, dy, dx, n);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void add(const T* a, const T* b, T* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_kernel<<<grid_1d(n), kThreads, 0, stream>>>(a, b, y, n);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void add_inplace(T* y, const T* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_inplace_kernel<<<grid_1d(n), kThreads, 0, stream>>>(y, x, n);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void scale(const T* x, double alpha, T* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<grid_1d(n), kThreads, 0, stream>>>(x, static_cast<T>(alpha), y, n);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void fill_from_scalar(T* y, const T* scalar, double factor, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  fill_from_scalar_kernel<<<grid_1d(n), kThreads, 0, stream>>>(y, scalar, factor, n);
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
  column_sums_kernel<<<grid_1d(cols), kThreads, 0, stream>>>(x, rows, cols, out);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void add_row_bias(T* y, const T* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows * cols == 0) return;
  add_row_bias_kernel<<<grid_1d(rows * cols), kThreads, 0, stream>>>(y, bias, rows, cols);
  BYOL_CUDA_CHECK_LAUNCH();
}

void cast(const void* src, int src_dtype, void* dst, int dst_dtype, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  cast_kernel<<<grid_1d(n), kThreads, 0, stream>>>(src, src_dtype, dst, dst_dtype, n);
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
