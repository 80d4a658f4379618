// Optimizer updates over flat parameter buffers: EMA, LARS, SGD and AdamW as engine ops, in place and
// outside autograd, one front end for both backends (engine/ops/optimizers.cpp checks the arguments,
// then runs the CPU loops of engine/cpu/optimizers.cpp or the CUDA kernels of engine/cuda/ema.cu, lars.cu and
// optimizers.cu). Both backends apply the same per-element formulas, engine/math/optimizers.h.
// Every buffer is f32, contiguous and on one device; nothing here waits for a GPU.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace byol::ops {

// A hyperparameter that changes from step to step (the learning rate, the EMA's tau): a number, or an f32
// tensor of one element on the buffers' device that the update reads when it runs. Both forms apply the
// same float (the number rounded to f32 once, as the kernels take it). The tensor form is for a captured
// CUDA graph (byol/learner.h, TrainConfig::cuda_graph): a graph replays its kernels with the arguments they
// were captured with, so a value that changes every step has to come from memory written before each replay.
class StepScalar {
 public:
  StepScalar(double value) : value_(value) {}  // NOLINT(google-explicit-constructor): a number is a value
  explicit StepScalar(Tensor on_device) : tensor_(std::move(on_device)) {}
  bool in_tensor() const { return tensor_.defined(); }
  double value() const { return value_; }           // the number form
  const Tensor& tensor() const { return tensor_; }  // the tensor form

 private:
  double value_ = 0;
  Tensor tensor_;
};

// target[i] <- tau * target[i] + (1 - tau) * online[i] for every i < target.numel(): the target may be a
// prefix of the online buffer (BYOL's target network has no predictor).
void ema_(const Tensor& target, const Tensor& online, const StepScalar& tau);

// The tensors of a flat buffer as LARS updates them: sorted, disjoint element ranges [begin, end) with
// their exclusions. On a GPU the kernels read a packed copy of it, made and uploaded once per device and
// kept here, so a step copies nothing from the host.
class LarsLayout {
 public:
  struct Segment {
    int64_t begin = 0, end = 0;
    bool no_weight_decay = false;  // biases and BN parameters in BYOL
    bool no_adapt = false;         // trust ratio 1
  };
  // Checks that the segments are sorted, disjoint and inside a buffer of `numel` elements.
  LarsLayout(std::vector<Segment> segments, int64_t numel);
  const std::vector<Segment>& segments() const { return segments_; }
  int64_t numel() const { return numel_; }

  // The packed table on `device` (CUDA backend only): built on first use there.
  struct DeviceTable {
    Tensor bytes;  // u8 on the device
    int chunks = 0;
    int64_t chunk = 0;  // elements per full chunk
  };
  const DeviceTable& device_table(Device device) const;

 private:
  std::vector<Segment> segments_;
  int64_t numel_ = 0;
  mutable DeviceTable table_;
};

struct LarsHyper {
  StepScalar lr = 0.0;
  double weight_decay = 0, momentum = 0, eta = 0;
};

// One LARS step (engine/math/optimizers.h: g' = g + wd w, trust = eta |w| / |g'| per tensor, m = mu m +
// trust g', w -= lr m) on the tensors of the layout; gaps between them are not touched. trust_out: f64
// [segments] on the buffers' device, the trust ratio applied to each tensor.
void lars_step_(const Tensor& w, const Tensor& g, const Tensor& m, const LarsLayout& layout,
                const LarsHyper& h, const Tensor& trust_out);

// SGD with momentum, PyTorch's torch.optim.SGD (dampening 0), over every element of the buffers.
void sgd_step_(const Tensor& w, const Tensor& m, const Tensor& g, double lr, double momentum,
               double weight_decay, bool nesterov);

struct AdamWHyper {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  int64_t step = 1;  // the step being taken, from 1: the bias corrections 1 - beta^step
};

// AdamW, PyTorch's torch.optim.AdamW, over every element of the buffers.
void adamw_step_(const Tensor& w, const Tensor& m, const Tensor& v, const Tensor& g, const AdamWHyper& h);

}  // namespace byol::ops
