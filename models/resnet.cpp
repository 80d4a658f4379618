#include "models/resnet.h"

namespace byol::models {

std::vector<int> resnet_blocks(int depth) {
  switch (depth) {
    case 18:
      return {2, 2, 2, 2};
    case 34:
      return {3, 4, 6, 3};
    case 50:
      return {3, 4, 6, 3};
    case 101:
      return {3, 4, 23, 3};
    case 152:
      return {3, 8, 36, 3};
    case 200:
      return {3, 24, 36, 3};
  }
  BYOL_FAIL("ResNet: depth ", depth, " is not one of 18, 34, 50, 101, 152, 200");
}

bool resnet_uses_bottleneck(int depth) {
  return depth >= 50;
}

void check_resnet_config(const ResNetConfig& cfg, const std::string& context) {
  const int d = cfg.depth;
  BYOL_CHECK(d == 18 || d == 34 || d == 50 || d == 101 || d == 152 || d == 200, context, ": depth ", d,
             " is not one of 18, 34, 50, 101, 152, 200");
  BYOL_CHECK(cfg.width >= 1 && cfg.width <= kMaxWidth, context, ": width ", cfg.width, ", expected 1..",
             kMaxWidth);
  BYOL_CHECK(cfg.base_channels >= 1 && cfg.base_channels <= kMaxBaseChannels, context, ": base_channels ",
             cfg.base_channels, ", expected 1..", kMaxBaseChannels);
  if (cfg.blocks.empty()) return;
  BYOL_CHECK(cfg.blocks.size() == 4, context, ": blocks has ", cfg.blocks.size(), " stages, expected 4");
  for (size_t s = 0; s < 4; ++s)
    BYOL_CHECK(cfg.blocks[s] >= 1 && cfg.blocks[s] <= kMaxBlocksPerStage, context, ": blocks[", s, "] is ",
               cfg.blocks[s], ", expected 1..", kMaxBlocksPerStage);
}

ResNetSize resnet_size(const ResNetConfig& cfg) {
  check_resnet_config(cfg);
  const std::vector<int> blocks = cfg.blocks.empty() ? resnet_blocks(cfg.depth) : cfg.blocks;
  const bool bottleneck = resnet_uses_bottleneck(cfg.depth);
  ResNetSize n;
  auto conv = [&](int64_t in, int64_t out, int64_t k) { n.params += in * out * k * k; };
  auto bn = [&](int64_t c) { n.params += 2 * c, n.stats += 2 * c; };
  const int64_t base = cfg.base_channels * cfg.width;
  conv(3, base, cfg.stem == Stem::imagenet ? 7 : 3), bn(base);
  int64_t in = base;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t planes = base << stage;
    const int64_t out = bottleneck ? planes * 4 : planes;
    for (int b = 0; b < blocks[stage]; ++b) {
      if (bottleneck) {
        conv(in, planes, 1), bn(planes), conv(planes, planes, 3), bn(planes), conv(planes, out, 1), bn(out);
      } else {
        conv(in, planes, 3), bn(planes), conv(planes, planes, 3), bn(planes);
      }
      if ((stage > 0 && b == 0) || in != out) conv(in, out, 1), bn(out);
      in = out;
    }
  }
  return n;
}

namespace {

// Projection shortcut: 1x1 conv with the block's stride + BN, when the shape changes.
struct Downsample {
  Downsample(ParamRegistry& reg, const std::string& name, int64_t in, int64_t out, int stride)
      : conv(reg, name + ".0", in, out, 1, stride, 0), bn(reg, name + ".1", out) {}
  Conv2d conv;
  BatchNorm bn;
};

class BasicBlock : public ResidualBlock {
 public:
  static constexpr int kExpansion = 1;
  BasicBlock(ParamRegistry& reg, const std::string& name, int64_t in, int64_t planes, int stride,
             bool zero_init)
      : conv1_(reg, name + ".conv1", in, planes, 3, stride, 1),
        bn1_(reg, name + ".bn1", planes),
        conv2_(reg, name + ".conv2", planes, planes, 3, 1, 1),
        bn2_(reg, name + ".bn2", planes, zero_init) {
    if (stride != 1 || in != planes)
      down_ = std::make_unique<Downsample>(reg, name + ".downsample", in, planes, stride);
  }
  Tensor forward(const Tensor& x, const ForwardContext& ctx) const override {
    // BN + ReLU, and BN + the shortcut + ReLU, each one fused op (ops::batch_norm_relu).
    Tensor h = bn1_.forward_relu(conv1_.forward(x, ctx), ctx);
    const Tensor shortcut = down_ ? down_->bn.forward(down_->conv.forward(x, ctx), ctx) : x;
    return bn2_.forward_relu(conv2_.forward(h, ctx), ctx, shortcut);
  }

 private:
  Conv2d conv1_;
  BatchNorm bn1_;
  Conv2d conv2_;
  BatchNorm bn2_;
  std::unique_ptr<Downsample> down_;
};

class Bottleneck : public ResidualBlock {
 public:
  static constexpr int kExpansion = 4;
  Bottleneck(ParamRegistry& reg, const std::string& name, int64_t in, int64_t planes, int stride,
             bool zero_init)
      : conv1_(reg, name + ".conv1", in, planes, 1, 1, 0),
        bn1_(reg, name + ".bn1", planes),
        conv2_(reg, name + ".conv2", planes, planes, 3, stride, 1),
        bn2_(reg, name + ".bn2", planes),
        conv3_(reg, name + ".conv3", planes, planes * kExpansion, 1, 1, 0),
        bn3_(reg, name + ".bn3", planes * kExpansion, zero_init) {
    if (stride != 1 || in != planes * kExpansion)
      down_ = std::make_unique<Downsample>(reg, name + ".downsample", in, planes * kExpansion, stride);
  }
  Tensor forward(const Tensor& x, const ForwardContext& ctx) const override {
    Tensor h = bn1_.forward_relu(conv1_.forward(x, ctx), ctx);
    h = bn2_.forward_relu(conv2_.forward(h, ctx), ctx);
    const Tensor shortcut = down_ ? down_->bn.forward(down_->conv.forward(x, ctx), ctx) : x;
    return bn3_.forward_relu(conv3_.forward(h, ctx), ctx, shortcut);
  }

 private:
  Conv2d conv1_;
  BatchNorm bn1_;
  Conv2d conv2_;
  BatchNorm bn2_;
  Conv2d conv3_;
  BatchNorm bn3_;
  std::unique_ptr<Downsample> down_;
};

}  // namespace

ResNet::ResNet(ParamRegistry& reg, const std::string& prefix, const ResNetConfig& cfg) : cfg_(cfg) {
  check_resnet_config(cfg);
  const std::vector<int> blocks = cfg.blocks.empty() ? resnet_blocks(cfg.depth) : cfg.blocks;
  const bool bottleneck = resnet_uses_bottleneck(cfg.depth);
  const int64_t base = cfg.base_channels * cfg.width;
  if (cfg.stem == Stem::imagenet) {
    conv1_ = std::make_unique<Conv2d>(reg, prefix + "conv1", 3, base, 7, 2, 3);
  } else {
    conv1_ = std::make_unique<Conv2d>(reg, prefix + "conv1", 3, base, 3, 1, 1);
  }
  bn1_ = std::make_unique<BatchNorm>(reg, prefix + "bn1", base);
  int64_t in = base;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t planes = base << stage;
    for (int b = 0; b < blocks[stage]; ++b) {
      const int stride = (stage > 0 && b == 0) ? 2 : 1;
      const std::string name = cat(prefix, "layer", stage + 1, ".", b);
      if (bottleneck) {
        blocks_.push_back(
            std::make_unique<Bottleneck>(reg, name, in, planes, stride, cfg.zero_init_residual));
        in = planes * Bottleneck::kExpansion;
      } else {
        blocks_.push_back(
            std::make_unique<BasicBlock>(reg, name, in, planes, stride, cfg.zero_init_residual));
        in = planes * BasicBlock::kExpansion;
      }
    }
  }
  out_features_ = in;
}

Tensor ResNet::forward(const Tensor& x, const ForwardContext& ctx) const {
  BYOL_CHECK(x.dim() == 4 && x.size(3) == 3, "ResNet: expected images [N, H, W, 3] (NHWC, RGB), got ",
             x.describe());
  // ForwardContext::bf16_activations: bf16 from the input to the pooled features, float32 after.
  const bool bf16_act = ctx.bf16 && ctx.bf16_activations;
  Tensor h = bn1_->forward_relu(conv1_->forward(bf16_act ? ops::cast(x, DType::bf16) : x, ctx), ctx);
  if (cfg_.stem == Stem::imagenet) h = ops::max_pool2d(h, 3, 2, 1);
  for (const auto& block : blocks_) h = block->forward(h, ctx);
  return ops::cast(ops::global_avg_pool(h), x.dtype());
}

}  // namespace byol::models
