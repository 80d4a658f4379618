// Elementwise kernels and full reductions of the CUDA backend (launchers; host-callable). Every
// launcher enqueues on the given stream, checks the launch and never synchronises. Outputs are written
// (=) except add_inplace, which accumulates (+=).
// Launchers that need scratch memory (reductions) take it from cuda::DeviceBuffer, which is ordered on
// cuda::compute_stream(): pass that stream (every caller in the engine does).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace byol::kernels {

template <class T>
void relu_forward(const T* x, T* y, int64_t n, cudaStream_t stream);
template <class T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t n, cudaStream_t stream);
template <class T>
void add(const T* a, const T* b, T* y, int64_t n, cudaStream_t stream);
template <class T>
void add_inplace(T* y, const T* x, int64_t n, cudaStream_t stream);
template <class T>
void scale(const T* x, double alpha, T* y, int64_t n, cudaStream_t stream);
// y[i] = factor * scalar[0] for i < n: the backward of sum/mean without reading the gradient back.
template <class T>
void fill_from_scalar(T* y, const T* scalar, double factor, int64_t n, cudaStream_t stream);
// out[0] = factor * sum(x), accumulated in double (CUB device reduction).
template <class T>
void sum(const T* x, int64_t n, double factor, T* out, cudaStream_t stream);
// out[c] = sum over rows of x[r, c] (a linear layer's bias gradient), accumulated in double.
template <class T>
void column_sums(const T* x, int64_t rows, int64_t cols, T* out, cudaStream_t stream);

// y[r, c] += bias[c] for an [rows, cols] matrix (the bias of a linear layer where no cuBLASLt epilogue
// serves).
template <class T>
void add_row_bias(T* y, const T* bias, int64_t rows, int64_t cols, cudaStream_t stream);

// dtype casts between f32, f64 and bf16 (bf16 rounds to nearest even, as the CPU cast does); codes are
// those of byol::DType.
void cast(const void* src, int src_dtype, void* dst, int dst_dtype, int64_t n, cudaStream_t stream);

// The maps and casts above run in packs of 16 bytes (engine/cuda/pack.cuh) where every pointer is aligned to
// one, else element by element. With `on`, always element by element, so the lab validates and times both.
void force_unpacked_elementwise(bool on);
// add_row_bias uses 32-bit indices where they fit; with `on`, 64-bit ones (the lab validates both).
void force_64bit_elementwise_indices(bool on);

}  // namespace byol::kernels
