// Batch norm, L2 normalisation and the BYOL loss on the CPU. The per-element formulas come from
// kernels/math/ so the CUDA kernels compute the same thing.
//
// Batch-norm reductions run over the M rows of an [M, C] view with one partial-sum array per thread
// (double), combined at the end; the elementwise passes are parallel over rows and vectorise over C.
#include <omp.h>

#include <cmath>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "kernels/math/batch_norm_math.h"
#include "kernels/math/byol_loss_math.h"

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

template <class T>
void batch_norm_partial_sums(const T* x, int64_t M, int64_t C, double* stats) {
  stats[0] = static_cast<double>(M);
  reduce_rows(M, 2 * C, stats + 1, [&](int64_t begin, int64_t end, double* acc) {
    double* sum = acc;
    double* sum_sq = acc + C;
    for (int64_t m = begin; m < end; ++m) {
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
void batch_norm_backward_sums(const T* dy, const T* x, const T* mean, const T* invstd, int64_t M, int64_t C,
                              double* sums, T* dbeta, T* dgamma) {
  reduce_rows(M, 2 * C, sums, [&](int64_t begin, int64_t end, double* acc) {
    double* s1 = acc;
    double* s2 = acc + C;
    for (int64_t m = begin; m < end; ++m) {
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

template <class T>
void l2_normalize_forward(const T* x, T* y, T* inv_norm, int64_t N, int64_t D) {
#pragma omp parallel for schedule(static) if (N * D > 32768)
  for (int64_t i = 0; i < N; ++i) {
    const T* row = x + i * D;
    double ss = 0;
    for (int64_t k = 0; k < D; ++k) ss += static_cast<double>(row[k]) * row[k];
    const T r = static_cast<T>(math::l2_inv_norm(ss));
    inv_norm[i] = r;
    for (int64_t k = 0; k < D; ++k) y[i * D + k] = row[k] * r;
  }
}

template <class T>
void l2_normalize_backward(const T* dy, const T* x, const T* y, const T* inv_norm, T* dx, int64_t N,
                           int64_t D) {
#pragma omp parallel for schedule(static) if (N * D > 32768)
  for (int64_t i = 0; i < N; ++i) {
    const T* row = x + i * D;
    double ss = 0, ydy = 0;
    for (int64_t k = 0; k < D; ++k) {
      ss += static_cast<double>(row[k]) * row[k];
      ydy += static_cast<double>(y[i * D + k]) * dy[i * D + k];
    }
    const bool clamped = math::l2_clamped(ss);
    for (int64_t k = 0; k < D; ++k)
      dx[i * D + k] =
          math::l2_normalize_backward(dy[i * D + k], y[i * D + k], inv_norm[i], static_cast<T>(ydy), clamped);
  }
}

namespace {

struct RowDots {
  double pp = 0, zz = 0, pz = 0;
};

template <class T>
RowDots row_dots(const T* p, const T* z, int64_t D) {
  RowDots d;
  for (int64_t k = 0; k < D; ++k) {
    d.pp += static_cast<double>(p[k]) * p[k];
    d.zz += static_cast<double>(z[k]) * z[k];
    d.pz += static_cast<double>(p[k]) * z[k];
  }
  return d;
}

}  // namespace

// [byol:loss] The BYOL loss of one batch: mean over rows of (2 - 2 cos(p1, z2)) + (2 - 2 cos(p2, z1)).
template <class T>
void byol_loss_forward(const T* p1, const T* z2, const T* p2, const T* z1, int64_t N, int64_t D, T* loss) {
  double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (N * D > 32768)
  for (int64_t i = 0; i < N; ++i) {
    for (int term = 0; term < 2; ++term) {
      const T* p = (term == 0 ? p1 : p2) + i * D;
      const T* z = (term == 0 ? z2 : z1) + i * D;
      const RowDots d = row_dots(p, z, D);
      total += 2.0 - 2.0 * d.pz * math::l2_inv_norm(d.pp) * math::l2_inv_norm(d.zz);
    }
  }
  *loss = static_cast<T>(total / static_cast<double>(N));
}

template <class T>
void byol_loss_backward(const T* p1, const T* z2, const T* p2, const T* z1, const T* g, T* dp1, T* dz2,
                        T* dp2, T* dz1, int64_t N, int64_t D) {
  const double row_g = static_cast<double>(*g) / static_cast<double>(N);
#pragma omp parallel for schedule(static) if (N * D > 32768)
  for (int64_t i = 0; i < N; ++i) {
    for (int term = 0; term < 2; ++term) {
      const T* p = (term == 0 ? p1 : p2) + i * D;
      const T* z = (term == 0 ? z2 : z1) + i * D;
      T* dp = term == 0 ? dp1 : dp2;
      T* dz = term == 0 ? dz2 : dz1;
      const RowDots d = row_dots(p, z, D);
      const math::CosineGrad c = math::cosine_loss_grad(d.pp, d.zz, d.pz, row_g);
      if (dp)
        for (int64_t k = 0; k < D; ++k) dp[i * D + k] = static_cast<T>(c.a_p * z[k] + c.b_p * p[k]);
      if (dz)
        for (int64_t k = 0; k < D; ++k) dz[i * D + k] = static_cast<T>(c.a_z * p[k] + c.b_z * z[k]);
    }
  }
}

#define BYOL_INSTANTIATE_NORM(T)                                                                             \
  template void batch_norm_partial_sums<T>(const T*, int64_t, int64_t, double*);                             \
  template void batch_norm_apply<T>(const T*, const T*, const T*, const T*, const T*, T*, int64_t, int64_t); \
  template void batch_norm_stats<T>(const double*, int64_t, double, double, T*, T*, T*, T*);                 \
  template void batch_norm_eval_stats<T>(const T*, const T*, int64_t, double, T*, T*);                       \
  template void batch_norm_backward_sums<T>(const T*, const T*, const T*, const T*, int64_t, int64_t,        \
                                            double*, T*, T*);                                                \
  template void batch_norm_backward_dx<T>(const T*, const T*, const T*, const T*, const T*, const double*,   \
                                          const double*, T*, int64_t, int64_t);                              \
  template void batch_norm_backward_dx_eval<T>(const T*, const T*, const T*, T*, int64_t, int64_t);          \
  template void l2_normalize_forward<T>(const T*, T*, T*, int64_t, int64_t);                                 \
  template void l2_normalize_backward<T>(const T*, const T*, const T*, const T*, T*, int64_t, int64_t);      \
  template void byol_loss_forward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t, T*);          \
  template void byol_loss_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, T*,      \
                                      int64_t, int64_t);
BYOL_INSTANTIATE_NORM(float)
BYOL_INSTANTIATE_NORM(double)

}  // namespace byol::cpu
