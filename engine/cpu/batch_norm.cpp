// Batch norm on the CPU over an [M, C] view. The per-element formulas come from engine/math/batch_norm.h,
// so the CUDA kernels (engine/cuda/batch_norm.cu) compute the same thing.
//
// Reductions run over the M rows with one partial-sum array per thread (double), combined at the end;
// the elementwise passes are parallel over rows and vectorise over C.
#include <omp.h>

#include <cmath>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/dtype.h"
#include "engine/math/batch_norm.h"

namespace byol::cpu {
namespace {

// Runs body(row_begin, row_end, partial) on each thread with its own zeroed array of `width` doubles,
// then sums the partials into out.
template <class Body>
void reduce_rows(int64_t M, int64_t width, double* out, Body&& body) {
  const int threads = M >= 64 ? omp_get_max_threads() : 1;
  std::vector<double> partial(static_cast<size_t>(threads * width), 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = M * t / nt, end = M * (t + 1) / nt;
    body(begin, end, partial.data() + t * width);
  }
  for (int64_t j = 0; j < width; ++j) {
    double s = 0;
    for (int t = 0; t < threads; ++t) s += partial[t * width + j];
    out[j] = s;
  }
}

}  // namespace

// The reductions add kRowBlock rows per channel in registers (double) before touching the per-thread
// accumulators: adding each row straight into them was a load-add-store per element, which held the passes
// at a third of copy bandwidth (cpu_ops_bench). Same double sums, in another order.
constexpr int64_t kRowBlock = 8;

template <class S>
void batch_norm_partial_sums(const S* x, int64_t M, int64_t C, double* stats) {
  stats[0] = static_cast<double>(M);
  reduce_rows(M, 2 * C, stats + 1, [&](int64_t begin, int64_t end, double* acc) {
    double* sum = acc;
    double* sum_sq = acc + C;
    int64_t m = begin;
    for (; m + kRowBlock <= end; m += kRowBlock) {
      const S* rows = x + m * C;
      for (int64_t c = 0; c < C; ++c) {
        double s = 0, q = 0;
        for (int64_t r = 0; r < kRowBlock; ++r) {
          const double v = to_compute(rows[r * C + c]);
          s += v;
          q += v * v;
        }
        sum[c] += s;
        sum_sq[c] += q;
      }
    }
    for (; m < end; ++m) {
      const S* row = x + m * C;
      for (int64_t c = 0; c < C; ++c) {
        const double v = to_compute(row[c]);
        sum[c] += v;
        sum_sq[c] += v * v;
      }
    }
  });
}

template <class T>
void batch_norm_stats(const double* stats, int64_t C, double eps, double decay, T* mean, T* invstd,
                      T* running_mean, T* running_var) {
  const T d = static_cast<T>(decay);
  for (int64_t c = 0; c < C; ++c) {
    const math::BnStats st = math::bn_stats_from_sums(stats[0], stats[1 + c], stats[1 + C + c], eps);
    mean[c] = static_cast<T>(st.mean);
    invstd[c] = static_cast<T>(st.invstd);
    if (running_mean) {
      const double var = math::bn_batch_var(stats[0], stats[1 + c], stats[1 + C + c]);
      running_mean[c] = math::bn_running_update(running_mean[c], static_cast<T>(st.mean), d);
      running_var[c] = math::bn_running_update(running_var[c], static_cast<T>(var), d);
    }
  }
}

template <class T>
void batch_norm_eval_stats(const T* running_mean, const T* running_var, int64_t C, double eps, T* mean,
                           T* invstd) {
  for (int64_t c = 0; c < C; ++c) {
    mean[c] = running_mean[c];
    invstd[c] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps));
  }
}

template <class S>
void batch_norm_apply(const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                      const compute_t<S>* gamma, const compute_t<S>* beta, S* y, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static) if (M * C > 32768)
  for (int64_t m = 0; m < M; ++m) {
    const S* row = x + m * C;
    S* out = y + m * C;
    for (int64_t c = 0; c < C; ++c)
      out[c] = from_compute<S>(math::bn_normalize(to_compute(row[c]), mean[c], invstd[c], gamma[c], beta[c]));
  }
}

template <class S>
void batch_norm_apply_relu(const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                           const compute_t<S>* gamma, const compute_t<S>* beta, const S* residual, S* y,
                           int64_t M, int64_t C) {
  using T = compute_t<S>;
#pragma omp parallel for schedule(static) if (M * C > 32768)
  for (int64_t m = 0; m < M; ++m) {
    const S* row = x + m * C;
    const S* res = residual ? residual + m * C : nullptr;
    S* out = y + m * C;
    if (res) {
      for (int64_t c = 0; c < C; ++c)
        out[c] = from_compute<S>(math::bn_normalize_add_relu(to_compute(row[c]), mean[c], invstd[c], gamma[c],
                                                             beta[c], to_compute(res[c])));
    } else {
      for (int64_t c = 0; c < C; ++c)
        out[c] = from_compute<S>(
            math::bn_normalize_add_relu(to_compute(row[c]), mean[c], invstd[c], gamma[c], beta[c], T(0)));
    }
  }
}

template <class S>
void batch_norm_backward_sums(const S* dy, const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                              int64_t M, int64_t C, double* sums, compute_t<S>* dbeta, compute_t<S>* dgamma) {
  using T = compute_t<S>;
  reduce_rows(M, 2 * C, sums, [&](int64_t begin, int64_t end, double* acc) {
    double* s1 = acc;
    double* s2 = acc + C;
    int64_t m = begin;
    for (; m + kRowBlock <= end; m += kRowBlock) {
      const S* g = dy + m * C;
      const S* rows = x + m * C;
      for (int64_t c = 0; c < C; ++c) {
        double a = 0, b = 0;
        for (int64_t r = 0; r < kRowBlock; ++r) {
          const double x_hat = (static_cast<double>(to_compute(rows[r * C + c])) - mean[c]) * invstd[c];
          const double d = to_compute(g[r * C + c]);
          a += d;
          b += d * x_hat;
        }
        s1[c] += a;
        s2[c] += b;
      }
    }
    for (; m < end; ++m) {
      const S* g = dy + m * C;
      const S* row = x + m * C;
      for (int64_t c = 0; c < C; ++c) {
        const double x_hat = (static_cast<double>(to_compute(row[c])) - mean[c]) * invstd[c];
        const double d = to_compute(g[c]);
        s1[c] += d;
        s2[c] += d * x_hat;
      }
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    dbeta[c] = static_cast<T>(sums[c]);
    dgamma[c] = static_cast<T>(sums[C + c]);
  }
}

template <class S>
void batch_norm_backward_dx(const S* dy, const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                            const compute_t<S>* gamma, const double* sums, const double* count, S* dx,
                            int64_t M, int64_t C) {
  using T = compute_t<S>;
  std::vector<T> s1(C), s2(C);
  for (int64_t c = 0; c < C; ++c) {
    s1[c] = static_cast<T>(sums[c]);
    s2[c] = static_cast<T>(sums[C + c]);
  }
  const T n = static_cast<T>(*count);
#pragma omp parallel for schedule(static) if (M * C > 32768)
  for (int64_t m = 0; m < M; ++m) {
    const S* g = dy + m * C;
    const S* row = x + m * C;
    S* out = dx + m * C;
    for (int64_t c = 0; c < C; ++c) {
      const T x_hat = (to_compute(row[c]) - mean[c]) * invstd[c];
      out[c] = from_compute<S>(
          math::bn_backward_dx(to_compute(g[c]), x_hat, n, s1[c], s2[c], gamma[c], invstd[c]));
    }
  }
}

template <class S>
void batch_norm_backward_dx_eval(const S* dy, const compute_t<S>* gamma, const compute_t<S>* invstd, S* dx,
                                 int64_t M, int64_t C) {
#pragma omp parallel for schedule(static) if (M * C > 32768)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < C; ++c)
      dx[m * C + c] = from_compute<S>(to_compute(dy[m * C + c]) * gamma[c] * invstd[c]);
}

// The statistics are float parameters (T); the rows' passes take the storage type S (T, or bf16 with T =
// float).
#define BYOL_INSTANTIATE_BATCH_NORM_STATS(T)                                                 \
  template void batch_norm_stats<T>(const double*, int64_t, double, double, T*, T*, T*, T*); \
  template void batch_norm_eval_stats<T>(const T*, const T*, int64_t, double, T*, T*);
#define BYOL_INSTANTIATE_BATCH_NORM_ROWS(S, T)                                                               \
  template void batch_norm_partial_sums<S>(const S*, int64_t, int64_t, double*);                             \
  template void batch_norm_apply<S>(const S*, const T*, const T*, const T*, const T*, S*, int64_t, int64_t); \
  template void batch_norm_apply_relu<S>(const S*, const T*, const T*, const T*, const T*, const S*, S*,     \
                                         int64_t, int64_t);                                                  \
  template void batch_norm_backward_sums<S>(const S*, const S*, const T*, const T*, int64_t, int64_t,        \
                                            double*, T*, T*);                                                \
  template void batch_norm_backward_dx<S>(const S*, const S*, const T*, const T*, const T*, const double*,   \
                                          const double*, S*, int64_t, int64_t);                              \
  template void batch_norm_backward_dx_eval<S>(const S*, const T*, const T*, S*, int64_t, int64_t);
BYOL_INSTANTIATE_BATCH_NORM_STATS(float)
BYOL_INSTANTIATE_BATCH_NORM_STATS(double)
BYOL_INSTANTIATE_BATCH_NORM_ROWS(float, float)
BYOL_INSTANTIATE_BATCH_NORM_ROWS(double, double)
BYOL_INSTANTIATE_BATCH_NORM_ROWS(bf16, float)

}  // namespace byol::cpu
