// L2 normalisation and BYOL's regression loss (sec. 3.1, eq. 2) on the CPU, with the row formulas of
// engine/math/byol_loss.h (the CUDA kernels of engine/cuda/byol_loss.cu use the same ones).
#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "engine/math/byol_loss.h"

namespace byol::cpu {

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
      total += math::cosine_loss_row(d.pp, d.zz, d.pz);
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

#define BYOL_INSTANTIATE_BYOL_LOSS(T)                                                                   \
  template void l2_normalize_forward<T>(const T*, T*, T*, int64_t, int64_t);                            \
  template void l2_normalize_backward<T>(const T*, const T*, const T*, const T*, T*, int64_t, int64_t); \
  template void byol_loss_forward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t, T*);     \
  template void byol_loss_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, T*, \
                                      int64_t, int64_t);
BYOL_INSTANTIATE_BYOL_LOSS(float)
BYOL_INSTANTIATE_BYOL_LOSS(double)

}  // namespace byol::cpu
