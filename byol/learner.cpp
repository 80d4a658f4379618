#include "byol/learner.h"

#include "engine/optim_ops.h"

namespace byol {

// [byol:networks]
ByolNetworks::ByolNetworks(const NetworkConfig& cfg) : cfg_(cfg) {
  BYOL_CHECK(cfg.projector_hidden > 0 && cfg.projection_dim > 0 && cfg.predictor_hidden > 0,
             "BYOL networks: projector/predictor sizes must be positive");
  // Registration order fixes the layout: the target's buffer equals the online buffer's prefix.
  online_encoder = std::make_unique<models::ResNet>(online, "encoder.", cfg.encoder);
  online_projector =
      std::make_unique<models::MlpHead>(online, "projector", online_encoder->out_features(),
                                        cfg.projector_hidden, cfg.projection_dim, cfg.projector_depth);
  predictor = std::make_unique<models::MlpHead>(online, "predictor", cfg.projection_dim, cfg.predictor_hidden,
                                                cfg.projection_dim, cfg.predictor_depth);
  target_encoder = std::make_unique<models::ResNet>(target, "encoder.", cfg.encoder);
  target_projector =
      std::make_unique<models::MlpHead>(target, "projector", target_encoder->out_features(),
                                        cfg.projector_hidden, cfg.projection_dim, cfg.projector_depth);
  online.finalize(/*requires_grad=*/true);
  target.finalize(/*requires_grad=*/false);
  const auto& on = online.param_entries();
  const auto& tg = target.param_entries();
  for (size_t i = 0; i < tg.size(); ++i)
    BYOL_CHECK(on[i].name == tg[i].name && on[i].offset == tg[i].offset,
               "BYOL networks: target layout diverges from the online layout at '", tg[i].name, "'");
}

// [byol:target-init]
void ByolNetworks::initialize(std::mt19937_64& gen, bool copy_online_to_target) {
  online.initialize(gen);
  target.initialize(gen);
  if (copy_online_to_target) target.params().copy_(online.params().slice_rows(0, target_extent()));
}

void ema_update_target(const Tensor& target_params, const Tensor& online_params, double tau) {
  BYOL_CHECK(target_params.numel() <= online_params.numel(), "EMA: the target (", target_params.describe(),
             ") is larger than the online buffer (", online_params.describe(), ")");
  BYOL_CHECK(target_params.device() == online_params.device(), "EMA: the target (", target_params.describe(),
             ") and online (", online_params.describe(), ") buffers are on different devices");
  ops::ema_(target_params, online_params, tau);
}

Learner::Learner(const NetworkConfig& net, const TrainConfig& train)
    : nets(net),
      lars(nets.online, {train.weight_decay, train.lars_momentum, train.lars_eta}),
      train_(train),
      objective_(train.objective) {
  BYOL_CHECK(train.batch_size > 0 && train.total_steps > 0 && train.warmup_steps >= 0 &&
                 train.warmup_steps <= train.total_steps,
             "BYOL training: expected batch_size > 0, total_steps > 0 and 0 <= warmup_steps <= total_steps");
  BYOL_CHECK(train.accumulation_steps >= 1, "BYOL training: accumulation_steps must be >= 1, got ",
             train.accumulation_steps);
  BYOL_CHECK(train.stop_gradient || !train.target_network,
             "BYOL training: stop_gradient = false needs target_network = false (the target network's "
             "projections have no gradient to stop)");
  std::mt19937_64 gen(train.seed);
  nets.initialize(gen, train.copy_target_init);
  if (train.probe_classes > 0) {
    probe = std::make_unique<models::Linear>(probe_params, "probe", nets.embedding_dim(), train.probe_classes,
                                             true);
    probe_params.finalize(true);
    probe_params.initialize(gen);
    probe_optimizer = std::make_unique<AdamW>(probe_params, AdamWOptions{});
  }
}

StepValues StepMetrics::read() const {
  BYOL_CHECK(values.defined() && values.numel() == kSlots,
             "StepMetrics::read(): no step values (expected f32 [", int64_t(kSlots), "])");
  const std::vector<float> v = values.to_vector<float>();
  StepValues out;
  out.loss = v[kLoss];
  out.probe_loss = v[kProbeLoss];
  out.probe_accuracy = probe_rows > 0 ? v[kProbeCorrect] / static_cast<double>(probe_rows) : 0.0;
  out.regression_loss = v[kRegressionLoss];
  return out;
}

void Learner::to(Device device) {
  nets.online.to(device);
  nets.target.to(device);
  lars.to(device);
  if (probe) {
    probe_params.to(device);
    probe_optimizer->to(device);
  }
}

bool Learner::views_in_one_pass() const {
  switch (train_.view_passes) {
    case TrainConfig::ViewPasses::one:
      return true;
    case TrainConfig::ViewPasses::two:
      return false;
    case TrainConfig::ViewPasses::automatic:
      break;
  }
  return device().is_cuda() || static_cast<bool>(bn_all_reduce);
}

double Learner::lr_at(int64_t step) const {
  return byol::lr_at(step, train_.total_steps, train_.warmup_steps,
                     scaled_learning_rate(train_.base_lr, train_.batch_size));
}

double Learner::tau_at(int64_t step) const {
  if (train_.constant_tau) return train_.tau_base;
  return byol::tau_at(step, train_.total_steps, train_.tau_base);
}

Learner::Forward Learner::forward(const Tensor& view1, const Tensor& view2) {
  const int64_t n = view1.size(0);
  const bool bf16 = train_.precision == TrainConfig::Precision::bf16;
  Tensor p1, p2, t1, t2, y1;
  if (views_in_one_pass()) {
    // [view1; view2] along the batch, batch norm in two groups: statistics per view exactly as two passes
    // (running statistics updated view 1, then view 2), one all-reduce per BN layer for both views.
    // [byol:bn-groups]
    const models::ForwardContext ctx{true, bn_all_reduce, /*bn_groups=*/2, bf16};
    const Tensor views = ops::concat({view1, view2});
    // [byol:online]
    const Tensor y = nets.online_encoder->forward(views, ctx);
    const Tensor z = nets.online_projector->forward(y, ctx);
    const Tensor p = train_.predictor ? nets.predictor->forward(z, ctx) : z;
    // [byol:stop-gradient]
    Tensor t;
    if (train_.target_network) {
      NoGradGuard no_grad;
      t = nets.target_projector->forward(nets.target_encoder->forward(views, ctx), ctx);
    } else {
      t = train_.stop_gradient ? z.detach() : z;  // ablation: the online projections themselves
    }
    p1 = ops::slice(p, 0, n), p2 = ops::slice(p, n, 2 * n);
    t1 = ops::slice(t, 0, n), t2 = ops::slice(t, n, 2 * n);
    y1 = ops::slice(y, 0, n);
    last_projections_ = z.detach();  // [2N, D]: view 1's rows first
  } else {
    const models::ForwardContext ctx{true, bn_all_reduce, 1, bf16};
    y1 = nets.online_encoder->forward(view1, ctx);
    const Tensor z1 = nets.online_projector->forward(y1, ctx);
    p1 = train_.predictor ? nets.predictor->forward(z1, ctx) : z1;
    const Tensor z2 = nets.online_projector->forward(nets.online_encoder->forward(view2, ctx), ctx);
    p2 = train_.predictor ? nets.predictor->forward(z2, ctx) : z2;
    if (train_.target_network) {
      NoGradGuard no_grad;
      t1 = nets.target_projector->forward(nets.target_encoder->forward(view1, ctx), ctx);
      t2 = nets.target_projector->forward(nets.target_encoder->forward(view2, ctx), ctx);
    } else {
      t1 = train_.stop_gradient ? z1.detach() : z1;
      t2 = train_.stop_gradient ? z2.detach() : z2;
    }
    last_projections_ = z1.detach();
  }
  // [byol:loss-symmetric]
  Forward f;
  f.loss = objective_.loss(p1, t2, p2, t1, candidates);
  f.regression = f.loss;
  if (train_.objective.beta != 0) {
    NoGradGuard no_grad;
    f.regression = ops::byol_loss(p1.detach(), t2.detach(), p2.detach(), t1.detach());
  }
  f.y1 = y1;
  return f;
}

StepMetrics Learner::step(const Tensor& view1, const Tensor& view2, const Tensor& labels) {
  BYOL_CHECK(view1.defined() && view2.defined() && view1.shape() == view2.shape(),
             "BYOL step: the two views must have the same shape, got ", view1.describe(), " and ",
             view2.describe());
  const Device device = this->device();
  BYOL_CHECK(view1.device() == device && view2.device() == device, "BYOL step: the views (", view1.describe(),
             ", ", view2.describe(), ") must be on the learner's device ", device_name(device),
             " (Learner::to moves the learner)");
  const bool with_probe = probe && labels.defined();
  BYOL_CHECK(!with_probe || labels.device() == device, "BYOL step: the labels (", labels.describe(),
             ") must be on the learner's device ", device_name(device));
  const int64_t k = train_.accumulation_steps, n = view1.size(0);
  BYOL_CHECK(n % k == 0, "BYOL step: a batch of ", n, " rows cannot be cut into ", k,
             " equal micro-batches (train.accumulation_steps)");
  nets.online.grads().zero_();
  const auto mark = [this](const char* phase) {
    if (phase_clock) phase_clock->mark(phase);
  };
  Tensor loss, regression, y1;
  if (k == 1) {
    const Forward f = forward(view1, view2);
    mark("forward");
    // [byol:backward]
    if (grad_sync) grad_sync->begin();
    f.loss.backward();
    if (grad_sync) grad_sync->finish();
    mark("backward");
    loss = f.loss.detach(), regression = f.regression.detach(), y1 = f.y1.detach();
  } else {
    // [byol:accumulate] k micro-batches of n / k rows, each its own forward (its own batch-norm
    // statistics, its own InfoNCE negatives) and backward of loss / k into the same gradient buffer; the
    // all-reduce overlaps the last backward, whose contributions complete every parameter's gradient.
    const int64_t m = n / k;
    std::vector<Tensor> y1s;
    for (int64_t i = 0; i < k; ++i) {
      const Forward f = forward(ops::slice(view1, i * m, (i + 1) * m), ops::slice(view2, i * m, (i + 1) * m));
      mark("forward");
      const bool last = i == k - 1;
      if (grad_sync && last) grad_sync->begin();
      ops::scale(f.loss, 1.0 / static_cast<double>(k)).backward();
      if (grad_sync && last) grad_sync->finish();
      mark("backward");
      loss = i == 0 ? f.loss.detach() : ops::add(loss, f.loss.detach());
      regression = i == 0 ? f.regression.detach() : ops::add(regression, f.regression.detach());
      y1s.push_back(f.y1.detach());
    }
    loss = ops::scale(loss, 1.0 / static_cast<double>(k));
    regression = ops::scale(regression, 1.0 / static_cast<double>(k));
    y1 = ops::concat(y1s);
  }

  StepMetrics m;
  m.step = step_;
  m.lr = lr_at(step_);
  m.tau = tau_at(step_);
  // The loss, probe loss and correct count are gathered on the device: nothing here reads them back.
  m.values = Tensor::zeros({StepMetrics::kSlots}, DType::f32, device);
  m.value(StepMetrics::kLoss).copy_(loss);
  m.value(StepMetrics::kRegressionLoss).copy_(regression);
  // [byol:update]
  lars.step(m.lr);
  if (train_.target_network) ema_update_target(nets.target.params(), nets.online.params(), m.tau);
  mark("optimizer");

  // [byol:probe]
  if (with_probe) {
    probe_params.grads().zero_();
    Tensor logits = probe->forward(y1);
    Tensor probe_loss = ops::softmax_cross_entropy(logits, labels);
    probe_loss.backward();
    if (grad_sync) grad_sync->average(probe_params.grads());
    probe_optimizer->step(train_.probe_lr);
    m.value(StepMetrics::kProbeLoss).copy_(probe_loss.detach());
    m.value(StepMetrics::kProbeCorrect).copy_(ops::count_top1_correct(logits.detach(), labels));
    m.probe_rows = logits.size(0);
    mark("probe");
  }
  ++step_;
  return m;
}

Tensor Learner::embed(const Tensor& images) const {
  NoGradGuard no_grad;
  return nets.online_encoder->forward(images, models::ForwardContext{false, {}});
}

}  // namespace byol
