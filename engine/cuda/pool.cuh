// Pooling over NHWC on the GPU (launchers). Same contracts as the CPU backend (engine/cpu/pool.cpp):
// argmax holds, per output element, the input offset within its image (h * W + w) * C + c; the first
// maximum of a window wins ties and NaN propagates. Backward gathers (each input element sums the
// gradients of the windows whose argmax it is), so it needs no atomics and is deterministic.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace byol::kernels {

template <class T>
void max_pool2d_forward(const T* x, T* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad, cudaStream_t stream);
template <class T>
void max_pool2d_backward(const T* dy, const int32_t* argmax, T* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q, int kernel, int stride, int pad,
                         cudaStream_t stream);
template <class T>
void global_avg_pool_forward(const T* x, T* y, int64_t N, int64_t HW, int64_t C, cudaStream_t stream);
template <class T>
void global_avg_pool_backward(const T* dy, T* dx, int64_t N, int64_t HW, int64_t C, cudaStream_t stream);

// The launchers use 32-bit index arithmetic when every index of a launch fits (a fast path: 64-bit
// division is many instructions), else 64-bit. With `on`, every launch takes the 64-bit kernels, so the
// lab validates both instantiations on the same small shapes.
void force_64bit_pool_indices(bool on);
// Max and global average pooling run in packs of 16 bytes of channels (engine/cuda/pack.cuh) where C divides
// and the buffers are aligned. With `on`, always channel by channel, so the lab validates and times both.
void force_unpacked_pools(bool on);

}  // namespace byol::kernels
