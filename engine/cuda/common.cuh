// Device helpers shared by the kernel files: warp reductions and grid-stride index loops.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/launch.h"

namespace byol::kernels {

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <class T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const T o = __shfl_xor_sync(0xffffffffu, v, offset);
    v = o > v ? o : v;
  }
  return v;
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}
// The warp of this thread across the grid, and the number of warps in the grid (row kernels).
__device__ __forceinline__ int64_t global_warp() {
  return global_thread() / kWarp;
}
__device__ __forceinline__ int64_t grid_warps() {
  return grid_threads() / kWarp;
}

}  // namespace byol::kernels
