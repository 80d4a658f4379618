// Batch norm on the CPU over an [M, C] view. The per-element formulas come from engine/math/batch_norm.h,
// so the CUDA kernels (engine/cuda/batch_norm.cu) compute the same thing.
//
// Reductions run over the M rows with one partial-sum array per thread (double), combined at the end;
// the elementwise passes are parallel over rows and vectorise over C.
#include <omp.h>

#include <cmath>
#include <vector>

#include "engine/cpu/cpu_backend.h"
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

template <class T>
void batch_norm_partial_sums(const T* x, int64_t M, int64_t C, double* stats) {
  stats[0] = static_cast<double>(M);
  reduce_rows(M, 2 * C, stats + 1, [&](int64_t begin, int64_t end, double* acc) {
    double* sum = acc;
    double* sum_sq = acc + C;
    int64_t m = begin;
    for (; m + kRowBlock <= end; m += kRowBlock) {
      const T* rows = x + m * C;
      for (int64_t c = 0; c < C; ++c) {
        double s = 0, q = 0;
        for (int64_t r = 0; r < kRowBlock; ++r) {
          const double v = rows[r * C + c];
          s += v;
          q += v * v;
        }
        sum[c] += s;
        sum_sq[c] += q;
      }
    }
    for (; m < end; ++m) {
      const T* row = x + m * C;
      for (int64_t c = 0; c < C; ++c) {
        const double v = row[c];
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

template <class T>
void batch_norm_apply(const T* x, const T* mean, const T* invstd, const T* gamma, const T* beta, T* y,
                      int64_t M, int64_t C) {
#pragma omp parallel for schedule(static) if (M * C > 32768)
  for (int64_t m = 0; m < M; ++m) {
    const T* row = x + m * C;
    T* out = y + m * C;
    for (int64_t c = 0; c < C; ++c)
      out[c] = math::bn_normalize(row[c], mean[c], invstd[c], gamma[c], beta[c]);
  }
}

template <class T>
void batch_norm_apply_relu(const T* x, const T* mean, const T* invstd, const T* gamma, const T* beta,
                           const T* residual, T* y, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static) if (M * C > 32768)
  for (int64_t m = 0; m < M; ++m) {
    const T* row = x + m * C;
    const T* res = residual ? residual + m * C : nullptr;
    T* out = y + m * C;
    if (res) {
      for (int64_t c = 0; c < C; ++c)
        out[c] = math::bn_normalize_add_relu(row[c], mean[c], invstd[c], gamma[c], beta[c], res[c]);
    } else {
      for (int64_t c = 0; c < C; ++c)
        out[c] = math::bn_normalize_add_relu(row[c], mean[c], invstd[c], gamma[c], beta[c], T(0));
    }
  }
}

template <class T>
void batch_norm_backward_sums(const T* dy, const T* x, const T* mean, const T* invstd, int64_t M, int64_t C,
                              double* sums, T* dbeta, T* dgamma) {
  reduce_rows(M, 2 * C, sums, [&](int64_t begin, int64_t end, double* acc) {
    double* s1 = acc;
    double* s2 = acc + C;
    int64_t m = begin;
    for (; m + kRowBlock <= end; m += kRowBlock) {
      const T* g = dy + m * C;
      const T* rows = x + m * C;
      for (int64_t c = 0; c < C; ++c) {
        double a = 0, b = 0;
        for (int64_t r = 0; r < kRowBlock; ++r) {
          const double x_hat = (static_cast<double>(rows[r * C + c]) - mean[c]) * invstd[c];
          a += g[r * C + c];
          b += g[r * C + c] * x_hat;
        }
        s1[c] += a;
        s2[c] += b;
      }
    }
    for (; m < end; ++m) {
      const T* g = dy + m * C;
      const T* row = x + m * C;
      for (int64_t c = 0; c < C; ++c) {
        const double x_hat = (static_cast<double>(row[c]) - mean[c]) * invstd[c];
        s1[c] += g[c];
        s2[c] += g[c] * x_hat;
      }
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    dbeta[c] = static_cast<T>(sums[c]);
    dgamma[c] = static_cast<T>(sums[C + c]);
  }
}

template <class T>
void batch_norm_backward_dx(const T* dy, const T* x, const T* mean, const T* invstd, const T* gamma,
                            const double* sums, const double* count, T* dx, int64_t M, int64_t C) {
  std::vector<T> s1(C), s2(C);
  for (int64_t c = 0; c < C; ++c) {
    s1[c] = static_cast<T>(sums[c]);
    s2[c] = static_cast<T>(sums[C + c]);
  }
  const T n = static_cast<T>(*count);
#pragma omp parallel for schedule(static) if (M * C > 32768)
  for (int64_t m = 0; m < M; ++m) {
    const T* g = dy + m * C;
    const T* row = x + m * C;
    T* out = dx + m * C;
    for (int64_t c = 0; c < C; ++c) {
      const T x_hat = (row[c] - mean[c]) * invstd[c];
      out[c] = math::bn_backward_dx(g[c], x_hat, n, s1[c], s2[c], gamma[c], invstd[c]);
    }
  }
}

template <class T>
void batch_norm_backward_dx_eval(const T* dy, const T* gamma, const T* invstd, T* dx, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static) if (M * C > 32768)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < C; ++c) dx[m * C + c] = dy[m * C + c] * gamma[c] * invstd[c];
}

#define BYOL_INSTANTIATE_BATCH_NORM(T)                                                                       \
  template void batch_norm_partial_sums<T>(const T*, int64_t, int64_t, double*);                             \
  template void batch_norm_apply<T>(const T*, const T*, const T*, const T*, const T*, T*, int64_t, int64_t); \
  template void batch_norm_apply_relu<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*,     \
                                         int64_t, int64_t);                                                  \
  template void batch_norm_stats<T>(const double*, int64_t, double, double, T*, T*, T*, T*);                 \
  template void batch_norm_eval_stats<T>(const T*, const T*, int64_t, double, T*, T*);                       \
  template void batch_norm_backward_sums<T>(const T*, const T*, const T*, const T*, int64_t, int64_t,        \
                                            double*, T*, T*);                                                \
  template void batch_norm_backward_dx<T>(const T*, const T*, const T*, const T*, const T*, const double*,   \
                                          const double*, T*, int64_t, int64_t);                              \
  template void batch_norm_backward_dx_eval<T>(const T*, const T*, const T*, T*, int64_t, int64_t);
BYOL_INSTANTIATE_BATCH_NORM(float)
BYOL_INSTANTIATE_BATCH_NORM(double)

}  // namespace byol::cpu
