// Optimizers over a ParamRegistry's flat buffers. Each keeps its state in flat buffers with the
// registry's layout (so checkpoints and the CUDA kernels see one buffer), and updates every registered
// tensor in place from its window of the gradient buffer.
//
// Devices: the state is allocated where the registry's buffers are when the optimizer is built, and
// to(Device) moves it (the Learner moves registries and optimizers together). step() is one engine op
// on the parameters' device (engine/optim_ops.h: the CPU loops or the CUDA kernels, both through the
// per-element math of engine/math/optimizers.h) and throws, naming the optimizer and both devices,
// when the state is elsewhere. Nothing in step() waits for the GPU.
//
// Lars: BYOL's pretraining optimizer (see engine/math/optimizers.h for the exact chain); the
// per-tensor norms use double accumulation. Tags decide exclusions: kNoWeightDecay, kNoLarsAdapt.
// Sgd and AdamW: for evaluation heads (linear probe, fine-tuning), PyTorch semantics.
#pragma once

#include <vector>

#include "engine/optim_ops.h"
#include "models/module.h"

namespace byol {

struct LarsOptions {
  double weight_decay = 1.5e-6;
  double momentum = 0.9;
  double eta = 1e-3;
};

class Lars {
 public:
  Lars(const models::ParamRegistry& reg, LarsOptions opt);
  // lr: a number, or an f32 tensor of one element on the parameters' device (ops::StepScalar).
  void step(const ops::StepScalar& lr);
  void to(Device device);  // moves the momentum and the trust ratios
  Tensor& momentum() { return momentum_; }
  const Tensor& momentum() const { return momentum_; }
  // Trust ratio applied to each registered tensor in the last step (1 for excluded ones). They are kept
  // on the parameters' device (f64 [tensors]); this copies them to the host, which waits for the GPU.
  std::vector<double> last_trust_ratios() const { return trust_.to_vector<double>(); }
  const LarsOptions& options() const { return opt_; }

 private:
  const models::ParamRegistry& reg_;
  LarsOptions opt_;
  Tensor momentum_;
  ops::LarsLayout layout_;  // the registry's tensors and exclusions (packed once per device on a GPU)
  Tensor trust_;            // f64 [param_entries]
};

struct SgdOptions {
  double momentum = 0.9;
  double weight_decay = 0.0;
  bool nesterov = true;
};

class Sgd {
 public:
  Sgd(const models::ParamRegistry& reg, SgdOptions opt);
  void step(double lr);
  void to(Device device);
  Tensor& momentum() { return momentum_; }

 private:
  const models::ParamRegistry& reg_;
  SgdOptions opt_;
  Tensor momentum_;
};

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(const models::ParamRegistry& reg, AdamWOptions opt);
  void step(double lr);
  void to(Device device);
  Tensor& first_moment() { return m_; }
  Tensor& second_moment() { return v_; }
  int64_t& steps_taken() { return t_; }

 private:
  const models::ParamRegistry& reg_;
  AdamWOptions opt_;
  Tensor m_, v_;
  int64_t t_ = 0;
};

}  // namespace byol
