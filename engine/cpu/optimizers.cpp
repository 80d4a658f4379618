#include "engine/cpu/optimizers.h"

#include <cmath>

#include "engine/math/optimizers.h"

namespace byol::cpu {

// [byol:ema-pass]
void ema(float* target, const float* online, int64_t n, float tau) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) target[i] = math::ema_update(target[i], online[i], tau);
}

void lars_step(float* w_all, const float* g_all, float* m_all, const ops::LarsLayout& layout,
               const ops::LarsHyper& h, double* trust_out) {
  const auto& segments = layout.segments();
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < segments.size(); ++i) {
    const ops::LarsLayout::Segment& s = segments[i];
    float* w = w_all + s.begin;
    const float* g = g_all + s.begin;
    float* m = m_all + s.begin;
    const int64_t n = s.end - s.begin;
    const double wd = s.no_weight_decay ? 0.0 : h.weight_decay;
    // [byol:lars-trust]
    double trust = 1.0;
    if (!s.no_adapt) {
      double ww = 0, uu = 0;
      // simd reduction: lanes of partial sums (fixed by the build's vector width, so runs repeat exactly)
      // instead of one serial chain of double additions
#pragma omp simd reduction(+ : ww, uu)
      for (int64_t j = 0; j < n; ++j) {
        const double u = math::lars_decayed_gradient(g[j], w[j], wd);
        ww += static_cast<double>(w[j]) * w[j];
        uu += u * u;
      }
      trust = math::lars_trust_ratio(std::sqrt(ww), std::sqrt(uu), h.eta);
    }
    trust_out[i] = trust;
    const float fwd = static_cast<float>(wd), ftrust = static_cast<float>(trust),
                flr = static_cast<float>(h.lr.value()), fmom = static_cast<float>(h.momentum);
    for (int64_t j = 0; j < n; ++j) math::lars_update(w[j], m[j], g[j], fwd, ftrust, flr, fmom);
  }
}

// Every element of the flat buffer, as the CUDA kernel does: the gaps between aligned views have zero
// gradients and stay zero, and both backends update exactly the same elements.
void sgd_step(float* w, float* m, const float* g, int64_t n, float lr, float momentum, float weight_decay,
              bool nesterov) {
  for (int64_t j = 0; j < n; ++j) math::sgd_update(w[j], m[j], g[j], weight_decay, lr, momentum, nesterov);
}

void adamw_step(float* w, float* m, float* v, const float* g, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, float bias1, float bias2) {
  for (int64_t j = 0; j < n; ++j)
    math::adamw_update(w[j], m[j], v[j], g[j], lr, beta1, beta2, eps, weight_decay, bias1, bias2);
}

}  // namespace byol::cpu
