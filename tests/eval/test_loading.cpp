// load_encoder from each kind of file (written here with save_checkpoint, export_encoder and
// save_safetensors) and from random initialisation; and the errors for files it cannot use.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <random>

#include "byol/checkpoint.h"
#include "engine/io/safetensors.h"
#include "eval_test_util.h"

using namespace byol;
using namespace byol::eval;
using Catch::Matchers::Contains;

namespace {

NetworkConfig tiny_network() {
  NetworkConfig net;
  net.encoder = testing::tiny_encoder_config();
  net.projector_hidden = 8;
  net.projection_dim = 4;
  net.predictor_hidden = 8;
  return net;
}

// A learner that has taken one step, so its encoder's parameters and BN statistics are not the
// initial ones.
std::unique_ptr<Learner> trained_learner() {
  TrainConfig t;
  t.batch_size = 4;
  t.total_steps = 4;
  t.warmup_steps = 1;
  t.seed = 9;
  auto learner = std::make_unique<Learner>(tiny_network(), t);
  std::mt19937_64 gen(3);
  learner->step(Tensor::randn({4, 8, 8, 3}, gen), Tensor::randn({4, 8, 8, 3}, gen));
  learner->step(Tensor::randn({4, 8, 8, 3}, gen), Tensor::randn({4, 8, 8, 3}, gen));
  return learner;
}

// Every encoder parameter and statistic of the learner's online network equals the loaded one, bit for
// bit, and both give the same features.
void check_same_encoder(const Learner& learner, const LoadedEncoder& e) {
  int compared = 0;
  for (const auto& p : learner.nets.online.param_entries())
    if (p.name.rfind("encoder.", 0) == 0) {
      CHECK(p.slot->to_vector<float>() == e.registry->find(p.name.substr(8)).to_vector<float>());
      ++compared;
    }
  for (const auto& s : learner.nets.online.stat_entries())
    if (s.name.rfind("encoder.", 0) == 0) {
      CHECK(s.slot->to_vector<float>() == e.registry->find(s.name.substr(8)).to_vector<float>());
      ++compared;
    }
  CHECK(compared == int(e.registry->param_entries().size() + e.registry->stat_entries().size()));
  std::mt19937_64 gen(4);
  const Tensor x = Tensor::randn({2, 8, 8, 3}, gen);
  NoGradGuard no_grad;
  CHECK(learner.embed(x).to_vector<float>() == e.encoder->forward(x, {false, {}}).to_vector<float>());
}

}  // namespace

TEST_CASE("load_encoder: a byol.cpp checkpoint", "[eval][load]") {
  testing::TempDir dir;
  const auto learner = trained_learner();
  const std::string path = dir / "ckpt.safetensors";
  save_checkpoint(path, *learner);
  const LoadedEncoder e = load_encoder({path, std::nullopt, 0});
  CHECK(e.kind == "checkpoint");
  CHECK(e.path == path);
  CHECK(encoder_config_json(e.encoder->config()) == encoder_config_json(testing::tiny_encoder_config()));
  CHECK(e.loaded == int(e.registry->param_entries().size() + e.registry->stat_entries().size()));
  check_same_encoder(*learner, e);

  // Agreeing explicit flags are fine; disagreeing ones are an error naming the file.
  CHECK(load_encoder({path, testing::tiny_encoder_config(), 0}).kind == "checkpoint");
  models::ResNetConfig other = testing::tiny_encoder_config();
  other.base_channels = 8;
  CHECK_THROWS_WITH(load_encoder({path, other, 0}),
                    Contains(path) && Contains("differs") && Contains("base channels 4 (given 8)"));
  // Only the fields given are compared (byol-eval: the flags on its command line; the others hold
  // defaults). `byol-eval knn --encoder CKPT --depth 18` once failed on the default stem and width.
  models::ResNetConfig defaults;  // imagenet stem, base 64: defaults, as byol-eval fills them
  defaults.depth = 18;
  CHECK(load_encoder({path, defaults, 0, {true, false, false, false}}).kind == "checkpoint");
  CHECK_THROWS_WITH(load_encoder({path, defaults, 0, {true, false, true, false}}),
                    Contains(path) && Contains("stem cifar (given imagenet)"));
  defaults.depth = 50;
  CHECK_THROWS_WITH(load_encoder({path, defaults, 0, {true, false, false, false}}),
                    Contains("depth 18 (given 50)"));
}

TEST_CASE("load_encoder: an exported encoder and a torchvision file", "[eval][load]") {
  testing::TempDir dir;
  const auto learner = trained_learner();
  const models::ResNetConfig cfg = testing::tiny_encoder_config();
  const std::string exported = dir / "encoder.safetensors";
  export_encoder(exported, learner->nets.online, "encoder.", &cfg);
  const LoadedEncoder e = load_encoder({exported, std::nullopt, 0});
  CHECK(e.kind == "exported");
  CHECK(e.ignored.empty());
  check_same_encoder(*learner, e);
  models::ResNetConfig wide = cfg;
  wide.width = 2;
  CHECK_THROWS_WITH(load_encoder({exported, wide, 0}), Contains(exported) && Contains("differs"));

  // torchvision: no config metadata, plus fc.* and the int64 num_batches_tracked counters PyTorch saves.
  const std::string tv = dir / "resnet_tv.safetensors";
  export_encoder(tv, learner->nets.online, "encoder.");
  const SafetensorsFile f = load_safetensors(tv);
  NamedTensors tensors(f.tensors().begin(), f.tensors().end());
  tensors.emplace_back("bn1.num_batches_tracked", Tensor::zeros({}, DType::i64));
  tensors.emplace_back("fc.weight", Tensor::zeros({1000, 32}));
  tensors.emplace_back("fc.bias", Tensor::zeros({1000}));
  save_safetensors(tv, tensors);
  const LoadedEncoder t = load_encoder({tv, cfg, 0});
  CHECK(t.kind == "torchvision");
  std::vector<std::string> ignored = t.ignored;
  std::sort(ignored.begin(), ignored.end());
  CHECK(ignored == std::vector<std::string>{"bn1.num_batches_tracked", "fc.bias", "fc.weight"});
  check_same_encoder(*learner, t);
  CHECK_THROWS_WITH(load_encoder({tv, std::nullopt, 0}), Contains(tv) && Contains("--depth"));
  // The wrong shape for this file: the error names the file and the first tensor that does not fit.
  models::ResNetConfig narrow = cfg;
  narrow.base_channels = 2;
  CHECK_THROWS_WITH(load_encoder({tv, narrow, 0}),
                    Contains(tv) && Contains("conv1.weight") && Contains("expected"));
}

TEST_CASE("load_encoder: random initialisation is torchvision's, seeded", "[eval][load]") {
  models::ResNetConfig cfg = testing::tiny_encoder_config();
  cfg.base_channels = 16;
  const LoadedEncoder a = load_encoder({"", cfg, 1}), b = load_encoder({"", cfg, 1}),
                      c = load_encoder({"", cfg, 2});
  CHECK(a.kind == "random-init");
  CHECK(a.encoder->out_features() == 128);
  CHECK(a.registry->params().to_vector<float>() == b.registry->params().to_vector<float>());
  CHECK(a.registry->params().to_vector<float>() != c.registry->params().to_vector<float>());
  // Kaiming normal, fan_out mode: layer4.0.conv2 is 128 x 3 x 3 x 128, std sqrt(2 / (128 * 9)) = 0.0417.
  const std::vector<float> w = a.registry->find("layer4.0.conv2.weight").to_vector<float>();
  double sq = 0;
  for (float v : w) sq += double(v) * v;
  CHECK(std::sqrt(sq / double(w.size())) == Approx(std::sqrt(2.0 / (128 * 9))).epsilon(0.02));
  for (float v : a.registry->find("layer2.0.bn1.weight").to_vector<float>()) CHECK(v == 1.0f);
  for (float v : a.registry->find("layer2.0.bn1.running_var").to_vector<float>()) CHECK(v == 1.0f);
  CHECK_THROWS_WITH(load_encoder({"", std::nullopt, 0}), Contains("configuration"));
}

TEST_CASE("load_encoder: files it cannot use give errors naming them", "[eval][load]") {
  testing::TempDir dir;
  const std::string missing = dir / "missing.safetensors";
  CHECK_THROWS_WITH(load_encoder({missing, std::nullopt, 0}), Contains(missing));
  const std::string garbage = dir / "garbage.safetensors";
  std::ofstream(garbage) << "this is not a safetensors file at all";
  CHECK_THROWS_WITH(load_encoder({garbage, std::nullopt, 0}), Contains(garbage));
  const std::string unknown = dir / "unknown.safetensors";
  save_safetensors(unknown, {{"weights", Tensor::zeros({3})}});
  CHECK_THROWS_WITH(load_encoder({unknown, testing::tiny_encoder_config(), 0}),
                    Contains(unknown) && Contains("cannot tell what kind"));
  // A checkpoint whose encoder tensor has the wrong shape.
  const auto learner = trained_learner();
  const std::string ckpt = dir / "ckpt.safetensors";
  save_checkpoint(ckpt, *learner);
  const SafetensorsFile f = load_safetensors(ckpt);
  NamedTensors tensors;
  for (const auto& [n, t] : f.tensors())
    tensors.emplace_back(n, n == "online/encoder.layer1.0.conv1.weight" ? Tensor::zeros({4, 3, 3, 5}) : t);
  save_safetensors(ckpt, tensors, f.metadata());
  CHECK_THROWS_WITH(load_encoder({ckpt, std::nullopt, 0}),
                    Contains(ckpt) && Contains("online/encoder.layer1.0.conv1.weight"));
}

TEST_CASE("load_encoder: an encoder_config from the file is bounded before anything is built",
          "[eval][load]") {
  // Issue 14, finding 4: a 292-byte exported encoder asking for 2e9 blocks made byol-eval hang with
  // growing memory; base_channels x width overflowed; a negative block count was accepted.
  testing::TempDir dir;
  auto exported_with = [&](const std::string& config_json) {
    const std::string path = dir / "evil.safetensors";
    save_safetensors(
        path, {{"conv1.weight", Tensor::zeros({1})}},
        {{"format", "byol.cpp encoder (torchvision names, OIHW)"}, {"encoder_config", config_json}});
    return path;
  };
  struct Case {
    std::string json, says;
  };
  for (const Case& c : {
           Case{R"({"depth":18,"width":1,"stem":"cifar","blocks":[2000000000,2,2,2]})",
                "'blocks[0]' is 2000000000"},
           Case{R"({"depth":18,"width":1,"stem":"cifar","blocks":[2,-1,2,2]})", "'blocks[1]' is -1"},
           Case{R"({"depth":18,"width":1,"stem":"cifar","blocks":[2,2]})", "expected an array of 4"},
           Case{R"({"depth":18,"width":4294967297,"stem":"cifar"})", "'width' is 4294967297"},
           Case{R"({"depth":18,"width":1,"stem":"cifar","base_channels":9223372036854775807})",
                "'base_channels' is 9223372036854775807"},
           Case{R"({"depth":18,"width":1,"stem":"cifar","base_channels":18446744073709551615})",
                "'base_channels' is 18446744073709551615"},
           Case{R"({"depth":17,"width":1,"stem":"cifar"})", "'depth' is 17"},
           Case{R"({"depth":"18","width":1,"stem":"cifar"})", "expected an integer"},
           Case{R"({"depth":18,"width":1,"stem":7})", "'stem' is 7"},
           Case{R"({"width":1,"stem":"cifar"})", "needs 'depth'"},
           // In bounds, but a ResNet-200 at width 8 does not fit in a 300-byte file.
           Case{R"({"depth":200,"width":8,"stem":"imagenet","base_channels":1024})", "more than the file's"},
       }) {
    INFO(c.json);
    const std::string path = exported_with(c.json);
    CHECK_THROWS_WITH(load_encoder({path, std::nullopt, 0}), Contains(path) && Contains(c.says));
  }
}
