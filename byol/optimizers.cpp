#include "byol/optimizers.h"

#include <cmath>
#include <cstring>

#include "kernels/math/optimizer_math.h"
#if BYOL_WITH_CUDA
#include "engine/cuda/context.h"
#include "kernels/lars.cuh"
#include "kernels/optimizers.cuh"
#endif

namespace byol {

namespace {
void check_registry(const models::ParamRegistry& reg, const char* who) {
  BYOL_CHECK(reg.finalized(), who, ": the parameter registry is not finalized");
}

// The optimizer's state must live with the parameters it updates.
void check_state_device(const models::ParamRegistry& reg, const Tensor& state, const char* who,
                        const char* what) {
  BYOL_CHECK(state.device() == reg.params().device(), who, ": its ", what, " is on ",
             device_name(state.device()), " but the parameters are on ", device_name(reg.params().device()),
             "; call ", who, "::to(device) after moving the registry");
}
}  // namespace

Lars::Lars(const models::ParamRegistry& reg, LarsOptions opt) : reg_(reg), opt_(opt) {
  check_registry(reg, "Lars");
  BYOL_CHECK(opt.weight_decay >= 0 && opt.eta > 0 && opt.momentum >= 0 && opt.momentum < 1,
             "Lars: expected weight_decay >= 0, eta > 0 and momentum in [0, 1), got ", opt.weight_decay, ", ",
             opt.eta, ", ", opt.momentum);
  momentum_ = Tensor::zeros(reg.params().shape(), DType::f32, reg.device());
  trust_ = Tensor::full({static_cast<int64_t>(reg.param_entries().size())}, 1.0, DType::f64, reg.device());
}

void Lars::to(Device device) {
  momentum_ = momentum_.to(device);
  trust_ = trust_.to(device);
}

void Lars::step(double lr) {
  check_state_device(reg_, momentum_, "Lars", "momentum");
#if BYOL_WITH_CUDA
  if (reg_.params().device().is_cuda()) {
    const int segments = static_cast<int>(reg_.param_entries().size());
    if (!segment_table_.defined() || segment_table_.device() != reg_.params().device()) {
      // Built once per device (one upload), so a step copies nothing from the host.
      kernels::LarsSegments seg;
      for (const models::ParamEntry& e : reg_.param_entries()) {
        seg.begins.push_back(e.offset);
        seg.ends.push_back(e.offset + e.numel());
        seg.flags.push_back(
            static_cast<uint8_t>(((e.tags & models::kNoWeightDecay) ? kernels::kLarsNoWeightDecay : 0) |
                                 ((e.tags & models::kNoLarsAdapt) ? kernels::kLarsNoAdapt : 0)));
      }
      const kernels::LarsTable table = kernels::lars_pack_segments(seg, reg_.params().numel());
      Tensor host = Tensor::empty({static_cast<int64_t>(table.bytes.size())}, DType::u8);
      std::memcpy(host.data<uint8_t>(), table.bytes.data(), table.bytes.size());
      segment_table_ = host.to(reg_.params().device());
      segment_chunks_ = table.chunks;
    }
    kernels::lars_step(reg_.params().data<float>(), reg_.grads().data<float>(), momentum_.data<float>(),
                       segment_table_.data<uint8_t>(), segments, segment_chunks_,
                       {lr, opt_.weight_decay, opt_.momentum, opt_.eta}, trust_.data<double>(),
                       cuda::compute_stream());
    return;
  }
#endif
  float* w_all = reg_.params().data<float>();
  const float* g_all = reg_.grads().data<float>();
  float* m_all = momentum_.data<float>();
  double* trust_all = trust_.data<double>();
  const auto& entries = reg_.param_entries();
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < entries.size(); ++i) {
    const models::ParamEntry& e = entries[i];
    float* w = w_all + e.offset;
    const float* g = g_all + e.offset;
    float* m = m_all + e.offset;
    const int64_t n = e.numel();
    const double wd = (e.tags & models::kNoWeightDecay) ? 0.0 : opt_.weight_decay;
    // [byol:lars-trust]
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
    trust_all[i] = trust;
    const float fwd = static_cast<float>(wd), ftrust = static_cast<float>(trust),
                flr = static_cast<float>(lr), fmom = static_cast<float>(opt_.momentum);
    for (int64_t j = 0; j < n; ++j) math::lars_update(w[j], m[j], g[j], fwd, ftrust, flr, fmom);
  }
}

Sgd::Sgd(const models::ParamRegistry& reg, SgdOptions opt) : reg_(reg), opt_(opt) {
  check_registry(reg, "Sgd");
  momentum_ = Tensor::zeros(reg.params().shape(), DType::f32, reg.device());
}

void Sgd::to(Device device) {
  momentum_ = momentum_.to(device);
}

void Sgd::step(double lr) {
  check_state_device(reg_, momentum_, "Sgd", "momentum");
  float* w = reg_.params().data<float>();
  const float* g = reg_.grads().data<float>();
  float* m = momentum_.data<float>();
  const float wd = static_cast<float>(opt_.weight_decay), flr = static_cast<float>(lr),
              mom = static_cast<float>(opt_.momentum);
#if BYOL_WITH_CUDA
  if (reg_.params().device().is_cuda()) {
    kernels::sgd_step(w, m, g, reg_.params().numel(), flr, mom, wd, opt_.nesterov, cuda::compute_stream());
    return;
  }
#endif
  // Every element of the flat buffer, as the CUDA kernel does: the gaps between aligned views have zero
  // gradients and stay zero, and both backends update exactly the same elements.
  const int64_t n = reg_.params().numel();
  for (int64_t j = 0; j < n; ++j) math::sgd_update(w[j], m[j], g[j], wd, flr, mom, opt_.nesterov);
}

AdamW::AdamW(const models::ParamRegistry& reg, AdamWOptions opt) : reg_(reg), opt_(opt) {
  check_registry(reg, "AdamW");
  m_ = Tensor::zeros(reg.params().shape(), DType::f32, reg.device());
  v_ = Tensor::zeros(reg.params().shape(), DType::f32, reg.device());
}

void AdamW::to(Device device) {
  m_ = m_.to(device);
  v_ = v_.to(device);
}

void AdamW::step(double lr) {
  check_state_device(reg_, m_, "AdamW", "first moment");
  check_state_device(reg_, v_, "AdamW", "second moment");
  ++t_;
  float* w = reg_.params().data<float>();
  const float* g = reg_.grads().data<float>();
  float* m = m_.data<float>();
  float* v = v_.data<float>();
  // The bias corrections are per step, computed in double on the host for both backends.
  const float bias1 = static_cast<float>(1.0 - std::pow(opt_.beta1, static_cast<double>(t_)));
  const float bias2 = static_cast<float>(1.0 - std::pow(opt_.beta2, static_cast<double>(t_)));
  const float flr = static_cast<float>(lr), beta1 = static_cast<float>(opt_.beta1),
              beta2 = static_cast<float>(opt_.beta2), eps = static_cast<float>(opt_.eps),
              wd = static_cast<float>(opt_.weight_decay);
#if BYOL_WITH_CUDA
  if (reg_.params().device().is_cuda()) {
    kernels::adamw_step(w, m, v, g, reg_.params().numel(), {flr, beta1, beta2, eps, wd, bias1, bias2},
                        cuda::compute_stream());
    return;
  }
#endif
  const int64_t n = reg_.params().numel();  // the whole flat buffer, as in Sgd::step
  for (int64_t j = 0; j < n; ++j)
    math::adamw_update(w[j], m[j], v[j], g[j], flr, beta1, beta2, eps, wd, bias1, bias2);
}

}  // namespace byol
