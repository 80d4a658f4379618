// Batch-norm kernels (see batch_norm.cuh for the phases and the partial-sum contract).
//
// Every pass over the rows gives a thread V consecutive channels: a 16-byte pack (4 floats, 8 bf16;
// engine/cuda/pack.cuh) where C divides and the rows are aligned, else V = 1 (force_unpacked_batch_norm).
// Reductions: a block of 32 x 8 threads covers a tile of 32 V channels and a chunk of rows (launch.h's
// bn_grid); lanes take consecutive packs, so each warp reads 32 V contiguous channels of a row. A second
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
#include <type_traits>

#include "engine/cuda/batch_norm.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/pack.cuh"
#include "engine/dtype.h"
#include "engine/math/batch_norm.h"

namespace byol::kernels {
namespace {

// Rows [r0, r1) of a chunk that thread row ty of the block reads: r0 + ty, r0 + ty + kBnTileRows, ...
__device__ __forceinline__ int64_t rows_of_thread(int64_t r0, int64_t r1, int ty) {
  return r1 - r0 > ty ? (r1 - r0 - ty + kBnTileRows - 1) / kBnTileRows : 0;
}

// The reductions' block: lane tx takes the V channels c, ..., c + V - 1 of its tile (V = 1: one channel);
// [r0, r1) are the rows of this block's chunk.
struct ChunkBlock {
  int tx, ty;
  int64_t c, r0, r1;
};
template <int V>
__device__ __forceinline__ ChunkBlock chunk_block(int64_t M, int64_t rows_per_chunk) {
  ChunkBlock b;
  b.tx = threadIdx.x;
  b.ty = threadIdx.y;
  b.c = (static_cast<int64_t>(blockIdx.x) * kBnTileC + b.tx) * V;
  b.r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  b.r1 = b.r0 + rows_per_chunk < M ? b.r0 + rows_per_chunk : M;
  return b;
}

// partial[chunk][0][c] = sum of dy, partial[chunk][1][c] = sum of dy * x_hat of channel c over the chunk's
// rows (fp32 per thread, the block's 8 row lanes added in order); S the rows' storage type.
template <int V, class S, class F = compute_t<S>>
__global__ void backward_partials_kernel(const S* __restrict__ dy, const S* __restrict__ x,
                                         const F* __restrict__ mean, const F* __restrict__ invstd, int64_t M,
                                         int64_t C, int64_t rows_per_chunk, float* __restrict__ partial) {
  __shared__ float sa[kBnTileRows][V * kBnTileC], sb[kBnTileRows][V * kBnTileC];  // [row lane][j * 32 + tx]
  const ChunkBlock k = chunk_block<V>(M, rows_per_chunk);
  float a[V], b[V];
#pragma unroll
  for (int j = 0; j < V; ++j) a[j] = b[j] = 0.0f;
  if (k.c < C) {
    F mu[V], is[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      mu[j] = mean[k.c + j];
      is[j] = invstd[k.c + j];
    }
    for (int64_t r = k.r0 + k.ty; r < k.r1; r += kBnTileRows) {
      const Pack<S, V> g = load_pack<V>(dy + r * C + k.c), xv = load_pack<V>(x + r * C + k.c);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const float gj = static_cast<float>(to_compute(g.v[j]));
        const float x_hat = static_cast<float>((to_compute(xv.v[j]) - mu[j]) * is[j]);
        a[j] += gj;
        b[j] += gj * x_hat;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < V; ++j) {
    sa[k.ty][j * kBnTileC + k.tx] = a[j];
    sb[k.ty][j * kBnTileC + k.tx] = b[j];
  }
  __syncthreads();
  // Row lane ty's warp adds up channel slot j = ty, ty + 8, ...: the 8 lanes in order.
  if (k.c < C) {
    float* out = partial + static_cast<int64_t>(blockIdx.y) * 2 * C;
    for (int j = k.ty; j < V; j += kBnTileRows) {
      float ta = sa[0][j * kBnTileC + k.tx], tb = sb[0][j * kBnTileC + k.tx];
#pragma unroll
      for (int row = 1; row < kBnTileRows; ++row) {
        ta += sa[row][j * kBnTileC + k.tx];
        tb += sb[row][j * kBnTileC + k.tx];
      }
      out[k.c + j] = ta;
      out[C + k.c + j] = tb;
    }
  }
}

// partial[chunk][0][c] = mean, partial[chunk][1][c] = M2 of channel c over the chunk's rows (double).
template <int V, class T>
__global__ void moments_partials_kernel(const T* __restrict__ x, int64_t M, int64_t C, int64_t rows_per_chunk,
                                        double* __restrict__ partial) {
  __shared__ double s_mean[kBnTileRows][V * kBnTileC],
      s_m2[kBnTileRows][V * kBnTileC];  // [lane][j * 32 + tx]
  const ChunkBlock k = chunk_block<V>(M, rows_per_chunk);
  math::Moments<double> m[V];
#pragma unroll
  for (int j = 0; j < V; ++j) m[j] = math::Moments<double>{0, 0, 0};
  if (k.c < C && k.r0 + k.ty < k.r1) {
    const Pack<T, V> first = load_pack<V>(x + (k.r0 + k.ty) * C + k.c);
    float shift[V], sum[V], sum_sq[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      shift[j] = static_cast<float>(to_compute(first.v[j]));
      sum[j] = sum_sq[j] = 0.0f;
    }
    for (int64_t r = k.r0 + k.ty; r < k.r1; r += kBnTileRows) {
      const Pack<T, V> v = load_pack<V>(x + r * C + k.c);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const float d = static_cast<float>(to_compute(v.v[j])) - shift[j];
        sum[j] += d;
        sum_sq[j] += d * d;
      }
    }
    const double n = static_cast<double>(rows_of_thread(k.r0, k.r1, k.ty));
#pragma unroll
    for (int j = 0; j < V; ++j)
      m[j] = math::moments_from_shifted_sums<double>(n, shift[j], sum[j], sum_sq[j]);
  }
#pragma unroll
  for (int j = 0; j < V; ++j) {
    s_mean[k.ty][j * kBnTileC + k.tx] = m[j].mean;
    s_m2[k.ty][j * kBnTileC + k.tx] = m[j].m2;
  }
  __syncthreads();
  // Row lane ty's warp merges channel slot j = ty, ty + 8, ...: the 8 lanes' moments in order.
  if (k.c < C) {
    double* out = partial + static_cast<int64_t>(blockIdx.y) * 2 * C;
    for (int j = k.ty; j < V; j += kBnTileRows) {
      math::Moments<double> total{static_cast<double>(rows_of_thread(k.r0, k.r1, 0)),
                                  s_mean[0][j * kBnTileC + k.tx], s_m2[0][j * kBnTileC + k.tx]};
#pragma unroll
      for (int row = 1; row < kBnTileRows; ++row) {
        const math::Moments<double> other{static_cast<double>(rows_of_thread(k.r0, k.r1, row)),
                                          s_mean[row][j * kBnTileC + k.tx], s_m2[row][j * kBnTileC + k.tx]};
        total = math::moments_merge(total, other);
      }
      out[k.c + j] = total.mean;
      out[C + k.c + j] = total.m2;
    }
  }
}

// The combines reduce the chunks' partials column by column on blocks of 32 channels x 32 chunk lanes: lane
// ty takes chunks ty, ty + 32, ... in order, then each channel's thread of lane 0 merges the 32 lanes in
// order (a fixed order: the same results run to run). One thread per channel walking every chunk left a
// few blocks latency-bound when the packed passes cut a batch norm into about 1,000 chunks (a review,
// 2026-12-05).
constexpr int kCombineLanes = 32;

// out[c] = sum, out[C + c] = sum of squares of channel c (math::moments_to_sums of the merged moments),
// *count_out = M.
__global__ void __launch_bounds__(kBnTileC* kCombineLanes)
    combine_moments_kernel(const double* __restrict__ partial, int64_t chunks, int64_t rows_per_chunk,
                           int64_t M, int64_t C, double* __restrict__ out, double* __restrict__ count_out) {
  __shared__ double s_count[kCombineLanes][kBnTileC], s_mean[kCombineLanes][kBnTileC],
      s_m2[kCombineLanes][kBnTileC];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBnTileC + tx;
  math::Moments<double> m{0, 0, 0};
  if (c < C) {
    for (int64_t k = ty; k < chunks; k += kCombineLanes) {
      const int64_t rows = M - k * rows_per_chunk < rows_per_chunk ? M - k * rows_per_chunk : rows_per_chunk;
      m = math::moments_merge(m, math::Moments<double>{static_cast<double>(rows), partial[k * 2 * C + c],
                                                       partial[k * 2 * C + C + c]});
    }
  }
  s_count[ty][tx] = m.count;
  s_mean[ty][tx] = m.mean;
  s_m2[ty][tx] = m.m2;
  __syncthreads();
  if (ty == 0 && c < C) {
    for (int lane = 1; lane < kCombineLanes; ++lane)
      m = math::moments_merge(m, math::Moments<double>{s_count[lane][tx], s_mean[lane][tx], s_m2[lane][tx]});
    math::moments_to_sums(m, out[c], out[C + c]);
    if (c == 0) *count_out = static_cast<double>(M);
  }
}

// out[c] = sum over chunks of term 0, out[C + c] = of term 1 (double, fixed order). With count_out,
// also writes the number of rows; with dbeta/dgamma, also the per-channel parameter gradients.
template <class T>
__global__ void __launch_bounds__(kBnTileC* kCombineLanes)
    combine_partials_kernel(const float* __restrict__ partial, int64_t chunks, int64_t C,
                            double* __restrict__ out, double* __restrict__ count_out, double count,
                            T* __restrict__ dbeta, T* __restrict__ dgamma) {
  __shared__ double s_a[kCombineLanes][kBnTileC], s_b[kCombineLanes][kBnTileC];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBnTileC + tx;
  double a = 0, b = 0;
  if (c < C) {
    for (int64_t k = ty; k < chunks; k += kCombineLanes) {
      a += partial[k * 2 * C + c];
      b += partial[k * 2 * C + C + c];
    }
  }
  s_a[ty][tx] = a;
  s_b[ty][tx] = b;
  __syncthreads();
  if (ty == 0 && c < C) {
    for (int lane = 1; lane < kCombineLanes; ++lane) {
      a += s_a[lane][tx];
      b += s_b[lane][tx];
    }
    out[c] = a;
    out[C + c] = b;
    if (dbeta) dbeta[c] = static_cast<T>(a);
    if (dgamma) dgamma[c] = static_cast<T>(b);
    if (count_out && c == 0) *count_out = count;
  }
}

// The combines' launch: a block per 32 channels.
struct CombineLaunch {
  dim3 grid, block;
};
CombineLaunch combine_launch(int64_t C) {
  return {dim3(static_cast<unsigned>(bn_channel_tiles(C))), dim3(kBnTileC, kCombineLanes)};
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

// The elementwise passes run on bn_rows_grid: thread (tx, ty) of block (bx, by) takes the channels
// c = (bx * 32 + tx) * V, ..., c + V - 1 and the rows by * 8 + ty, stepping by gridDim.y * 8; a warp reads
// 32 V consecutive channels of one row (V = 1: one channel per thread).
__device__ __forceinline__ int64_t bn_first_row() {
  return static_cast<int64_t>(blockIdx.y) * kBnTileRows + threadIdx.y;
}
__device__ __forceinline__ int64_t bn_row_step() {
  return static_cast<int64_t>(gridDim.y) * kBnTileRows;
}
template <int V>
__device__ __forceinline__ int64_t bn_channel() {
  return (static_cast<int64_t>(blockIdx.x) * kBnTileC + threadIdx.x) * V;
}

template <int V, class F>
__device__ __forceinline__ void load_channels(const F* __restrict__ p, int64_t c, F (&out)[V]) {
#pragma unroll
  for (int j = 0; j < V; ++j) out[j] = p[c + j];
}

template <int V, class S, class F = compute_t<S>>
__global__ void apply_kernel(const S* __restrict__ x, const F* __restrict__ mean,
                             const F* __restrict__ invstd, const F* __restrict__ gamma,
                             const F* __restrict__ beta, S* __restrict__ y, int64_t M, int64_t C) {
  const int64_t c = bn_channel<V>();
  if (c >= C) return;
  F mu[V], is[V], g[V], b[V];
  load_channels(mean, c, mu);
  load_channels(invstd, c, is);
  load_channels(gamma, c, g);
  load_channels(beta, c, b);
  for (int64_t r = bn_first_row(); r < M; r += bn_row_step()) {
    const int64_t i = r * C + c;
    const Pack<S, V> xv = load_pack<V>(x + i);
    Pack<S, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j)
      out.v[j] = from_compute<S>(math::bn_normalize(to_compute(xv.v[j]), mu[j], is[j], g[j], b[j]));
    store_pack<V>(y + i, out);
  }
}

template <int V, class S, class F = compute_t<S>>
__global__ void apply_relu_kernel(const S* __restrict__ x, const F* __restrict__ mean,
                                  const F* __restrict__ invstd, const F* __restrict__ gamma,
                                  const F* __restrict__ beta, const S* __restrict__ residual,
                                  S* __restrict__ y, int64_t M, int64_t C) {
  const int64_t c = bn_channel<V>();
  if (c >= C) return;
  F mu[V], is[V], g[V], b[V];
  load_channels(mean, c, mu);
  load_channels(invstd, c, is);
  load_channels(gamma, c, g);
  load_channels(beta, c, b);
  for (int64_t r = bn_first_row(); r < M; r += bn_row_step()) {
    const int64_t i = r * C + c;
    const Pack<S, V> xv = load_pack<V>(x + i);
    Pack<S, V> res;  // zeros without a residual
    if (residual) res = load_pack<V>(residual + i);
    Pack<S, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j)
      out.v[j] = from_compute<S>(math::bn_normalize_add_relu(to_compute(xv.v[j]), mu[j], is[j], g[j], b[j],
                                                             residual ? to_compute(res.v[j]) : F(0)));
    store_pack<V>(y + i, out);
  }
}

template <int V, class S, class F = compute_t<S>>
__global__ void backward_dx_kernel(const S* __restrict__ dy, const S* __restrict__ x,
                                   const F* __restrict__ mean, const F* __restrict__ invstd,
                                   const F* __restrict__ gamma, const double* __restrict__ sums,
                                   const double* __restrict__ count, S* __restrict__ dx, int64_t M,
                                   int64_t C) {
  const int64_t c = bn_channel<V>();
  if (c >= C) return;
  const F n = static_cast<F>(*count);
  F mu[V], is[V], g[V], s1[V], s2[V];
  load_channels(mean, c, mu);
  load_channels(invstd, c, is);
  load_channels(gamma, c, g);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    s1[j] = static_cast<F>(sums[c + j]);
    s2[j] = static_cast<F>(sums[C + c + j]);
  }
  for (int64_t r = bn_first_row(); r < M; r += bn_row_step()) {
    const int64_t i = r * C + c;
    const Pack<S, V> gv = load_pack<V>(dy + i), xv = load_pack<V>(x + i);
    Pack<S, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const F x_hat = (to_compute(xv.v[j]) - mu[j]) * is[j];
      out.v[j] =
          from_compute<S>(math::bn_backward_dx(to_compute(gv.v[j]), x_hat, n, s1[j], s2[j], g[j], is[j]));
    }
    store_pack<V>(dx + i, out);
  }
}

template <int V, class S, class F = compute_t<S>>
__global__ void backward_dx_eval_kernel(const S* __restrict__ dy, const F* __restrict__ gamma,
                                        const F* __restrict__ invstd, S* __restrict__ dx, int64_t M,
                                        int64_t C) {
  const int64_t c = bn_channel<V>();
  if (c >= C) return;
  F g[V], is[V];
  load_channels(gamma, c, g);
  load_channels(invstd, c, is);
  for (int64_t r = bn_first_row(); r < M; r += bn_row_step()) {
    const int64_t i = r * C + c;
    const Pack<S, V> gv = load_pack<V>(dy + i);
    Pack<S, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) out.v[j] = from_compute<S>(to_compute(gv.v[j]) * g[j] * is[j]);
    store_pack<V>(dx + i, out);
  }
}

bool g_force_unpacked = false;  // force_unpacked_batch_norm

// Whether the passes over rows of S take packs of 16 bytes of channels: C divides into packs and every row
// pointer (a null residual aside) is aligned to one.
template <class S, class... P>
bool bn_packs_fit(int64_t C, const P*... rows) {
  constexpr int V = kPack<S>;
  return !g_force_unpacked && C % V == 0 && ((rows == nullptr || pack_aligned<V>(rows)) && ...);
}

// The launch geometry of the elementwise passes for V channels per thread.
struct RowsLaunch {
  dim3 grid, block;
};
RowsLaunch rows_launch(int64_t M, int64_t C, int V) {
  const BnRowsGrid g = bn_rows_grid(M, C, V);
  return {dim3(static_cast<unsigned>(g.channel_tiles), static_cast<unsigned>(g.row_blocks)),
          dim3(kBnTileC, kBnTileRows)};
}

}  // namespace

void force_unpacked_batch_norm(bool on) {
  g_force_unpacked = on;
}

template <class S>
int batch_norm_channels_per_thread(int64_t C, const S* x) {
  return bn_packs_fit<S>(C, x) ? kPack<S> : 1;
}
template int batch_norm_channels_per_thread<float>(int64_t, const float*);
template int batch_norm_channels_per_thread<bf16>(int64_t, const bf16*);

template <class S>
void batch_norm_partial_sums(const S* x, int64_t M, int64_t C, double* stats, cudaStream_t stream) {
  with_pack<S>(bn_packs_fit<S>(C, x), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    const BnGrid g = bn_grid(M, C, V);
    cuda::DeviceBuffer partial(static_cast<size_t>(g.row_chunks * 2 * C) * sizeof(double));
    const dim3 block(kBnTileC, kBnTileRows);
    const dim3 grid(static_cast<unsigned>(g.channel_tiles), static_cast<unsigned>(g.row_chunks));
    moments_partials_kernel<V><<<grid, block, 0, stream>>>(x, M, C, g.rows_per_chunk, partial.as<double>());
    BYOL_CUDA_CHECK_LAUNCH();
    const CombineLaunch cl = combine_launch(C);
    combine_moments_kernel<<<cl.grid, cl.block, 0, stream>>>(partial.as<double>(), g.row_chunks,
                                                             g.rows_per_chunk, M, C, stats + 1, stats);
    BYOL_CUDA_CHECK_LAUNCH();
  });
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
  with_pack<S>(bn_packs_fit<S>(C, x, static_cast<const S*>(y)), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    const RowsLaunch l = rows_launch(M, C, V);
    apply_kernel<V><<<l.grid, l.block, 0, stream>>>(x, mean, invstd, gamma, beta, y, M, C);
  });
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class S>
void batch_norm_apply_relu(const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                           const compute_t<S>* gamma, const compute_t<S>* beta, const S* residual, S* y,
                           int64_t M, int64_t C, cudaStream_t stream) {
  if (M * C == 0) return;
  with_pack<S>(bn_packs_fit<S>(C, x, residual, static_cast<const S*>(y)), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    const RowsLaunch l = rows_launch(M, C, V);
    apply_relu_kernel<V><<<l.grid, l.block, 0, stream>>>(x, mean, invstd, gamma, beta, residual, y, M, C);
  });
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class S>
void batch_norm_backward_sums(const S* dy, const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                              int64_t M, int64_t C, double* sums, compute_t<S>* dbeta, compute_t<S>* dgamma,
                              cudaStream_t stream) {
  with_pack<S>(bn_packs_fit<S>(C, dy, x), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    const BnGrid g = bn_grid(M, C, V);
    cuda::DeviceBuffer partial(static_cast<size_t>(g.row_chunks * 2 * C) * sizeof(float));
    const dim3 block(kBnTileC, kBnTileRows);
    const dim3 grid(static_cast<unsigned>(g.channel_tiles), static_cast<unsigned>(g.row_chunks));
    backward_partials_kernel<V>
        <<<grid, block, 0, stream>>>(dy, x, mean, invstd, M, C, g.rows_per_chunk, partial.as<float>());
    BYOL_CUDA_CHECK_LAUNCH();
    const CombineLaunch cl = combine_launch(C);
    combine_partials_kernel<compute_t<S>><<<cl.grid, cl.block, 0, stream>>>(
        partial.as<float>(), g.row_chunks, C, sums, static_cast<double*>(nullptr), static_cast<double>(M),
        dbeta, dgamma);
    BYOL_CUDA_CHECK_LAUNCH();
  });
}

template <class S>
void batch_norm_backward_dx(const S* dy, const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                            const compute_t<S>* gamma, const double* sums, const double* count, S* dx,
                            int64_t M, int64_t C, cudaStream_t stream) {
  if (M * C == 0) return;
  with_pack<S>(bn_packs_fit<S>(C, dy, x, static_cast<const S*>(dx)), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    const RowsLaunch l = rows_launch(M, C, V);
    backward_dx_kernel<V><<<l.grid, l.block, 0, stream>>>(dy, x, mean, invstd, gamma, sums, count, dx, M, C);
  });
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class S>
void batch_norm_backward_dx_eval(const S* dy, const compute_t<S>* gamma, const compute_t<S>* invstd, S* dx,
                                 int64_t M, int64_t C, cudaStream_t stream) {
  if (M * C == 0) return;
  with_pack<S>(bn_packs_fit<S>(C, dy, static_cast<const S*>(dx)), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    const RowsLaunch l = rows_launch(M, C, V);
    backward_dx_eval_kernel<V><<<l.grid, l.block, 0, stream>>>(dy, gamma, invstd, dx, M, C);
  });
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
