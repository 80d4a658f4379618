// ResNet v1 encoders (He et al. 2016) as torchvision builds them (stride in the 3x3 convolution of a
// bottleneck), without the final fc: forward() returns the globally average-pooled features.
//
//   depth 18, 34: BasicBlock (two 3x3 convs),          blocks per stage 18: [2,2,2,2]  34: [3,4,6,3]
//   depth 50+:    Bottleneck (1x1, 3x3, 1x1, x4 out),   50: [3,4,6,3]  101: [3,4,23,3]  152: [3,8,36,3]
//                                                       200: [3,24,36,3]
// Stage widths are base * width * {1, 2, 4, 8} (base 64; width 1, 2 or 4 as in the BYOL paper).
// Stems: ImageNet = conv 7x7/2 + BN + ReLU + max pool 3x3/2; CIFAR = conv 3x3/1 + BN + ReLU.
#pragma once

#include <memory>
#include <vector>

#include "models/module.h"

namespace byol::models {

enum class Stem { imagenet, cifar };

struct ResNetConfig {
  int depth = 50;
  int width = 1;
  Stem stem = Stem::imagenet;
  bool zero_init_residual = false;  // zero the scale of each block's last BN (torchvision's option)
  int64_t base_channels = 64;       // tests shrink it to build narrow networks
  std::vector<int> blocks;          // overrides the blocks per stage of `depth` (tests)
};

class ResidualBlock {
 public:
  virtual ~ResidualBlock() = default;
  virtual Tensor forward(const Tensor& x, const ForwardContext& ctx) const = 0;
};

class ResNet {
 public:
  // Registers the encoder under `prefix` ("" or e.g. "encoder.").
  ResNet(ParamRegistry& reg, const std::string& prefix, const ResNetConfig& cfg);
  ResNet(const ResNet&) = delete;
  ResNet& operator=(const ResNet&) = delete;

  Tensor forward(const Tensor& x, const ForwardContext& ctx) const;  // [N, H, W, 3] -> [N, out_features]
  int64_t out_features() const { return out_features_; }
  const ResNetConfig& config() const { return cfg_; }
  Device device() const { return conv1_->weight.device(); }  // where its registry's buffers are

 private:
  ResNetConfig cfg_;
  std::unique_ptr<Conv2d> conv1_;
  std::unique_ptr<BatchNorm> bn1_;
  std::vector<std::unique_ptr<ResidualBlock>> blocks_;
  int64_t out_features_ = 0;
};

// Blocks per stage and whether the blocks are bottlenecks, for a standard depth.
std::vector<int> resnet_blocks(int depth);
bool resnet_uses_bottleneck(int depth);

// Bounds on a configuration, checked before anything is built (a config can come from a downloaded
// file): a standard depth, width 1..kMaxWidth, base_channels 1..kMaxBaseChannels, and, when `blocks` is
// given, 4 stages of 1..kMaxBlocksPerStage blocks. Throws naming the field and `context`.
inline constexpr int kMaxWidth = 8;
inline constexpr int64_t kMaxBaseChannels = 1024;
inline constexpr int kMaxBlocksPerStage = 64;
void check_resnet_config(const ResNetConfig& cfg, const std::string& context = "ResNet");

// Parameters (weights, BN scales and shifts) and running statistics the configuration registers,
// counted without building it: a file that claims this encoder must hold at least 4 bytes per element.
struct ResNetSize {
  int64_t params = 0, stats = 0;
};
ResNetSize resnet_size(const ResNetConfig& cfg);

}  // namespace byol::models
