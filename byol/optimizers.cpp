#include "byol/optimizers.h"

#include "engine/optim_ops.h"

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

// The registry's tensors and their LARS exclusions (models::kNoWeightDecay, kNoLarsAdapt tags).
ops::LarsLayout lars_layout(const models::ParamRegistry& reg) {
  check_registry(reg, "Lars");
  std::vector<ops::LarsLayout::Segment> segments;
  for (const models::ParamEntry& e : reg.param_entries())
    segments.push_back({e.offset, e.offset + e.numel(), (e.tags & models::kNoWeightDecay) != 0,
                        (e.tags & models::kNoLarsAdapt) != 0});
  return ops::LarsLayout(std::move(segments), reg.params().numel());
}
}  // namespace

Lars::Lars(const models::ParamRegistry& reg, LarsOptions opt)
    : reg_(reg), opt_(opt), layout_(lars_layout(reg)) {
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

void Lars::step(const ops::StepScalar& lr) {
  check_state_device(reg_, momentum_, "Lars", "momentum");
  ops::lars_step_(reg_.params(), reg_.grads(), momentum_, layout_,
                  {lr, opt_.weight_decay, opt_.momentum, opt_.eta}, trust_);
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
  ops::sgd_step_(reg_.params(), momentum_, reg_.grads(), lr, opt_.momentum, opt_.weight_decay, opt_.nesterov);
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
  ops::adamw_step_(reg_.params(), m_, v_, reg_.grads(),
                   {lr, opt_.beta1, opt_.beta2, opt_.eps, opt_.weight_decay, t_});
}

}  // namespace byol
