#include "models/module.h"

#include <cmath>

namespace byol::models {

void ParamRegistry::check_open(const std::string& name) const {
  BYOL_CHECK(!finalized_, "ParamRegistry: cannot add '", name, "' after finalize()");
  for (const ParamEntry& e : param_entries_)
    BYOL_CHECK(e.name != name, "ParamRegistry: duplicate name '", name, "'");
  for (const StatEntry& e : stat_entries_)
    BYOL_CHECK(e.name != name, "ParamRegistry: duplicate name '", name, "'");
}

void ParamRegistry::add_param(std::string name, Shape shape, uint32_t tags, Init init, int64_t fan,
                              Tensor* slot) {
  check_open(name);
  param_entries_.push_back({std::move(name), std::move(shape), tags, init, fan, 0, slot});
}

void ParamRegistry::add_stat(std::string name, Shape shape, double init, Tensor* slot) {
  check_open(name);
  stat_entries_.push_back({std::move(name), std::move(shape), init, 0, slot});
}

namespace {
int64_t align_up(int64_t n, int64_t a) {
  return (n + a - 1) / a * a;
}
}  // namespace

void ParamRegistry::finalize(bool requires_grad) {
  BYOL_CHECK(!finalized_, "ParamRegistry: finalize() called twice");
  int64_t total = 0;
  for (ParamEntry& e : param_entries_) {
    e.offset = total;
    total = align_up(total + e.numel(), kAlign);
  }
  int64_t stats_total = 0;
  for (StatEntry& e : stat_entries_) {
    e.offset = stats_total;
    stats_total = align_up(stats_total + shape_numel(e.shape), kAlign);
  }
  params_ = Tensor::zeros({total});
  grads_ = Tensor::zeros({total});
  stats_ = Tensor::zeros({stats_total});
  for (ParamEntry& e : param_entries_) {
    *e.slot = params_.window(e.offset, e.shape).set_name(e.name);
    if (requires_grad) {
      e.slot->set_requires_grad(true);
      e.slot->set_grad(grads_.window(e.offset, e.shape));
    }
  }
  for (StatEntry& e : stat_entries_) *e.slot = stats_.window(e.offset, e.shape).set_name(e.name);
  finalized_ = true;
}

void ParamRegistry::initialize(std::mt19937_64& gen) {
  BYOL_CHECK(finalized_, "ParamRegistry: initialize() before finalize()");
  for (ParamEntry& e : param_entries_) {
    switch (e.init) {
      case Init::kaiming_normal_fan_out:
        e.slot->copy_(
            Tensor::randn(e.shape, gen, DType::f32, 0.0, std::sqrt(2.0 / static_cast<double>(e.fan))));
        break;
      case Init::uniform_fan_in: {
        const double bound = 1.0 / std::sqrt(static_cast<double>(e.fan));
        e.slot->copy_(Tensor::uniform(e.shape, gen, -bound, bound));
        break;
      }
      case Init::ones:
        e.slot->fill_(1.0);
        break;
      case Init::zeros:
        e.slot->fill_(0.0);
        break;
    }
  }
  for (StatEntry& e : stat_entries_) e.slot->fill_(e.init);
}

void ParamRegistry::to(Device device) {
  BYOL_CHECK(finalized_, "ParamRegistry::to(", device_name(device),
             "): the registry is not finalized (call finalize() first; nothing is allocated before)");
  if (params_.device() == device) return;
  // Each flat buffer's handle and every view of it share one TensorImpl each: pointing them at the
  // moved storage moves them all (the views' offsets into the buffer are unchanged).
  auto move = [device](const Tensor& flat) {
    std::shared_ptr<Storage> moved = flat.to(device).storage();
    flat.impl()->storage = moved;
    return moved;
  };
  const auto params = move(params_), grads = move(grads_), stats = move(stats_);
  for (const ParamEntry& e : param_entries_) {
    e.slot->impl()->storage = params;
    if (e.slot->grad().defined()) e.slot->grad().impl()->storage = grads;
  }
  for (const StatEntry& e : stat_entries_) e.slot->impl()->storage = stats;
}

Device ParamRegistry::device() const {
  BYOL_CHECK(finalized_, "ParamRegistry::device() before finalize()");
  return params_.device();
}

int64_t ParamRegistry::param_count() const {
  int64_t n = 0;
  for (const ParamEntry& e : param_entries_) n += e.numel();
  return n;
}

Tensor ParamRegistry::find(const std::string& name) const {
  BYOL_CHECK(finalized_, "ParamRegistry::find('", name, "') before finalize()");
  for (const ParamEntry& e : param_entries_)
    if (e.name == name) return *e.slot;
  for (const StatEntry& e : stat_entries_)
    if (e.name == name) return *e.slot;
  std::string known;
  for (size_t i = 0; i < param_entries_.size() && i < 4; ++i)
    known += (i ? ", " : "") + param_entries_[i].name;
  BYOL_FAIL("no parameter or statistic named '", name, "' (the registry has ", param_entries_.size(),
            " parameters, e.g. ", known, ")");
}

Conv2d::Conv2d(ParamRegistry& reg, const std::string& name, int64_t in, int64_t out, int kernel, int stride,
               int padding)
    : stride_(stride), padding_(padding) {
  reg.add_param(name + ".weight", {out, kernel, kernel, in}, 0, Init::kaiming_normal_fan_out,
                out * kernel * kernel, &weight);
}

BatchNorm::BatchNorm(ParamRegistry& reg, const std::string& name, int64_t channels, bool zero_init_scale) {
  reg.add_param(name + ".weight", {channels}, kExcludedFromLars, zero_init_scale ? Init::zeros : Init::ones,
                1, &weight);
  reg.add_param(name + ".bias", {channels}, kExcludedFromLars, Init::zeros, 1, &bias);
  reg.add_stat(name + ".running_mean", {channels}, 0.0, &running_mean);
  reg.add_stat(name + ".running_var", {channels}, 1.0, &running_var);
}

namespace {
ops::BatchNormOptions batch_norm_options(const ForwardContext& ctx) {
  ops::BatchNormOptions opt;
  opt.training = ctx.training;
  opt.decay = BatchNorm::kDecay;
  opt.eps = BatchNorm::kEps;
  opt.all_reduce = ctx.bn_all_reduce;
  opt.groups = ctx.bn_groups;
  return opt;
}
}  // namespace

Tensor BatchNorm::forward(const Tensor& x, const ForwardContext& ctx) const {
  return ops::batch_norm(x, weight, bias, running_mean, running_var, batch_norm_options(ctx));
}

Tensor BatchNorm::forward_relu(const Tensor& x, const ForwardContext& ctx, const Tensor& residual) const {
  return ops::batch_norm_relu(x, weight, bias, running_mean, running_var, batch_norm_options(ctx), residual);
}

Linear::Linear(ParamRegistry& reg, const std::string& name, int64_t in, int64_t out, bool bias) {
  reg.add_param(name + ".weight", {out, in}, 0, Init::uniform_fan_in, in, &weight);
  if (bias) reg.add_param(name + ".bias", {out}, kExcludedFromLars, Init::uniform_fan_in, in, &this->bias);
}

}  // namespace byol::models
