// The BYOL learner: networks, one training step, the schedules and the online linear probe.
//
// Networks (paper sec. 3.1): the online network is encoder f + projector g, followed by the
// predictor q; the target network is f' + g' with the same layout. Both live in flat buffers whose
// first target_extent() elements line up exactly — the online registry holds [encoder, projector,
// predictor], the target registry [encoder, projector] — so the EMA is one pass over that prefix, and
// LARS and the gradient all-reduce are one pass over the online buffer. The target keeps its own BN
// running statistics (its own statistics buffer); only parameters are averaged.
//
// One step on views v1, v2 of the same images:
//   y_i = f(v_i), z_i = g(y_i), p_i = q(z_i)      BN statistics per view (one pass over [v1; v2],
//                                                  batch norm in two groups: ops::BatchNormOptions)
//   z'_i = g'(f'(v_i))                             under no-grad, BN in training mode (as the official code)
//   loss = mean_n [(2 - 2 cos(p1, z'2)) + (2 - 2 cos(p2, z'1))]
//   backward -> online gradient buffer -> all-reduce hook -> LARS at lr(k) -> EMA with tau(k) -> k += 1
// The probe (a linear classifier on the stop-gradient embedding y1) has its own AdamW optimizer.
//
// Devices: the learner is built on the CPU; to(Device) moves every registry and optimizer state to a
// GPU. step() then takes views (and labels) on that device and never waits for the GPU: its metrics
// (loss, probe loss, probe correct count) stay in a device tensor until the caller reads them.
#pragma once

#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "byol/objective.h"
#include "byol/optimizers.h"
#include "byol/schedules.h"
#include "engine/optim_ops.h"
#include "engine/phase_clock.h"
#include "models/mlp.h"
#include "models/resnet.h"

namespace byol {

struct NetworkConfig {
  models::ResNetConfig encoder;
  int64_t projector_hidden = 4096;
  int64_t projection_dim = 256;
  int64_t predictor_hidden = 4096;
  int projector_depth = 2;  // linear layers per head (models/mlp.h): 2 in the paper
  int predictor_depth = 2;
};

class ByolNetworks {
 public:
  explicit ByolNetworks(const NetworkConfig& cfg);
  ByolNetworks(const ByolNetworks&) = delete;
  ByolNetworks& operator=(const ByolNetworks&) = delete;

  // Initialises the online network and predictor from gen, then the target: from gen as well
  // (a different random initialisation, as in the official code) or as a copy of the online network.
  void initialize(std::mt19937_64& gen, bool copy_online_to_target);
  int64_t target_extent() const { return target.params().numel(); }
  int64_t embedding_dim() const { return online_encoder->out_features(); }
  const NetworkConfig& config() const { return cfg_; }

  models::ParamRegistry online;  // encoder.*, projector.*, predictor.*
  models::ParamRegistry target;  // encoder.*, projector.*
  std::unique_ptr<models::ResNet> online_encoder, target_encoder;
  std::unique_ptr<models::MlpHead> online_projector, target_projector, predictor;

 private:
  NetworkConfig cfg_;
};

struct TrainConfig {
  int64_t batch_size = 256;  // global batch (all ranks); the learning rate scales with it
  int64_t total_steps = 1000;
  int64_t warmup_steps = 100;
  double base_lr = 0.2;
  double weight_decay = 1.5e-6;
  double tau_base = 0.996;
  double lars_eta = 1e-3;
  double lars_momentum = 0.9;
  int64_t probe_classes = 0;  // 0: no online linear probe
  double probe_lr = 1e-3;
  uint64_t seed = 0;
  bool copy_target_init = false;
  // The paper's ablations (its section 5; docs/byol.md, section 7). predictor = false: the online
  // projections are the predictions (p = z). target_network = false: the targets are the online network's
  // own projections of the other view under stop-gradient (z' = sg(z)), and the EMA is skipped. Both false
  // collapse within a short run; the collapse monitor of byol-pretrain says so.
  bool predictor = true;
  bool target_network = true;
  // Without a target network: whether the online projections used as targets are under stop-gradient
  // (true, as BYOL's no-target ablation and SimSiam) or carry gradients like the predictions (false, as
  // SimCLR). With a target network there is nothing to differentiate: it must stay true.
  bool stop_gradient = true;
  // The unified objective of the paper's comparison with SimCLR (byol/objective.h): beta = 0 is BYOL's
  // loss; beta = 1 with predictor, target_network and stop_gradient all false is SimCLR's NT-Xent.
  ObjectiveConfig objective;
  // Gradient accumulation: each step's batch (this rank's rows) is cut into this many micro-batches, each
  // a forward and backward of its own into the same gradient buffer, then one optimizer step and EMA. It
  // reaches a batch that does not fit in memory with the same learning rate and update count, but not the
  // same batch-norm statistics (each micro-batch normalises by its own) or InfoNCE negatives (each
  // micro-batch's own): not a large-batch run, a memory-bounded approximation of one.
  int64_t accumulation_steps = 1;
  // tau constant at tau_base instead of the cosine rise to 1: the paper's tau ablation (tau_base 0: the
  // target is a copy of the online network after every step; 1 with a random target init: a fixed random
  // target).
  bool constant_tau = false;
  // How the two views go through the networks; the same numbers either way (batch norm keeps per-view
  // statistics). one: [v1; v2] in one pass, batch norm in two groups: one synced-BN all-reduce per layer
  // and pass for both views, kernels twice the batch. two: a pass per view, each half the working set (on
  // a CPU the larger pass overflows the caches and is slower: docs/benchmarks.md, "View passes").
  // auto: one on a GPU or with synced BN across ranks, two otherwise.
  enum class ViewPasses { automatic, one, two } view_passes = ViewPasses::automatic;
  // The convolutions' products (train.precision): fp32, or bf16 (operands rounded to bf16; sums, batch
  // norm's math and statistics, the heads' activations, the loss, gradients, LARS and the EMA in fp32).
  enum class Precision { fp32, bf16 } precision = Precision::fp32;
  // With precision bf16: the encoders' activations stored as bf16 between layers
  // (models::ForwardContext::bf16_activations). Always so on a GPU (models::bf16_activations_by_default);
  // true asks for it on the CPU too (faster than bf16 products for large networks, slower for small ones;
  // docs/benchmarks.md).
  bool bf16_activations = false;
  // train.cuda_graph: on a GPU, step() captures its forward, backward, LARS and EMA as one CUDA graph after
  // kGraphWarmupSteps eager steps at a batch shape, and replays it every step after that (one launch instead
  // of hundreds; the host is free while the GPU works). The same kernels in the same order as the eager step.
  // The probe, when on, runs eagerly after the replay. With several ranks (DataParallel over NCCL) the graph
  // holds the gradient buckets' all-reduces and the synced batch norm's too. Where the capture fails (on any
  // rank: the ranks agree, as NCCL requires a collective to be captured on all of them or on none), step()
  // says why on stderr once and goes on with eager steps.
  bool cuda_graph = false;
};

// Eager steps at a batch shape before TrainConfig::cuda_graph captures the step: the first sets up what a
// capture cannot (cuDNN's algorithm choice, tables uploaded on first use, workspaces at their size); the
// second shows the first left nothing to set up.
constexpr int64_t kGraphWarmupSteps = 2;

// Averages gradients across ranks. begin() is called just before the BYOL loss's backward (so
// buckets can be all-reduced while backward goes on), finish() right after it: when it returns the
// online gradient buffer holds the mean over ranks. average() does the same for a small buffer in one
// blocking call (the probe's gradients). on_every_rank() tells whether `mine` holds on every rank: a
// host-blocking collective, which every rank calls at the same point (the CUDA graph's capture outcome).
// abandon() ends a begin() whose backward threw before finish(), at once: no all-reduce is left running in
// place on the gradient buffer (MPI's complete), and none captured in an abandoned CUDA graph capture is
// waited for (they never ran).
class GradientSync {
 public:
  virtual ~GradientSync() = default;
  virtual void begin() = 0;
  virtual void finish() = 0;
  virtual void average(const Tensor& t) = 0;
  virtual bool on_every_rank(bool mine) = 0;
  virtual void abandon() = 0;
};

// A step's metrics as host numbers.
struct StepValues {
  double loss = 0;
  double probe_loss = 0;      // when the probe is on and labels were given
  double probe_accuracy = 0;  // top-1 on this batch
  // BYOL's regression term, mean_i [(2 - 2 cos(p1, z'2)) + (2 - 2 cos(p2, z'1))], whatever the objective
  // (the loss itself when beta = 0): the online-target cosine is 1 - regression_loss / 4.
  double regression_loss = 0;
};

// What a step reports. The schedule values are host numbers; the measured values stay on the step's
// device, so reading them is the caller's choice of synchronisation point (e.g. when it logs).
struct StepMetrics {
  int64_t step = 0;  // the step just taken (0-based)
  double lr = 0;
  double tau = 0;
  int64_t probe_rows = 0;  // rows the probe was trained on (0: no probe, or no labels this step)
  // The slots of `values`, f32 [kSlots] on the step's device.
  enum Slot : int64_t { kLoss, kProbeLoss, kProbeCorrect, kRegressionLoss, kSlots };
  Tensor values;
  Tensor value(Slot s) const { return values.window(s, {}); }  // one slot, a [] view
  // Copies `values` to the host in one transfer (waits for the GPU) and forms the accuracy.
  StepValues read() const;
};

class Learner {
 public:
  Learner(const NetworkConfig& net, const TrainConfig& train);
  ~Learner();
  Learner(const Learner&) = delete;
  Learner& operator=(const Learner&) = delete;

  // Moves the online and target registries, the LARS state, the probe and its AdamW state to `device`.
  void to(Device device);
  Device device() const { return nets.online.device(); }

  // Whether step() runs both views in one pass (TrainConfig::view_passes, resolved for this learner).
  bool views_in_one_pass() const;

  // One BYOL step on two views [N, H, W, 3] of the same N images; labels [N] (i32/i64, in
  // [0, probe_classes)) feed the probe. Views and labels must be on device().
  StepMetrics step(const Tensor& view1, const Tensor& view2, const Tensor& labels = Tensor());

  // The online encoder's embedding (no grad, BN in evaluation mode): for kNN and linear evaluation.
  Tensor embed(const Tensor& images) const;

  // The last step's online projections z = g(f(v)), detached (no copy), on device(): [N, D] of view 1, or
  // [2N, D] with view 1's rows first when both views ran in one pass. The collapse monitor's input
  // (byol/evaluation.h, collapse_stats). Undefined before the first step. With a replayed CUDA graph it is
  // the graph's output buffer, which the next step overwrites: read it before the next step.
  const Tensor& last_projections() const { return last_projections_; }

  int64_t steps_done() const { return step_; }
  void set_steps_done(int64_t step) { step_ = step; }
  double lr_at(int64_t step) const;
  double tau_at(int64_t step) const;
  const TrainConfig& train_config() const { return train_; }
  // How many times step() has captured its CUDA graph (TrainConfig::cuda_graph): 1 once the warm-up steps
  // are done, one more each time the batch shape or a buffer's address changed.
  int64_t graph_captures() const;
  // Why capturing the step failed ("" if it did not): the steps since then have run eagerly.
  std::string graph_failure() const;

  ByolNetworks nets;
  Lars lars;
  // The online linear probe: its own parameters and optimizer.
  models::ParamRegistry probe_params;
  std::unique_ptr<models::Linear> probe;
  std::unique_ptr<AdamW> probe_optimizer;

  // Filled for multi-rank training (byol/distributed.h): synced BN, and the averaging of gradients
  // across ranks. Empty / null: one rank.
  ops::StatsAllReduce bn_all_reduce;
  GradientSync* grad_sync = nullptr;
  // The InfoNCE term's candidates across ranks (used only when objective.beta > 0).
  CandidateGather candidates;
  // Benchmarks: when set, step() marks the end of its phases on it ("forward": both networks and the
  // objective; "backward": the backward pass and the wait for the gradient all-reduce; "optimizer": LARS
  // and the target's EMA; "probe": the online probe's step). The caller starts the clock.
  PhaseClock* phase_clock = nullptr;

 private:
  // One forward pass of both views through the online and target networks, and the objective.
  struct Forward {
    Tensor loss, regression, y1, projections;
  };
  Forward forward(const Tensor& view1, const Tensor& view2);
  // What the step before the probe leaves: StepMetrics' values (loss and regression slots filled), the
  // projections (last_projections()) and the probe's input y1.
  struct Core {
    Tensor values, projections, y1;
  };
  // Forward, backward (with the gradient all-reduce), LARS and EMA at the values in schedule_.
  Core core_step(const Tensor& view1, const Tensor& view2, bool mark_phases);
  Core graph_step(const Tensor& view1, const Tensor& view2);  // core_step through a CUDA graph
  std::vector<int64_t> graph_key(const Tensor& view) const;

  TrainConfig train_;
  UnifiedObjective objective_;
  int64_t step_ = 0;
  Tensor last_projections_;
  // This step's learning rate and tau, f32 on device(): LARS and the EMA read them as they run.
  enum ScheduleSlot : int64_t { kScheduleLr, kScheduleTau, kScheduleSlots };
  Tensor schedule_;
  int64_t moves_ = 0;  // calls of to(): part of the graph's key
  struct GraphState;
  std::unique_ptr<GraphState> graph_;
};

// EMA of the target over the shared prefix: target <- tau * target + (1 - tau) * online.
// tau: a number, or an f32 tensor of one element on the buffers' device (ops::StepScalar).
void ema_update_target(const Tensor& target_params, const Tensor& online_params, const ops::StepScalar& tau);

}  // namespace byol
