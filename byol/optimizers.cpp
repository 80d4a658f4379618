#include "byol/optimizers.h"

#include <cmath>

#include "kernels/math/optimizer_math.h"
#if BYOL_WITH_CUDA
#include "engine/cuda/context.h"
#include "kernels/lars.cuh"
#endif

namespace byol {

namespace {
void check_registry(const models::ParamRegistry& reg, const char* who) {
  BYOL_CHECK(reg.finalized(), who, ": the parameter registry is not finalized");
}
}  // namespace

Lars::Lars(const models::ParamRegistry& reg, LarsOptions opt)
    : reg_(reg), opt_(opt), trust_(reg.param_entries().size(), 1.0) {
  check_registry(reg, "Lars");
  BYOL_CHECK(opt.weight_decay >= 0 && opt.eta > 0 && opt.momentum >= 0 && opt.momentum < 1,
             "Lars: expected weight_decay >= 0, eta > 0 and momentum in [0, 1), got ", opt.weight_decay, ", ",
             opt.eta, ", ", opt.momentum);
  momentum_ = Tensor::zeros(reg.params().shape());
}

void Lars::step(double lr) {
#if BYOL_WITH_CUDA
  if (reg_.params().device().is_cuda()) {
    // The momentum buffer follows the parameters to their device (it starts on the CPU).
    if (momentum_.device() != reg_.params().device()) momentum_ = momentum_.to(reg_.params().device());
    kernels::LarsSegments seg;
    for (const models::ParamEntry& e : reg_.param_entries()) {
      seg.begins.push_back(e.offset);
      seg.ends.push_back(e.offset + e.numel());
      seg.flags.push_back(
          static_cast<uint8_t>(((e.tags & models::kNoWeightDecay) ? kernels::kLarsNoWeightDecay : 0) |
                               ((e.tags & models::kNoLarsAdapt) ? kernels::kLarsNoAdapt : 0)));
    }
    // last_trust_ratios() is a host value: filling it is this step's one wait for the GPU.
    kernels::lars_step(reg_.params().data<float>(), reg_.grads().data<float>(), momentum_.data<float>(),
                       reg_.params().numel(), seg, {lr, opt_.weight_decay, opt_.momentum, opt_.eta},
                       trust_.data(), cuda::compute_stream());
    return;
  }
#endif
  float* w_all = reg_.params().data<float>();
  const float* g_all = reg_.grads().data<float>();
  float* m_all = momentum_.data<float>();
  const auto& entries = reg_.param_entries();
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < entries.size(); ++i) {
    const models::ParamEntry& e = entries[i];
    float* w = w_all + e.offset;
    const float* g = g_all + e.offset;
    float* m = m_all + e.offset;
    const int64_t n = e.numel();
    const double wd = (e.tags & models::kNoWeightDecay) ? 0.0 : opt_.weight_decay;
    double trust = 1.0;
    if (!(e.tags & models::kNoLarsAdapt)) {
      double ww = 0, uu = 0;
      for (int64_t j = 0; j < n; ++j) {
        const double u = static_cast<double>(g[j]) + wd * w[j];
        ww += static_cast<double>(w[j]) * w[j];
        uu += u * u;
      }
      trust = math::lars_trust_ratio(std::sqrt(ww), std::sqrt(uu), opt_.eta);
    }
    trust_[i] = trust;
    const float fwd = static_cast<float>(wd), ftrust = static_cast<float>(trust),
                flr = static_cast<float>(lr), fmom = static_cast<float>(opt_.momentum);
    for (int64_t j = 0; j < n; ++j) math::lars_update(w[j], m[j], g[j], fwd, ftrust, flr, fmom);
  }
}

Sgd::Sgd(const models::ParamRegistry& reg, SgdOptions opt) : reg_(reg), opt_(opt) {
  check_registry(reg, "Sgd");
  momentum_ = Tensor::zeros(reg.params().shape());
}

void Sgd::step(double lr) {
  float* w = reg_.params().data<float>();
  const float* g = reg_.grads().data<float>();
  float* m = momentum_.data<float>();
  const float wd = static_cast<float>(opt_.weight_decay), flr = static_cast<float>(lr),
              mom = static_cast<float>(opt_.momentum);
  for (const models::ParamEntry& e : reg_.param_entries())
    for (int64_t j = e.offset; j < e.offset + e.numel(); ++j)
      math::sgd_update(w[j], m[j], g[j], wd, flr, mom, opt_.nesterov);
}

AdamW::AdamW(const models::ParamRegistry& reg, AdamWOptions opt) : reg_(reg), opt_(opt) {
  check_registry(reg, "AdamW");
  m_ = Tensor::zeros(reg.params().shape());
  v_ = Tensor::zeros(reg.params().shape());
}

void AdamW::step(double lr) {
  ++t_;
  float* w = reg_.params().data<float>();
  const float* g = reg_.grads().data<float>();
  float* m = m_.data<float>();
  float* v = v_.data<float>();
  const float bias1 = static_cast<float>(1.0 - std::pow(opt_.beta1, static_cast<double>(t_)));
  const float bias2 = static_cast<float>(1.0 - std::pow(opt_.beta2, static_cast<double>(t_)));
  for (const models::ParamEntry& e : reg_.param_entries())
    for (int64_t j = e.offset; j < e.offset + e.numel(); ++j)
      math::adamw_update(w[j], m[j], v[j], g[j], static_cast<float>(lr), static_cast<float>(opt_.beta1),
                         static_cast<float>(opt_.beta2), static_cast<float>(opt_.eps),
                         static_cast<float>(opt_.weight_decay), bias1, bias2);
}

}  // namespace byol
