// Row kernels of the CUDA backend (launchers): BYOL's regression loss and L2 normalisation, one warp per
// row. Formulas: engine/math/byol_loss.h (shared with the CPU).
//
// Scalars stay on the device: forward passes write the mean loss to a one-element device buffer, and
// backward passes read the incoming gradient g from one, so a training step never waits for the host.
// The batch mean is deterministic (engine/cuda/grid_sum.cuh).
// Launchers that need scratch memory (reductions) take it from cuda::DeviceBuffer, which is ordered on
// cuda::compute_stream(): pass that stream (every caller in the engine does).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace byol::kernels {

// loss[0] = mean_i [(2 - 2 cos(p1_i, z2_i)) + (2 - 2 cos(p2_i, z1_i))]; one launch.
template <class T>
void byol_loss_forward(const T* p1, const T* z2, const T* p2, const T* z1, int64_t N, int64_t D, T* loss,
                       cudaStream_t stream);
// Gradients of g[0] * loss for the non-null outputs; one launch.
template <class T>
void byol_loss_backward(const T* p1, const T* z2, const T* p2, const T* z1, const T* g, T* dp1, T* dz2,
                        T* dp2, T* dz1, int64_t N, int64_t D, cudaStream_t stream);

template <class T>
void l2_normalize_forward(const T* x, T* y, T* inv_norm, int64_t N, int64_t D, cudaStream_t stream);
template <class T>
void l2_normalize_backward(const T* dy, const T* x, const T* y, const T* inv_norm, T* dx, int64_t N,
                           int64_t D, cudaStream_t stream);

}  // namespace byol::kernels
