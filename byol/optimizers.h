// Optimizers over a ParamRegistry's flat buffers. Each keeps its state in flat buffers with the
// registry's layout (so checkpoints and, later, the CUDA kernels see one buffer), and updates every
// registered tensor in place from its window of the gradient buffer.
//
// Lars: BYOL's pretraining optimizer (see kernels/math/optimizer_math.h for the exact chain); the
// per-tensor norms use double accumulation. Tags decide exclusions: kNoWeightDecay, kNoLarsAdapt.
// Sgd and AdamW: for evaluation heads (linear probe, fine-tuning), PyTorch semantics.
#pragma once

#include <vector>

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
  void step(double lr);
  Tensor& momentum() { return momentum_; }
  const Tensor& momentum() const { return momentum_; }
  // Trust ratio applied to each registered tensor in the last step (1 for excluded ones).
  const std::vector<double>& last_trust_ratios() const { return trust_; }
  const LarsOptions& options() const { return opt_; }

 private:
  const models::ParamRegistry& reg_;
  LarsOptions opt_;
  Tensor momentum_;
  std::vector<double> trust_;
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
