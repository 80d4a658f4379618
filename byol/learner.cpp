#include "byol/learner.h"

#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/cuda_graph.h"
#include "engine/device_memory.h"
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

void ema_update_target(const Tensor& target_params, const Tensor& online_params, const ops::StepScalar& tau) {
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
      objective_(train.objective),
      schedule_(Tensor::zeros({kScheduleSlots}, DType::f32)) {
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

Learner::~Learner() = default;

void Learner::to(Device device) {
  ++moves_;
  schedule_ = schedule_.to(device);
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
  const bool bf16_act = bf16 && (train_.bf16_activations || models::bf16_activations_by_default(device()));
  Tensor p1, p2, t1, t2, y1, projections;
  if (views_in_one_pass()) {
    // [view1; view2] along the batch, batch norm in two groups: statistics per view exactly as two passes
    // (running statistics updated view 1, then view 2), one all-reduce per BN layer for both views.
    // [byol:bn-groups]
    const models::ForwardContext ctx{true, bn_all_reduce, /*bn_groups=*/2, bf16, bf16_act};
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
    projections = z.detach();  // [2N, D]: view 1's rows first
  } else {
    const models::ForwardContext ctx{true, bn_all_reduce, 1, bf16, bf16_act};
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
    projections = z1.detach();
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
  f.projections = projections;
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

  StepMetrics m;
  m.step = step_;
  m.lr = lr_at(step_);
  m.tau = tau_at(step_);
  // This step's learning rate and tau go where LARS and the EMA read them when they run (ops::StepScalar):
  // the same floats as passing the numbers, and what lets a captured graph replay step after step.
  schedule_.window(kScheduleLr, {}).fill_(m.lr);
  schedule_.window(kScheduleTau, {}).fill_(m.tau);
  const Core core = train_.cuda_graph ? graph_step(view1, view2) : core_step(view1, view2, true);
  m.values = core.values;
  last_projections_ = core.projections;

  // [byol:probe]
  if (with_probe) {
    probe_params.grads().zero_();
    Tensor logits = probe->forward(core.y1);
    Tensor probe_loss = ops::softmax_cross_entropy(logits, labels);
    probe_loss.backward();
    if (grad_sync) grad_sync->average(probe_params.grads());
    probe_optimizer->step(train_.probe_lr);
    m.value(StepMetrics::kProbeLoss).copy_(probe_loss.detach());
    m.value(StepMetrics::kProbeCorrect).copy_(ops::count_top1_correct(logits.detach(), labels));
    m.probe_rows = logits.size(0);
    if (phase_clock) phase_clock->mark("probe");
  }
  ++step_;
  return m;
}

// The step without the probe. It reads nothing back from the device and frees everything it allocates
// except the tensors it returns, so a CUDA graph can hold all of it (graph_step).
Learner::Core Learner::core_step(const Tensor& view1, const Tensor& view2, bool mark_phases) {
  const int64_t k = train_.accumulation_steps, n = view1.size(0);
  nets.online.grads().zero_();
  const auto mark = [this, mark_phases](const char* phase) {
    if (phase_clock && mark_phases) phase_clock->mark(phase);
  };
  // Backward with the ranks' gradient all-reduces started during it (`sync`). A backward that throws leaves
  // none of them in flight: an all-reduce still running in place on the gradient buffer would write into the
  // next step's gradients (and inside a CUDA graph capture they were only captured, so nothing may wait).
  const auto backward = [this](const Tensor& loss, bool sync) {
    if (!grad_sync || !sync) return loss.backward();
    grad_sync->begin();
    try {
      loss.backward();
      grad_sync->finish();
    } catch (...) {
      grad_sync->abandon();
      throw;
    }
  };
  Tensor loss, regression, y1, projections;
  if (k == 1) {
    const Forward f = forward(view1, view2);
    mark("forward");
    // [byol:backward]
    backward(f.loss, true);
    mark("backward");
    loss = f.loss.detach(), regression = f.regression.detach(), y1 = f.y1.detach();
    projections = f.projections;
  } else {
    // [byol:accumulate] k micro-batches of n / k rows, each its own forward (its own batch-norm
    // statistics, its own InfoNCE negatives) and backward of loss / k into the same gradient buffer; the
    // all-reduce overlaps the last backward, whose contributions complete every parameter's gradient.
    const int64_t m = n / k;
    std::vector<Tensor> y1s;
    for (int64_t i = 0; i < k; ++i) {
      const Forward f = forward(ops::slice(view1, i * m, (i + 1) * m), ops::slice(view2, i * m, (i + 1) * m));
      mark("forward");
      backward(ops::scale(f.loss, 1.0 / static_cast<double>(k)), /*sync=*/i == k - 1);
      mark("backward");
      loss = i == 0 ? f.loss.detach() : ops::add(loss, f.loss.detach());
      regression = i == 0 ? f.regression.detach() : ops::add(regression, f.regression.detach());
      y1s.push_back(f.y1.detach());
      projections = f.projections;  // the last micro-batch's
    }
    loss = ops::scale(loss, 1.0 / static_cast<double>(k));
    regression = ops::scale(regression, 1.0 / static_cast<double>(k));
    y1 = ops::concat(y1s);
  }

  Core c;
  // The loss, probe loss and correct count are gathered on the device: nothing here reads them back.
  c.values = Tensor::zeros({StepMetrics::kSlots}, DType::f32, device());
  c.values.window(StepMetrics::kLoss, {}).copy_(loss);
  c.values.window(StepMetrics::kRegressionLoss, {}).copy_(regression);
  // [byol:update]
  lars.step(ops::StepScalar(schedule_.window(kScheduleLr, {})));
  if (train_.target_network)
    ema_update_target(nets.target.params(), nets.online.params(),
                      ops::StepScalar(schedule_.window(kScheduleTau, {})));
  mark("optimizer");
  c.projections = projections;
  c.y1 = y1;
  return c;
}

// [byol:cuda-graph]
struct Learner::GraphState {
  CudaGraph graph;
  int64_t eager_steps = 0;   // steps run eagerly since the last (re)start at this shape
  int64_t captures = 0;      // graphs captured in this learner's life
  std::vector<int64_t> key;  // the shape and buffers of the warm-up and the graph (graph_key)
  Shape projections_shape, y1_shape;
  Tensor view1, view2;             // the graph's inputs: each step's views are copied in
  Tensor values, projections, y1;  // its outputs, overwritten by each replay
  std::string failure;             // why a capture failed: the steps after it run eagerly
};

// The batch shape and every buffer address a captured step reads or writes: a graph holds addresses, so a
// change in any of them (a new batch shape, Learner::to, a resized buffer) needs a new capture.
std::vector<int64_t> Learner::graph_key(const Tensor& view) const {
  std::vector<int64_t> key(view.shape().begin(), view.shape().end());
  key.push_back(static_cast<int64_t>(view.dtype()));
  key.push_back(moves_);       // Learner::to: every buffer may be new (the keyed ones could come back)
  key.push_back(cuda_tf32());  // the math the captured cuDNN and cuBLAS calls were set up with
  for (const Tensor* t : {&nets.online.params(), &nets.online.grads(), &nets.online.stats(),
                          &nets.target.params(), &nets.target.stats(), &lars.momentum(), &schedule_})
    key.push_back(static_cast<int64_t>(reinterpret_cast<uintptr_t>(t->defined() ? t->raw_data() : nullptr)));
  return key;
}

// TrainConfig::cuda_graph. At a new shape the first kGraphWarmupSteps steps run eagerly: cuDNN chooses its
// algorithms, lazily built tables are made, workspaces reach their size (none of that can happen inside a
// capture). The next step captures core_step on static input and output buffers, and from then on a step
// copies its views in, replays the graph, and takes a copy of its metrics out.
Learner::Core Learner::graph_step(const Tensor& view1, const Tensor& view2) {
  BYOL_CHECK(device().is_cuda(), "BYOL step: train.cuda_graph needs the learner on a GPU; it is on ",
             device_name(device()), " (Learner::to moves it)");
  if (!graph_) graph_ = std::make_unique<GraphState>();
  GraphState& g = *graph_;
  if (!g.failure.empty()) return core_step(view1, view2, true);  // the capture failed: eager from then on
  const std::vector<int64_t> key = graph_key(view1);
  if (key != g.key) {  // a new shape or new buffers (or the first step): warm up, then capture again
    g.graph.reset();
    g.eager_steps = 0;
    g.key = key;
    g.view1 = Tensor::empty(view1.shape(), view1.dtype(), device());
    g.view2 = Tensor::empty(view2.shape(), view2.dtype(), device());
  }
  // The warm-up steps run on the graph's own input buffers too: cuDNN's plans depend on the pointers'
  // alignment, and the capture must meet only what the warm-up has set up.
  g.view1.copy_(view1);
  g.view2.copy_(view2);
  if (!g.graph.captured()) {
    if (g.eager_steps < kGraphWarmupSteps) {
      ++g.eager_steps;
      Core c = core_step(g.view1, g.view2, true);
      g.projections_shape = c.projections.shape();
      g.y1_shape = c.y1.shape();
      return c;
    }
    const Device dev = device();
    g.values = Tensor::empty({StepMetrics::kSlots}, DType::f32, dev);
    g.projections = Tensor::empty(g.projections_shape, DType::f32, dev);
    g.y1 = Tensor::empty(g.y1_shape, DType::f32, dev);
    // With several ranks the graph holds NCCL's collectives (the gradient buckets, the synced batch norm,
    // the InfoNCE candidates), which the ranks capture alike: the same step, the same order.
    std::string failed;
    try {
      g.graph.capture(dev, [this, &g] {
        const Core c = core_step(g.view1, g.view2, /*mark_phases=*/false);
        g.values.copy_(c.values);
        g.projections.copy_(c.projections);
        g.y1.copy_(c.y1);
      });
    } catch (const std::exception& e) {
      failed = e.what();
    }
    // NCCL requires a collective to be captured on every rank or on none: a rank replaying its graph while
    // another runs the same step eagerly would not match the other's collectives. So the ranks agree.
    if (grad_sync && !grad_sync->on_every_rank(failed.empty()) && failed.empty())
      failed = "the capture failed on another rank (that rank's stderr says why)";
    if (!failed.empty()) {
      // A failed capture leaves the device and the learner as they were (CudaGraph ends it, clears the
      // error and releases what it made): this step and every later one run eagerly, which is slower, not
      // wrong. Said once, with the cause.
      g.failure = failed;
      std::fprintf(stderr,
                   "byol.cpp: train.cuda_graph: capturing the step failed, so the run goes on with eager "
                   "steps (train.cuda_graph = false avoids the attempt):\n  %s\n",
                   g.failure.c_str());
      g.graph.reset();
      return core_step(g.view1, g.view2, true);
    }
    ++g.captures;
  }
  g.graph.replay();
  if (phase_clock) phase_clock->mark("step (graph)");
  return {g.values.clone(), g.projections, g.y1};
}

int64_t Learner::graph_captures() const {
  return graph_ ? graph_->captures : 0;
}

std::string Learner::graph_failure() const {
  return graph_ ? graph_->failure : std::string();
}

Tensor Learner::embed(const Tensor& images) const {
  NoGradGuard no_grad;
  return nets.online_encoder->forward(images, models::ForwardContext{false, {}});
}

}  // namespace byol
