// The device-memory primitives the tensor layer needs. The CUDA backend implements them
// (engine/cuda/device_memory.cu); a CPU-only build links engine/device_memory_none.cpp, whose functions
// throw an error saying this build has no CUDA backend.
#pragma once

#include <cstddef>
#include <cstdint>

namespace byol {

bool cuda_compiled();     // true when this build contains the CUDA backend
int cuda_device_count();  // 0 when there is no usable GPU (or no CUDA backend)
// TF32 for float32 convolutions and GEMMs on GPUs (on by default: cuda::set_allow_tf32); does nothing in a
// CPU-only build, where there is nothing to switch.
void cuda_set_tf32(bool on);
bool cuda_tf32();  // the setting (false in a CPU-only build)
// Makes `device` this thread's current GPU (kernels, streams and handles follow it); throws naming the
// visible count when it does not exist, or in a CPU-only build.
void cuda_set_device(int device);
void* cuda_alloc(size_t bytes, int device);
void cuda_free(void* ptr, int device) noexcept;
void cuda_copy_to_device(void* dst, const void* src, size_t bytes, int device);
void cuda_copy_to_host(void* dst, const void* src, size_t bytes, int device);
void cuda_copy_device_to_device(void* dst, const void* src, size_t bytes, int device);
void cuda_memset_zero(void* dst, size_t bytes, int device);
// Fills n float32 (double_precision = false) or float64 values with `value` on the compute stream,
// without waiting for the GPU (the backward seed and every fill_ of a GPU tensor go through it).
void cuda_fill_floating(void* dst, bool double_precision, double value, int64_t n, int device);

}  // namespace byol
