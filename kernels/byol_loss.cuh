// Row kernels of the CUDA backend (launchers): BYOL's regression loss, L2 normalisation and softmax
// cross-entropy, one warp per row. Formulas: kernels/math/byol_loss_math.h (shared with the CPU).
//
// Scalars stay on the device: forward passes write the mean loss to a one-element device buffer, and
// backward passes read the incoming gradient g from one, so a training step never waits for the host.
// The batch mean is deterministic: each block writes its partial sum, and the last block to finish
// adds the partials in block order (no floating-point atomics).
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

// I = int32_t or int64_t labels in [0, K); a row with a label outside makes the loss (and that row's
// gradient) NaN instead of reading outside the row.
template <class T, class I>
void softmax_cross_entropy_forward(const T* logits, const I* labels, T* probs, T* loss, int64_t N, int64_t K,
                                   cudaStream_t stream);
template <class T, class I>
void softmax_cross_entropy_backward(const T* probs, const I* labels, const T* g, T* dlogits, int64_t N,
                                    int64_t K, cudaStream_t stream);

}  // namespace byol::kernels
