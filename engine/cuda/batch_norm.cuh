// Batch norm over an [M, C] view (NHWC activations or [N, C] MLP activations) on the GPU (launchers).
//
// Training forward runs in two phases so a communicator can all-reduce between them (synced BN):
//   1. batch_norm_partial_sums: stats = [count, sum[C], sum_sq[C]] (2C + 1 doubles, device). Each
//      thread sums a few hundred values of one channel in fp32, shifted by the first of them; threads,
//      blocks and chunks are merged as (count, mean, M2) moments in double (Chan's formula), then turned
//      into the two sums, which add across ranks. A large channel mean does not cancel the variance away.
//   2. batch_norm_stats: mean and invstd from the (reduced) stats, and the running-statistics update;
//      then batch_norm_apply normalises, scales and shifts.
// Backward: batch_norm_backward_sums gives sums = [sum(dy)[C], sum(dy * x_hat)[C]] (double, device) and
// writes dbeta / dgamma from this process's sums; after the hook has reduced `sums`, batch_norm_backward_dx
// reads them and the (reduced) count stats[0] on the device, so nothing is read back to the host.
// The per-element formulas are engine/math/batch_norm.h, the same ones the CPU backend uses.
// Launchers that need scratch memory (reductions) take it from cuda::DeviceBuffer, which is ordered on
// cuda::compute_stream(): pass that stream (every caller in the engine does).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "engine/dtype.h"

namespace byol::kernels {

// The rows' passes take the activations' storage type S: float, or bf16 (float math, float32 statistics and
// parameters, one rounding per stored value, as the CPU backend).
template <class S>
void batch_norm_partial_sums(const S* x, int64_t M, int64_t C, double* stats, cudaStream_t stream);
// running_mean / running_var may be null (no update).
template <class T>
void batch_norm_stats(const double* stats, int64_t C, double eps, double decay, T* mean, T* invstd,
                      T* running_mean, T* running_var, cudaStream_t stream);
template <class T>
void batch_norm_eval_stats(const T* running_mean, const T* running_var, int64_t C, double eps, T* mean,
                           T* invstd, cudaStream_t stream);
template <class S>
void batch_norm_apply(const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                      const compute_t<S>* gamma, const compute_t<S>* beta, S* y, int64_t M, int64_t C,
                      cudaStream_t stream);
// The fused epilogue: y = relu(normalised x + residual) in one pass (residual [M, C] or null).
template <class S>
void batch_norm_apply_relu(const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                           const compute_t<S>* gamma, const compute_t<S>* beta, const S* residual, S* y,
                           int64_t M, int64_t C, cudaStream_t stream);
template <class S>
void batch_norm_backward_sums(const S* dy, const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                              int64_t M, int64_t C, double* sums, compute_t<S>* dbeta, compute_t<S>* dgamma,
                              cudaStream_t stream);
// count points at the (reduced) number of values per channel: stats[0] of the forward pass.
template <class S>
void batch_norm_backward_dx(const S* dy, const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                            const compute_t<S>* gamma, const double* sums, const double* count, S* dx,
                            int64_t M, int64_t C, cudaStream_t stream);
// The passes over rows run in packs of 16 bytes of channels (engine/cuda/pack.cuh: 4 floats, 8 bf16 per
// thread) where C divides and the rows are aligned, else a channel per thread. With `on`, always a channel
// per thread, so batch_norm_lab validates and times both.
void force_unpacked_batch_norm(bool on);
// The channels per thread those passes take for C channels of rows at x: 4 (float) or 8 (bf16) in packs,
// else 1.
template <class S>
int batch_norm_channels_per_thread(int64_t C, const S* x);

template <class S>
void batch_norm_backward_dx_eval(const S* dy, const compute_t<S>* gamma, const compute_t<S>* invstd, S* dx,
                                 int64_t M, int64_t C, cudaStream_t stream);

}  // namespace byol::kernels
