// Row math of the L2 normalisation and of BYOL's regression loss, shared by both backends.
//
// Normalisation (official BYOL code): x / |x| computed as x * rsqrt(max(sum x^2, 1e-12)).
// Per row, with p the online prediction and z the target projection (paper eq. 2):
//   cos = (p . z) * rp * rz,    loss_row = 2 - 2 cos,    rp = rsqrt(max(|p|^2, 1e-12)).
// Gradients (g = dL/dloss_row): with p_hat = p * rp, z_hat = z * rz,
//   dL/dp = -2 g * rp * (z_hat - cos * p_hat)    (the cos * p_hat term vanishes where the clamp is
//   active, since rp is then a constant), and symmetrically for z.
#pragma once

#include <cmath>

#include "engine/math/hd.h"

namespace byol::math {

constexpr double kL2NormEpsSq = 1e-12;

template <class T>
BYOL_HD T l2_inv_norm(T sum_sq) {
  return T(1) / sqrt(sum_sq > T(kL2NormEpsSq) ? sum_sq : T(kL2NormEpsSq));
}

template <class T>
BYOL_HD bool l2_clamped(T sum_sq) {
  return !(sum_sq > T(kL2NormEpsSq));
}

// Gradient of y = x * r(|x|^2) for one element: r * (dy - [not clamped] y * (y . dy)).
template <class T>
BYOL_HD T l2_normalize_backward(T dy, T y, T inv_norm, T y_dot_dy, bool clamped) {
  return inv_norm * (dy - (clamped ? T(0) : y * y_dot_dy));
}

// The loss of one row, 2 - 2 cos(p, z), from its three dot products (pp = p.p, zz = z.z, pz = p.z): the
// value both backends sum (the gradient below uses the same cosine).
BYOL_HD double cosine_loss_row(double pp, double zz, double pz) {
  return 2.0 - 2.0 * pz * l2_inv_norm(pp) * l2_inv_norm(zz);
}

// [byol:loss-grad]
// Coefficients of the loss gradient for one row: dL/dp_k = a_p * z_k + b_p * p_k and
// dL/dz_k = a_z * p_k + b_z * z_k, for the row term 2 - 2 cos(p, z) scaled by g.
struct CosineGrad {
  double a_p, b_p, a_z, b_z;
  double cos;
};

BYOL_HD CosineGrad cosine_loss_grad(double pp, double zz, double pz, double g) {
  double rp = l2_inv_norm(pp), rz = l2_inv_norm(zz);
  double cos = pz * rp * rz;
  CosineGrad c;
  c.cos = cos;
  // d cos / dp = rp * rz * z - [not clamped] cos * rp^2 * p
  c.a_p = -2.0 * g * rp * rz;
  c.b_p = l2_clamped(pp) ? 0.0 : 2.0 * g * cos * rp * rp;
  c.a_z = -2.0 * g * rp * rz;
  c.b_z = l2_clamped(zz) ? 0.0 : 2.0 * g * cos * rz * rz;
  return c;
}

}  // namespace byol::math
