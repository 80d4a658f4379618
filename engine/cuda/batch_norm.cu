// Batch-norm kernels (see batch_norm.cuh for the phases and the partial-sum contract).
//
// Reductions: a block of 32 x 8 threads covers a 32-channel tile and a chunk of rows (launch.h's
// bn_grid); lanes take consecutive channels, so each warp reads 128 contiguous bytes of a row. A second
// kernel combines the chunks in double, in a fixed order, so results are deterministic run to run.
//  - Forward statistics: each thread sums x - x0 and (x - x0)^2 in fp32, x0 being the first value it
//    reads (shifted sums: a channel mean of 100 against a spread of 1 cancels nothing); its moments
//    (count, mean, M2) are merged with the block's other rows (math::moments_merge, Chan's formula, in
//    double) into one double partial per channel and chunk, and the chunks likewise.
//  - Backward sums (dy and dy * x_hat, no cancellation to fear): fp32 per thread, the block's rows
//    added in shared memory into one fp32 partial per channel and chunk.
// Elementwise passes (normalise, the fused epilogue, dx): the same 32 x 8 blocks over a grid of channel
// tiles x row blocks (launch.h's bn_rows_grid); each thread keeps its channel's statistics and parameters
// in registers and strides over rows, with no index division per element. Rows are float or bf16 (S); the
// math and the per-channel values are float (F).
#include "engine/cuda/batch_norm.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/dtype.h"
#include "engine/math/batch_norm.h"

namespace byol::kernels {
namespace {

// (dy, dy * x_hat) for the backward sums; S the rows' storage type (float or bf16), F the math's.
template <class S, class F = compute_t<S>>
struct BackwardTerms {
  const S* dy;
  const S* x;
  const F* mean;
  const F* invstd;
  int64_t C;
  __device__ float2 operator()(int64_t r, int64_t c) const {
    const float g = static_cast<float>(to_compute(dy[r * C + c]));
    const float x_hat = static_cast<float>((to_compute(x[r * C + c]) - mean[c]) * invstd[c]);
    return make_float2(g, g * x_hat);
  }
};

// partial[chunk][0][c], partial[chunk][1][c]: this chunk's sums of the two terms of channel c.
template <class Terms>
__global__ void column_partials_kernel(Terms terms, int64_t M, int64_t C, int64_t rows_per_chunk,
                                       float* __restrict__ partial) {
  __shared__ float sa[kBnTileRows][kBnTileC + 1], sb[kBnTileRows][kBnTileC + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBnTileC + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < M ? r0 + rows_per_chunk : M;
  float a = 0.0f, b = 0.0f;
  if (c < C) {
    for (int64_t r = r0 + ty; r < r1; r += kBnTileRows) {
      const float2 v = terms(r, c);
      a += v.x;
      b += v.y;
    }
  }
  sa[ty][tx] = a;
  sb[ty][tx] = b;
  __syncthreads();
  if (ty == 0 && c < C) {
#pragma unroll
    for (int k = 1; k < kBnTileRows; ++k) {
      a += sa[k][tx];
      b += sb[k][tx];
    }
    float* out = partial + static_cast<int64_t>(blockIdx.y) * 2 * C;
    out[c] = a;
    out[C + c] = b;
  }
}

// Rows [r0, r1) of a chunk that thread row ty of the block reads: r0 + ty, r0 + ty + kBnTileRows, ...
__device__ __forceinline__ int64_t rows_of_thread(int64_t r0, int64_t r1, int ty) {
  return r1 - r0 > ty ? (r1 - r0 - ty + kBnTileRows - 1) / kBnTileRows : 0;
}

// partial[chunk][0][c] = mean, partial[chunk][1][c] = M2 of channel c over the chunk's rows (double).
template <class T>
__global__ void moments_partials_kernel(const T* __restrict__ x, int64_t M, int64_t C, int64_t rows_per_chunk,
                                        double* __restrict__ partial) {
  __shared__ double s_mean[kBnTileRows][kBnTileC + 1], s_m2[kBnTileRows][kBnTileC + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBnTileC + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < M ? r0 + rows_per_chunk : M;
  math::Moments<double> m{0, 0, 0};
  if (c < C && r0 + ty < r1) {
    const float shift = static_cast<float>(to_compute(x[(r0 + ty) * C + c]));
    float s = 0.0f, ss = 0.0f;
    for (int64_t r = r0 + ty; r < r1; r += kBnTileRows) {
      const float d = static_cast<float>(to_compute(x[r * C + c])) - shift;
      s += d;
      ss += d * d;
    }
    m = math::moments_from_shifted_sums<double>(static_cast<double>(rows_of_thread(r0, r1, ty)), shift, s,
                                                ss);
  }
  s_mean[ty][tx] = m.mean;
  s_m2[ty][tx] = m.m2;
  __syncthreads();
  if (ty == 0 && c < C) {
#pragma unroll
    for (int k = 1; k < kBnTileRows; ++k) {
      const math::Moments<double> other{static_cast<double>(rows_of_thread(r0, r1, k)), s_mean[k][tx],
                                        s_m2[k][tx]};
      m = math::moments_merge(m, other);
    }
    double* out = partial + static_cast<int64_t>(blockIdx.y) * 2 * C;
    out[c] = m.mean;
    out[C + c] = m.m2;
  }
}

// Merges the chunks' moments in a fixed order: out[c] = sum, out[C + c] = sum of squares of channel c
// (math::moments_to_sums), *count_out = M.
__global__ void combine_moments_kernel(const double* __restrict__ partial, int64_t chunks,
                                       int64_t rows_per_chunk, int64_t M, int64_t C, double* __restrict__ out,
                                       double* __restrict__ count_out) {
  for (int64_t c = global_thread(); c < C; c += grid_threads()) {
    math::Moments<double> m{0, 0, 0};
    for (int64_t k = 0; k < chunks; ++k) {
      const int64_t rows = M - k * rows_per_chunk < rows_per_chunk ? M - k * rows_per_chunk : rows_per_chunk;
      m = math::moments_merge(m, math::Moments<double>{static_cast<double>(rows), partial[k * 2 * C + c],
                                                       partial[k * 2 * C + C + c]});
    }
    math::moments_to_sums(m, out[c], out[C + c]);
    if (c == 0) *count_out = static_cast<double>(M);
  }
}

// out[c] = sum over chunks of term 0, out[C + c] = of term 1 (double, fixed order). With count_out,
// also writes the number of rows; with dbeta/dgamma, also the per-channel parameter gradients.
template <class T>
__global__ void combine_partials_kernel(const float* __restrict__ partial, int64_t chunks, int64_t C,
                                        double* __restrict__ out, double* __restrict__ count_out,
                                        double count, T* __restrict__ dbeta, T* __restrict__ dgamma) {
  for (int64_t c = global_thread(); c < C; c += grid_threads()) {
    double a = 0, b = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      a += partial[k * 2 * C + c];
      b += partial[k * 2 * C + C + c];
    }
    out[c] = a;
    out[C + c] = b;
    if (dbeta) dbeta[c] = static_cast<T>(a);
    if (dgamma) dgamma[c] = static_cast<T>(b);
    if (count_out && c == 0) *count_out = count;
  }
}

template <class Terms, class T>
void column_sums_2(Terms terms, int64_t M, int64_t C, double* out, double* count_out, T* dbeta, T* dgamma,
                   cudaStream_t stream) {
  const BnGrid g = bn_grid(M, C);
  cuda::DeviceBuffer partial(static_cast<size_t>(g.row_chunks * 2 * C) * sizeof(float));
  const dim3 block(kBnTileC, kBnTileRows);
  const dim3 grid(static_cast<unsigned>(g.channel_tiles), static_cast<unsigned>(g.row_chunks));
  column_partials_kernel<<<grid, block, 0, stream>>>(terms, M, C, g.rows_per_chunk, partial.as<float>());
  BYOL_CUDA_CHECK_LAUNCH();
  combine_partials_kernel<T><<<grid_1d(C), kThreads, 0, stream>>>(
      partial.as<float>(), g.row_chunks, C, out, count_out, static_cast<double>(M), dbeta, dgamma);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
__global__ void stats_kernel(const double* __restrict__ stats, int64_t C, double eps, T decay,
                             T* __restrict__ mean, T* __restrict__ invstd, T* __restrict__ running_mean,
                             T* __restrict__ running_var) {
  const double count = stats[0];
  for (int64_t c = global_thread(); c < C; c += grid_threads()) {
    const double sum = stats[1 + c], sum_sq = stats[1 + C + c];
    const math::BnStats st = math::bn_stats_from_sums(count, sum, sum_sq, eps);
    mean[c] = static_cast<T>(st.mean);
    invstd[c] = static_cast<T>(st.invstd);
    if (running_mean) {
      running_mean[c] = math::bn_running_update(running_mean[c], static_cast<T>(st.mean), decay);
      running_var[c] = math::bn_running_update(running_var[c],
                                               static_cast<T>(math::bn_batch_var(count, sum, sum_sq)), decay);
    }
  }
}

template <class T>
__global__ void eval_stats_kernel(const T* __restrict__ rm, const T* __restrict__ rv, int64_t C, double eps,
                                  T* __restrict__ mean, T* __restrict__ invstd) {
  for (int64_t c = global_thread(); c < C; c += grid_threads()) {
    mean[c] = rm[c];
    invstd[c] = static_cast<T>(1.0 / sqrt(static_cast<double>(rv[c]) + eps));
  }
}

// The elementwise passes run on bn_rows_grid: thread (tx, ty) of block (bx, by) takes channel
// c = bx * 32 + tx and the rows by * 8 + ty, stepping by gridDim.y * 8; a warp reads 32 consecutive
// channels of one row.
__device__ __forceinline__ int64_t bn_first_row() {
  return static_cast<int64_t>(blockIdx.y) * kBnTileRows + threadIdx.y;
}
__device__ __forceinline__ int64_t bn_row_step() {
  return static_cast<int64_t>(gridDim.y) * kBnTileRows;
}
__device__ __forceinline__ int64_t bn_channel() {
  return static_cast<int64_t>(blockIdx.x) * kBnTileC + threadIdx.x;
}

template <class S, class F = compute_t<S>>
__global__ void apply_kernel(const S* __restrict__ x, const F* __restrict__ mean,
                             const F* __restrict__ invstd, const F* __restrict__ gamma,
                             const F* __restrict__ beta, S* __restrict__ y, int64_t M, int64_t C) {
  const int64_t c = bn_channel();
  if (c >= C) return;
  const F mu = mean[c], is = invstd[c], g = gamma[c], b = beta[c];
  for (int64_t r = bn_first_row(); r < M; r += bn_row_step()) {
    const int64_t i = r * C + c;
    y[i] = from_compute<S>(math::bn_normalize(to_compute(x[i]), mu, is, g, b));
  }
}

template <class S, class F = compute_t<S>>
__global__ void apply_relu_kernel(const S* __restrict__ x, const F* __restrict__ mean,
                                  const F* __restrict__ invstd, const F* __restrict__ gamma,
                                  const F* __restrict__ beta, const S* __restrict__ residual,
                                  S* __restrict__ y, int64_t M, int64_t C) {
  const int64_t c = bn_channel();
  if (c >= C) return;
  const F mu = mean[c], is = invstd[c], g = gamma[c], b = beta[c];
  for (int64_t r = bn_first_row(); r < M; r += bn_row_step()) {
    const int64_t i = r * C + c;
    y[i] = from_compute<S>(math::bn_normalize_add_relu(to_compute(x[i]), mu, is, g, b,
                                                       residual ? to_compute(residual[i]) : F(0)));
  }
}

template <class S, class F = compute_t<S>>
__global__ void backward_dx_kernel(const S* __restrict__ dy, const S* __restrict__ x,
                                   const F* __restrict__ mean, const F* __restrict__ invstd,
                                   const F* __restrict__ gamma, const double* __restrict__ sums,
                                   const double* __restrict__ count, S* __restrict__ dx, int64_t M,
                                   int64_t C) {
  const int64_t c = bn_channel();
  if (c >= C) return;
  const F n = static_cast<F>(*count), mu = mean[c], is = invstd[c], g = gamma[c];
  const F s1 = static_cast<F>(sums[c]), s2 = static_cast<F>(sums[C + c]);
  for (int64_t r = bn_first_row(); r < M; r += bn_row_step()) {
    const int64_t i = r * C + c;
    const F x_hat = (to_compute(x[i]) - mu) * is;
    dx[i] = from_compute<S>(math::bn_backward_dx(to_compute(dy[i]), x_hat, n, s1, s2, g, is));
  }
}

template <class S, class F = compute_t<S>>
__global__ void backward_dx_eval_kernel(const S* __restrict__ dy, const F* __restrict__ gamma,
                                        const F* __restrict__ invstd, S* __restrict__ dx, int64_t M,
                                        int64_t C) {
  const int64_t c = bn_channel();
  if (c >= C) return;
  const F g = gamma[c], is = invstd[c];
  for (int64_t r = bn_first_row(); r < M; r += bn_row_step()) {
    const int64_t i = r * C + c;
    dx[i] = from_compute<S>(to_compute(dy[i]) * g * is);
  }
}

// The launch geometry of the elementwise passes.
struct RowsLaunch {
  dim3 grid, block;
};
RowsLaunch rows_launch(int64_t M, int64_t C) {
  const BnRowsGrid g = bn_rows_grid(M, C);
  return {dim3(static_cast<unsigned>(g.channel_tiles), static_cast<unsigned>(g.row_blocks)),
          dim3(kBnTileC, kBnTileRows)};
}

}  // namespace

template <class S>
void batch_norm_partial_sums(const S* x, int64_t M, int64_t C, double* stats, cudaStream_t stream) {
  const BnGrid g = bn_grid(M, C);
  cuda::DeviceBuffer partial(static_cast<size_t>(g.row_chunks * 2 * C) * sizeof(double));
  const dim3 block(kBnTileC, kBnTileRows);
  const dim3 grid(static_cast<unsigned>(g.channel_tiles), static_cast<unsigned>(g.row_chunks));
  moments_partials_kernel<<<grid, block, 0, stream>>>(x, M, C, g.rows_per_chunk, partial.as<double>());
  BYOL_CUDA_CHECK_LAUNCH();
  combine_moments_kernel<<<grid_1d(C), kThreads, 0, stream>>>(partial.as<double>(), g.row_chunks,
                                                              g.rows_per_chunk, M, C, stats + 1, stats);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void batch_norm_stats(const double* stats, int64_t C, double eps, double decay, T* mean, T* invstd,
                      T* running_mean, T* running_var, cudaStream_t stream) {
  stats_kernel<<<grid_1d(C), kThreads, 0, stream>>>(stats, C, eps, static_cast<T>(decay), mean, invstd,
                                                    running_mean, running_var);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void batch_norm_eval_stats(const T* running_mean, const T* running_var, int64_t C, double eps, T* mean,
                           T* invstd, cudaStream_t stream) {
  eval_stats_kernel<<<grid_1d(C), kThreads, 0, stream>>>(running_mean, running_var, C, eps, mean, invstd);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class S>
void batch_norm_apply(const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                      const compute_t<S>* gamma, const compute_t<S>* beta, S* y, int64_t M, int64_t C,
                      cudaStream_t stream) {
  if (M * C == 0) return;
  const RowsLaunch l = rows_launch(M, C);
  apply_kernel<<<l.grid, l.block, 0, stream>>>(x, mean, invstd, gamma, beta, y, M, C);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class S>
void batch_norm_apply_relu(const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                           const compute_t<S>* gamma, const compute_t<S>* beta, const S* residual, S* y,
                           int64_t M, int64_t C, cudaStream_t stream) {
  if (M * C == 0) return;
  const RowsLaunch l = rows_launch(M, C);
  apply_relu_kernel<<<l.grid, l.block, 0, stream>>>(x, mean, invstd, gamma, beta, residual, y, M, C);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class S>
void batch_norm_backward_sums(const S* dy, const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                              int64_t M, int64_t C, double* sums, compute_t<S>* dbeta, compute_t<S>* dgamma,
                              cudaStream_t stream) {
  column_sums_2(BackwardTerms<S>{dy, x, mean, invstd, C}, M, C, sums, static_cast<double*>(nullptr), dbeta,
                dgamma, stream);
}

template <class S>
void batch_norm_backward_dx(const S* dy, const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                            const compute_t<S>* gamma, const double* sums, const double* count, S* dx,
                            int64_t M, int64_t C, cudaStream_t stream) {
  if (M * C == 0) return;
  const RowsLaunch l = rows_launch(M, C);
  backward_dx_kernel<<<l.grid, l.block, 0, stream>>>(dy, x, mean, invstd, gamma, sums, count, dx, M, C);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class S>
void batch_norm_backward_dx_eval(const S* dy, const compute_t<S>* gamma, const compute_t<S>* invstd, S* dx,
                                 int64_t M, int64_t C, cudaStream_t stream) {
  if (M * C == 0) return;
  const RowsLaunch l = rows_launch(M, C);
  backward_dx_eval_kernel<<<l.grid, l.block, 0, stream>>>(dy, gamma, invstd, dx, M, C);
  BYOL_CUDA_CHECK_LAUNCH();
}

#define BYOL_INSTANTIATE_BN_ROWS(S, T)                                                                      \
  template void batch_norm_partial_sums<S>(const S*, int64_t, int64_t, double*, cudaStream_t);              \
  template void batch_norm_apply<S>(const S*, const T*, const T*, const T*, const T*, S*, int64_t, int64_t, \
                                    cudaStream_t);                                                          \
  template void batch_norm_apply_relu<S>(const S*, const T*, const T*, const T*, const T*, const S*, S*,    \
                                         int64_t, int64_t, cudaStream_t);                                   \
  template void batch_norm_backward_sums<S>(const S*, const S*, const T*, const T*, int64_t, int64_t,       \
                                            double*, T*, T*, cudaStream_t);                                 \
  template void batch_norm_backward_dx<S>(const S*, const S*, const T*, const T*, const T*, const double*,  \
                                          const double*, S*, int64_t, int64_t, cudaStream_t);               \
  template void batch_norm_backward_dx_eval<S>(const S*, const T*, const T*, S*, int64_t, int64_t,          \
                                               cudaStream_t);
// float32 only (the fp32 partial sums would waste a double input's precision); the rows' passes also take
// bf16 activations (float math and parameters, one rounding per stored value, as on the CPU).
template void batch_norm_stats<float>(const double*, int64_t, double, double, float*, float*, float*, float*,
                                      cudaStream_t);
template void batch_norm_eval_stats<float>(const float*, const float*, int64_t, double, float*, float*,
                                           cudaStream_t);
BYOL_INSTANTIATE_BN_ROWS(float, float)
BYOL_INSTANTIATE_BN_ROWS(bf16, float)

}  // namespace byol::kernels
