// Models: flat-buffer registry, ResNet names/shapes/parameter counts against torchvision's own
// (tests/fixtures/torchvision_resnet_keys.json, written by tests/reference/torchvision_keys.py),
// LARS exclusion tags on every depth, initialisation statistics.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "byol/checkpoint.h"
#include "engine/device_memory.h"
#include "models/mlp.h"
#include "models/resnet.h"

using namespace byol;
using namespace byol::models;
using Catch::Matchers::Contains;

namespace {
nlohmann::json torchvision_keys() {
  std::ifstream in(BYOL_SOURCE_DIR "/tests/fixtures/torchvision_resnet_keys.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}
}  // namespace

TEST_CASE("registry: views into one flat buffer, aligned, gradients in the gradient buffer", "[models]") {
  ParamRegistry reg;
  Linear fc(reg, "fc", 5, 3, true);
  BatchNorm bn(reg, "bn", 3);
  reg.finalize(true);
  CHECK(fc.weight.storage() == reg.params().storage());
  CHECK(fc.bias.storage() == reg.params().storage());
  CHECK(fc.weight.grad().storage() == reg.grads().storage());
  CHECK(bn.running_var.storage() == reg.stats().storage());
  for (const ParamEntry& e : reg.param_entries()) CHECK(e.offset % ParamRegistry::kAlign == 0);
  CHECK(reg.param_count() == 15 + 3 + 3 + 3);
  CHECK(reg.find("bn.running_var").shape() == Shape{3});
  CHECK_THROWS_WITH(reg.find("fc.nope"), Contains("no parameter or statistic named 'fc.nope'"));
  ParamRegistry dup;
  Linear a(dup, "x", 2, 2, false);
  CHECK_THROWS_WITH(Linear(dup, "x", 2, 2, false), Contains("duplicate name 'x.weight'"));
}

TEST_CASE("registry: to(cpu) keeps every view, gradient window and value; clear errors", "[models]") {
  ParamRegistry open;
  Linear early(open, "fc", 2, 2, true);
  CHECK_THROWS_WITH(open.to(Device::cpu()), Contains("ParamRegistry::to(cpu)") && Contains("not finalized"));
  CHECK_THROWS_WITH(open.device(), Contains("before finalize()"));

  ParamRegistry reg;
  Linear fc(reg, "fc", 5, 3, true);
  BatchNorm bn(reg, "bn", 3);
  reg.finalize(true);
  std::mt19937_64 gen(3);
  reg.initialize(gen);
  reg.grads().copy_(Tensor::randn(reg.grads().shape(), gen));
  bn.running_mean.fill_(0.25);
  const std::vector<float> params = reg.params().to_vector<float>(), grads = reg.grads().to_vector<float>(),
                           stats = reg.stats().to_vector<float>();
  const TensorImpl* weight_impl = fc.weight.impl();
  const auto storage = reg.params().storage();
  reg.to(Device::cpu());
  CHECK(reg.device() == Device::cpu());
  CHECK(reg.params().storage() == storage);  // same device: nothing moves
  CHECK(fc.weight.impl() == weight_impl);    // slots keep their identity
  CHECK(fc.weight.requires_grad());
  CHECK(fc.weight.name() == "fc.weight");
  CHECK(fc.weight.grad().storage() == reg.grads().storage());
  CHECK(bn.running_mean.storage() == reg.stats().storage());
  CHECK(reg.params().to_vector<float>() == params);
  CHECK(reg.grads().to_vector<float>() == grads);
  CHECK(reg.stats().to_vector<float>() == stats);
  if (!cuda_compiled()) {
    CHECK_THROWS_WITH(reg.to(Device::cuda()), Contains("no CUDA backend"));
    CHECK(reg.device() == Device::cpu());
  }
}

TEST_CASE("ResNet names, shapes (exported as OIHW) and parameter counts match torchvision", "[models]") {
  const nlohmann::json ref = torchvision_keys();
  for (int depth : {18, 34, 50, 101, 152}) {
    INFO("resnet" << depth);
    ParamRegistry reg;
    ResNetConfig cfg;
    cfg.depth = depth;
    ResNet net(reg, "", cfg);
    reg.finalize(false);
    const auto& r = ref["resnet" + std::to_string(depth)];
    CHECK(reg.param_count() == r["encoder_parameters"].get<int64_t>());
    std::vector<std::pair<std::string, Shape>> ours;
    for (const auto& e : reg.param_entries()) {
      Shape s = e.shape;
      if (s.size() == 4) s = {s[0], s[3], s[1], s[2]};  // KRSC -> OIHW
      ours.emplace_back(e.name, s);
    }
    for (const auto& e : reg.stat_entries()) ours.emplace_back(e.name, e.shape);
    std::map<std::string, Shape> theirs;
    for (const auto& k : r["keys"]) theirs[k[0].get<std::string>()] = k[1].get<Shape>();
    REQUIRE(ours.size() == theirs.size());
    for (const auto& [name, shape] : ours) {
      INFO(name);
      REQUIRE(theirs.count(name) == 1);
      CHECK(theirs[name] == shape);
    }
    CHECK(net.out_features() == (depth >= 50 ? 2048 : 512));
  }
}

TEST_CASE("MLP heads of depth 1, 2 and 3: nn.Sequential names, shapes, forward", "[models]") {
  struct Case {
    int depth;
    std::vector<std::string> names;
  };
  for (const Case& c :
       {Case{1, {"head.0.weight"}},
        Case{2, {"head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias", "head.3.weight"}},
        Case{3,
             {"head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias", "head.3.weight", "head.3.bias",
              "head.4.weight", "head.4.bias", "head.6.weight"}}}) {
    INFO("depth " << c.depth);
    ParamRegistry reg;
    MlpHead head(reg, "head", 5, 7, 3, c.depth);
    reg.finalize(false);
    std::mt19937_64 gen(1);
    reg.initialize(gen);
    std::vector<std::string> names;
    for (const ParamEntry& e : reg.param_entries()) names.push_back(e.name);
    CHECK(names == c.names);
    CHECK(reg.param_entries().back().shape == Shape{3, c.depth == 1 ? 5 : 7});
    const Tensor y = head.forward(Tensor::randn({4, 5}, gen), ForwardContext{true, {}});
    CHECK(y.shape() == Shape{4, 3});
  }
  ParamRegistry reg;
  CHECK_THROWS_WITH(MlpHead(reg, "head", 5, 7, 3, 0), Catch::Matchers::Contains("depth must be >= 1"));
}

TEST_CASE("LARS exclusion tags: every 1-D parameter (bias, BN) excluded, every weight included", "[models]") {
  for (int depth : {18, 34, 50, 101, 152, 200}) {
    INFO("resnet" << depth);
    ParamRegistry reg;
    ResNetConfig cfg;
    cfg.depth = depth;
    cfg.base_channels = 2;  // names and tags do not depend on width; keep the buffers small
    ResNet net(reg, "encoder.", cfg);
    MlpHead head(reg, "projector", net.out_features(), 8, 4);
    reg.finalize(false);
    int excluded = 0;
    for (const ParamEntry& e : reg.param_entries()) {
      INFO(e.name);
      const bool is_vector = e.shape.size() == 1;
      CHECK(((e.tags & kNoWeightDecay) != 0) == is_vector);
      CHECK(((e.tags & kNoLarsAdapt) != 0) == is_vector);
      excluded += is_vector;
    }
    CHECK(excluded > 0);
  }
}

TEST_CASE("ResNet forward shapes for both stems, width multipliers and bottlenecks", "[models]") {
  struct Case {
    int depth, width;
    Stem stem;
    int64_t side, out;
  };
  // base_channels 1: stage widths are width * {1, 2, 4, 8}; bottlenecks output 4x that.
  for (Case c : {Case{18, 1, Stem::cifar, 8, 8}, Case{18, 2, Stem::imagenet, 32, 16},
                 Case{50, 1, Stem::cifar, 8, 32}, Case{50, 4, Stem::imagenet, 32, 128}}) {
    ParamRegistry reg;
    ResNetConfig cfg;
    cfg.depth = c.depth;
    cfg.width = c.width;
    cfg.stem = c.stem;
    cfg.base_channels = 1;
    cfg.blocks = {1, 1, 1, 1};
    ResNet net(reg, "", cfg);
    reg.finalize(false);
    std::mt19937_64 gen(3);
    reg.initialize(gen);
    INFO("depth " << c.depth << " width " << c.width);
    CHECK(net.out_features() == c.out);
    Tensor y = net.forward(Tensor::randn({2, c.side, c.side, 3}, gen), ForwardContext{});
    CHECK(y.shape() == Shape{2, c.out});
  }
}

TEST_CASE("resnet_size counts what the network registers, before building it", "[models]") {
  // torchvision's resnet18 / resnet50 have 11,689,512 / 25,557,032 parameters, of which the fc layer
  // (512 x 1000 + 1000 / 2048 x 1000 + 1000) is not part of an encoder.
  ResNetConfig r18;
  r18.depth = 18;
  CHECK(resnet_size(r18).params == 11689512 - 513000);
  ResNetConfig r50;
  r50.depth = 50;
  CHECK(resnet_size(r50).params == 25557032 - 2049000);
  for (ResNetConfig cfg : {r18, r50}) {
    for (Stem stem : {Stem::cifar, Stem::imagenet}) {
      for (int64_t base : {int64_t(3), int64_t(16)}) {
        cfg.stem = stem;
        cfg.base_channels = base;
        cfg.width = base == 3 ? 2 : 1;
        ParamRegistry reg;
        ResNet net(reg, "", cfg);
        int64_t stats = 0;
        for (const StatEntry& e : reg.stat_entries()) stats += shape_numel(e.shape);
        INFO("depth " << cfg.depth << " base " << base);
        CHECK(resnet_size(cfg).params == reg.param_count());
        CHECK(resnet_size(cfg).stats == stats);
      }
    }
  }
}

TEST_CASE("check_resnet_config bounds every field before anything is built", "[models]") {
  auto rejects = [](ResNetConfig cfg, const std::string& field) {
    INFO(field);
    ParamRegistry reg;
    CHECK_THROWS_WITH(ResNet(reg, "", cfg), Catch::Matchers::Contains(field));
    CHECK_THROWS_WITH(resnet_size(cfg), Catch::Matchers::Contains(field));
  };
  ResNetConfig ok;
  ok.depth = 18;
  ResNetConfig c = ok;
  c.depth = 19;
  rejects(c, "depth 19");
  c = ok, c.width = 0;
  rejects(c, "width 0");
  c = ok, c.width = 1 << 30;
  rejects(c, "width 1073741824");
  c = ok, c.base_channels = int64_t(1) << 40;
  rejects(c, "base_channels 1099511627776");
  c = ok, c.blocks = {2, 2, 2};
  rejects(c, "blocks has 3 stages");
  c = ok, c.blocks = {2, -1, 2, 2};
  rejects(c, "blocks[1] is -1");
  c = ok, c.blocks = {2, 2, 2000000000, 2};
  rejects(c, "blocks[2] is 2000000000");
}

TEST_CASE("initialisation follows torchvision: He-normal fan-out convs, BN 1/0, zero-init residual",
          "[models]") {
  ParamRegistry reg;
  ResNetConfig cfg;
  cfg.depth = 18;
  cfg.zero_init_residual = true;
  ResNet net(reg, "", cfg);
  reg.finalize(false);
  std::mt19937_64 gen(9);
  reg.initialize(gen);
  const Tensor w = reg.find("layer3.0.conv2.weight");  // 256 x 3 x 3 x 256: fan_out = 2304
  double ss = 0, s = 0;
  for (float v : w.to_vector<float>()) s += v, ss += static_cast<double>(v) * v;
  const double n = static_cast<double>(w.numel());
  CHECK(std::abs(s / n) < 0.01 * std::sqrt(2.0 / 2304));
  CHECK(std::sqrt(ss / n) == Approx(std::sqrt(2.0 / 2304)).epsilon(0.01));
  for (float v : reg.find("layer1.0.bn1.weight").to_vector<float>()) CHECK(v == 1.0f);
  for (float v : reg.find("layer1.0.bn2.weight").to_vector<float>())
    CHECK(v == 0.0f);  // last BN of the block
  for (float v : reg.find("layer1.0.bn2.running_var").to_vector<float>()) CHECK(v == 1.0f);
}

TEST_CASE("KRSC <-> OIHW conversion is the transpose it claims", "[models]") {
  std::mt19937_64 gen(2);
  Tensor w = Tensor::randn({4, 3, 2, 5}, gen);  // K R S C
  Tensor o = krsc_to_oihw(w);
  REQUIRE(o.shape() == Shape{4, 5, 3, 2});
  const float* a = w.data<float>();
  const float* b = o.data<float>();
  for (int k = 0; k < 4; ++k)
    for (int r = 0; r < 3; ++r)
      for (int s = 0; s < 2; ++s)
        for (int c = 0; c < 5; ++c)
          CHECK(b[((k * 5 + c) * 3 + r) * 2 + s] == a[((k * 3 + r) * 2 + s) * 5 + c]);
  CHECK(oihw_to_krsc(o).to_vector<float>() == w.to_vector<float>());
}
