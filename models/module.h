// Parameters as named views into flat buffers, and the layers built on them.
//
// A network registers each parameter (name, shape, tags, initialiser) and each batch-norm statistic
// with a ParamRegistry while it is constructed; finalize() then allocates three contiguous buffers —
// parameters, gradients, BN running statistics — and points every registered Tensor slot at its view.
// So the optimizer, the EMA of the target, the gradient all-reduce and checkpointing each see one flat
// buffer, while the layers see ordinary named tensors (llm.c's idea).
//
// Names follow torchvision (`conv1.weight`, `layer1.0.bn2.running_var`) below the registry's prefix.
// [byol:lars-exclusions]
// Tags, not names, say what LARS leaves alone: biases and BN scale/shift carry kNoWeightDecay and
// kNoLarsAdapt. Views start at multiples of kAlign elements (64 bytes) so vector kernels can assume
// aligned tensor starts; the gaps between views stay zero.
//
// Modules keep pointers registered here, so they must not move after construction: networks hold
// their blocks through unique_ptr and are themselves non-copyable and non-movable.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "engine/ops.h"

namespace byol::models {

enum ParamTag : uint32_t {
  kNoWeightDecay = 1u << 0,  // LARS adds no weight decay to this parameter's gradient
  kNoLarsAdapt = 1u << 1,    // LARS applies no trust ratio to this parameter
  kExcludedFromLars = kNoWeightDecay | kNoLarsAdapt,
};

enum class Init {
  kaiming_normal_fan_out,  // N(0, 2 / fan_out), fan_out = out_channels * R * S (torchvision's ResNet convs)
  uniform_fan_in,          // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's nn.Linear weight and bias)
  ones,
  zeros,
};

struct ParamEntry {
  std::string name;
  Shape shape;
  uint32_t tags = 0;
  Init init = Init::zeros;
  int64_t fan = 1;  // fan_out or fan_in, as the initialiser needs
  int64_t offset = 0;
  Tensor* slot = nullptr;
  int64_t numel() const { return shape_numel(shape); }
};

struct StatEntry {
  std::string name;
  Shape shape;
  double init = 0;
  int64_t offset = 0;
  Tensor* slot = nullptr;
};

class ParamRegistry {
 public:
  static constexpr int64_t kAlign = 16;

  ParamRegistry() = default;
  ParamRegistry(const ParamRegistry&) = delete;
  ParamRegistry& operator=(const ParamRegistry&) = delete;

  void add_param(std::string name, Shape shape, uint32_t tags, Init init, int64_t fan, Tensor* slot);
  void add_stat(std::string name, Shape shape, double init, Tensor* slot);

  // Allocates the flat buffers (f32, CPU) and binds every slot. With requires_grad, parameter views
  // are autograd leaves whose .grad is their window of the gradient buffer.
  void finalize(bool requires_grad);
  // Draws every parameter in registration order from gen and resets the statistics.
  void initialize(std::mt19937_64& gen);
  // Moves the three flat buffers to `device` (values kept) and rebinds every registered view in place:
  // the slots keep their TensorImpl (so autograd leaves, hooks keyed on them and handles to params()
  // stay valid), their name, requires_grad and their .grad window. A no-op on the current device.
  void to(Device device);
  Device device() const;  // where the flat buffers live (after finalize())

  bool finalized() const { return finalized_; }
  const Tensor& params() const { return params_; }
  const Tensor& grads() const { return grads_; }
  const Tensor& stats() const { return stats_; }
  const std::vector<ParamEntry>& param_entries() const { return param_entries_; }
  const std::vector<StatEntry>& stat_entries() const { return stat_entries_; }
  int64_t param_count() const;  // elements in parameters (without alignment gaps)
  // The view of a named parameter or statistic; throws naming the registry's known names if absent.
  Tensor find(const std::string& name) const;

 private:
  void check_open(const std::string& name) const;
  bool finalized_ = false;
  std::vector<ParamEntry> param_entries_;
  std::vector<StatEntry> stat_entries_;
  Tensor params_, grads_, stats_;
};

// How a forward pass runs: training mode (batch statistics, running-statistics update) or evaluation,
// and the hook that makes batch norm synchronous across ranks (empty: this rank's batch only).
struct ForwardContext {
  bool training = true;
  ops::StatsAllReduce bn_all_reduce;
  // The batch holds this many equal consecutive parts that batch norm treats separately (BYOL's views
  // concatenated into one pass: statistics per view, one all-reduce for all of them).
  int64_t bn_groups = 1;
  // Convolutions and linear layers with bf16 products (ops::Conv2dParams::bf16, ops::LinearParams::bf16;
  // train.precision = "bf16").
  bool bf16 = false;
  // With bf16: the encoder's activations stored as bf16 between its layers (its input cast once, its
  // features cast back to float32 after the global pool): convolutions with bf16 inputs and outputs, batch
  // norm, ReLU, the shortcut and pooling on bf16 rows with float math and float32 parameters and statistics;
  // the heads' linear layers then run in float32 (Linear::forward).
  // Half the activations' memory traffic; on a GPU, the only form cuDNN's bf16 convolutions take.
  bool bf16_activations = false;
};

// Where bf16 (train.precision, byol-eval --precision) stores the activations in bf16 by default: on a GPU
// (cuDNN's bf16 convolutions take bf16 data only, and the tensor cores are the point); on the CPU the
// float32 activations with bf16 products measured faster for the default recipe's small network, bf16
// activations for ResNet-18 at base 64 (docs/benchmarks.md, "bf16 activations"): train.cpu_bf16_activations.
inline bool bf16_activations_by_default(Device device) {
  return device.is_cuda();
}

class Conv2d {
 public:
  Conv2d(ParamRegistry& reg, const std::string& name, int64_t in, int64_t out, int kernel, int stride,
         int padding);
  // Only ctx.bf16 matters to a convolution (default: float32 products).
  Tensor forward(const Tensor& x, const ForwardContext& ctx = {}) const {
    return ops::conv2d(x, weight, {stride_, padding_, ctx.bf16});
  }
  Tensor weight;  // (K, R, S, C)

 private:
  int stride_, padding_;
};

class BatchNorm {
 public:
  static constexpr double kDecay = 0.9, kEps = 1e-5;  // the official BYOL code's values
  BatchNorm(ParamRegistry& reg, const std::string& name, int64_t channels, bool zero_init_scale = false);
  Tensor forward(const Tensor& x, const ForwardContext& ctx) const;
  // relu(forward(x) + residual) as one fused op (ops::batch_norm_relu); residual optional.
  Tensor forward_relu(const Tensor& x, const ForwardContext& ctx, const Tensor& residual = Tensor()) const;
  Tensor weight, bias;               // (C) scale and shift
  Tensor running_mean, running_var;  // (C) in the statistics buffer
};

class Linear {
 public:
  Linear(ParamRegistry& reg, const std::string& name, int64_t in, int64_t out, bool bias);
  // ctx.bf16: bf16 products (ops::LinearParams::bf16; train.precision = "bf16") on the CPU, as the
  // convolutions. With bf16 activations (always on a GPU) the heads stay float32 (TF32 where allowed): their
  // share of a ResNet step is small, and cuBLAS would need bf16 copies of x and w for bf16 products; the
  // CPU's bf16-activation form does the same, so it is the GPU's reference.
  Tensor forward(const Tensor& x, const ForwardContext& ctx = {}) const {
    return ops::linear(x, weight, bias, {ctx.bf16 && !ctx.bf16_activations && x.device().is_cpu()});
  }
  Tensor weight;  // (out, in)
  Tensor bias;    // (out), undefined without bias
};

}  // namespace byol::models
