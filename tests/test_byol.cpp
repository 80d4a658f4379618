// The BYOL algorithm's pieces: schedules, presets, LARS/SGD/AdamW against scalar formulas, the target
// EMA and layout, a learner step, checkpoints (bitwise round trip, resume, bad files) and encoder export.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "byol/checkpoint.h"
#include "byol/distributed.h"
#include "engine/io/safetensors.h"
#include "tests/temp_dir.h"
#include "tests/tiny_byol.h"

using namespace byol;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

using byol::test_util::tiny_network;
using byol::test_util::tiny_train;

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.to_vector<float>() == b.to_vector<float>();
}

}  // namespace

TEST_CASE("learning-rate schedule: warmup from 0, cosine to 0, clamped after the end", "[byol][schedule]") {
  const double s = scaled_learning_rate(0.2, 4096);
  CHECK(s == Approx(3.2).epsilon(1e-15));
  CHECK(lr_at(0, 1000, 100, s) == 0.0);
  CHECK(lr_at(50, 1000, 100, s) == Approx(s / 2).epsilon(1e-15));
  CHECK(lr_at(99, 1000, 100, s) == Approx(s * 0.99).epsilon(1e-15));
  CHECK(lr_at(100, 1000, 100, s) == Approx(s).epsilon(1e-15));      // warmup boundary: the peak
  CHECK(lr_at(550, 1000, 100, s) == Approx(s / 2).epsilon(1e-12));  // cosine midpoint
  CHECK(lr_at(1000, 1000, 100, s) == Approx(0.0).margin(1e-15));
  CHECK(lr_at(5000, 1000, 100, s) == Approx(0.0).margin(1e-15));
  CHECK(lr_at(0, 10, 0, s) == s);  // no warmup
  CHECK_THROWS_WITH(lr_at(0, 10, 11, s), Contains("warmup"));
}

TEST_CASE("tau schedule: cosine from tau_base to 1", "[byol][schedule]") {
  CHECK(tau_at(0, 1000, 0.996) == Approx(0.996).epsilon(1e-15));
  CHECK(tau_at(500, 1000, 0.996) == Approx(1 - 0.004 / 2).epsilon(1e-15));
  CHECK(tau_at(250, 1000, 0.99) ==
        Approx(1 - 0.01 * (std::cos(std::numbers::pi / 4) + 1) / 2).epsilon(1e-15));
  CHECK(tau_at(1000, 1000, 0.996) == 1.0);
  CHECK(tau_at(2000, 1000, 0.996) == 1.0);
}

TEST_CASE("presets are the paper's", "[byol][schedule]") {
  CHECK(preset_for_epochs(40).base_lr == 0.45);
  CHECK(preset_for_epochs(40).tau_base == 0.97);
  CHECK(preset_for_epochs(100).tau_base == 0.99);
  CHECK(preset_for_epochs(300).base_lr == 0.3);
  CHECK(preset_for_epochs(1000).base_lr == 0.2);
  CHECK(preset_for_epochs(1000).weight_decay == 1.5e-6);
  CHECK(preset_for_epochs(1000).tau_base == 0.996);
  CHECK_THROWS_WITH(preset_for_epochs(200), Contains("40, 100, 300 and 1000"));
}

TEST_CASE("LARS matches a scalar implementation of the formula, with exclusions and zero norms",
          "[byol][lars]") {
  models::ParamRegistry reg;
  models::Linear fc(reg, "fc", 6, 4, true);         // weight: decayed and adapted; bias: excluded
  models::Conv2d conv(reg, "conv", 2, 3, 3, 1, 1);  // set to zero below: trust ratio 1
  reg.finalize(true);
  std::mt19937_64 gen(4);
  reg.params().copy_(Tensor::randn(reg.params().shape(), gen));
  conv.weight.zero_();
  reg.grads().copy_(Tensor::randn(reg.grads().shape(), gen));
  const LarsOptions opt{0.05, 0.9, 0.001};
  Lars lars(reg, opt);
  lars.momentum().copy_(Tensor::randn(reg.params().shape(), gen, DType::f32, 0.0, 0.1));
  const std::vector<float> w0 = reg.params().to_vector<float>(), g = reg.grads().to_vector<float>(),
                           m0 = lars.momentum().to_vector<float>();
  const double lr = 0.7;
  lars.step(lr);
  const std::vector<float> w1 = reg.params().to_vector<float>(), m1 = lars.momentum().to_vector<float>();
  const std::vector<double> trusts = lars.last_trust_ratios();
  REQUIRE(trusts.size() == reg.param_entries().size());
  size_t index = 0;
  for (const auto& e : reg.param_entries()) {
    INFO(e.name);
    const bool excluded = e.name == "fc.bias";
    const double wd = excluded ? 0.0 : opt.weight_decay;
    double wn = 0, un = 0;
    for (int64_t j = e.offset; j < e.offset + e.numel(); ++j) {
      wn += double(w0[j]) * w0[j];
      un += (g[j] + wd * w0[j]) * (g[j] + wd * w0[j]);
    }
    wn = std::sqrt(wn), un = std::sqrt(un);
    const double trust = excluded || wn == 0 || un == 0 ? 1.0 : opt.eta * wn / un;
    if (e.name == "conv.weight") CHECK(trust == 1.0);
    CHECK(trusts[index++] == Approx(trust).epsilon(1e-12));
    // The step computes in float (momentum 0.9f, products rounded or fused as the compiler chooses): its
    // rounding is relative to the terms, which can nearly cancel in m, so the margin scales with them.
    const double momentum = static_cast<float>(opt.momentum);
    for (int64_t j = e.offset; j < e.offset + e.numel(); ++j) {
      const double decayed = momentum * m0[j], update = trust * (g[j] + wd * w0[j]), m = decayed + update;
      CHECK(m1[j] == Approx(m).epsilon(1e-6).margin(1e-6 * (std::abs(decayed) + std::abs(update)) + 1e-9));
      CHECK(w1[j] == Approx(w0[j] - lr * m).epsilon(1e-6).margin(1e-6));  // float32 rounding of w0 ~ 1
    }
  }
}

TEST_CASE("SGD (Nesterov) and AdamW match PyTorch's update formulas", "[byol][optim]") {
  for (int which = 0; which < 2; ++which) {
    models::ParamRegistry reg;
    models::Linear fc(reg, "fc", 3, 2, true);
    reg.finalize(true);
    std::mt19937_64 gen(6);
    reg.params().copy_(Tensor::randn(reg.params().shape(), gen));
    std::vector<double> w(reg.params().numel()), m(w.size(), 0), v(w.size(), 0);
    const std::vector<float> w0 = reg.params().to_vector<float>();
    std::copy(w0.begin(), w0.end(), w.begin());
    Sgd sgd(reg, {0.9, 0.01, true});
    AdamW adam(reg, {0.9, 0.999, 1e-8, 0.05});
    for (int t = 1; t <= 3; ++t) {
      reg.grads().copy_(Tensor::randn(reg.grads().shape(), gen));
      const std::vector<float> g = reg.grads().to_vector<float>();
      for (const auto& e : reg.param_entries())
        for (int64_t j = e.offset; j < e.offset + e.numel(); ++j) {
          if (which == 0) {
            const double gd = g[j] + 0.01 * w[j];
            m[j] = 0.9 * m[j] + gd;
            w[j] -= 0.1 * (gd + 0.9 * m[j]);
          } else {
            w[j] *= 1 - 0.01 * 0.05;
            m[j] = 0.9 * m[j] + 0.1 * g[j];
            v[j] = 0.999 * v[j] + 0.001 * g[j] * g[j];
            w[j] -=
                0.01 * (m[j] / (1 - std::pow(0.9, t))) / (std::sqrt(v[j] / (1 - std::pow(0.999, t))) + 1e-8);
          }
        }
      which == 0 ? sgd.step(0.1) : adam.step(0.01);
    }
    const std::vector<float> got = reg.params().to_vector<float>();
    for (const auto& e : reg.param_entries())
      for (int64_t j = e.offset; j < e.offset + e.numel(); ++j) CHECK(got[j] == Approx(w[j]).epsilon(1e-5));
  }
}

TEST_CASE("target: same layout as the online prefix; EMA touches only that prefix", "[byol][ema]") {
  ByolNetworks nets(tiny_network());
  REQUIRE(nets.target.param_entries().size() < nets.online.param_entries().size());
  for (size_t i = 0; i < nets.target.param_entries().size(); ++i) {
    CHECK(nets.target.param_entries()[i].name == nets.online.param_entries()[i].name);
    CHECK(nets.target.param_entries()[i].offset == nets.online.param_entries()[i].offset);
  }
  CHECK(nets.online.param_entries()[nets.target.param_entries().size()].name.rfind("predictor.", 0) == 0);
  std::mt19937_64 gen(1);
  nets.initialize(gen, false);
  const int64_t n = nets.target_extent();
  CHECK_FALSE(bitwise_equal(nets.target.params(), nets.online.params().slice_rows(0, n).contiguous()));
  const std::vector<float> t0 = nets.target.params().to_vector<float>(),
                           o = nets.online.params().to_vector<float>();
  ema_update_target(nets.target.params(), nets.online.params(), 0.75);
  const std::vector<float> t1 = nets.target.params().to_vector<float>();
  for (int64_t i = 0; i < n; ++i)
    CHECK(t1[i] == Approx(0.75 * t0[i] + 0.25 * o[i]).epsilon(1e-6).margin(1e-7));
  ema_update_target(nets.target.params(), nets.online.params(), 1.0);
  CHECK(nets.target.params().to_vector<float>() == t1);  // tau = 1 leaves the target exactly as it was
  ema_update_target(nets.target.params(), nets.online.params(), 0.0);
  CHECK(bitwise_equal(nets.target.params(),
                      nets.online.params().slice_rows(0, n).contiguous()));  // tau = 0 copies
  nets.initialize(gen, true);
  CHECK(bitwise_equal(nets.target.params(), nets.online.params().slice_rows(0, n).contiguous()));
}

TEST_CASE("learner steps lower the BYOL loss on a fixed batch; the probe learns fixed features",
          "[byol][learner]") {
  TrainConfig train = tiny_train(5);
  train.total_steps = 30;
  train.warmup_steps = 0;
  train.base_lr = 40.0;  // scaled by 4 / 256
  Learner learner(tiny_network(), train);
  std::mt19937_64 gen(8);
  Tensor v1 = Tensor::randn({4, 8, 8, 3}, gen), v2 = Tensor::randn({4, 8, 8, 3}, gen);
  Tensor labels = Tensor::from_vector<int64_t>({0, 1, 2, 1}, {4});
  const StepMetrics first = learner.step(v1, v2, labels);
  StepMetrics last = first;
  for (int i = 0; i < 20; ++i) last = learner.step(v1, v2, labels);
  INFO("loss " << first.read().loss << " -> " << last.read().loss);
  CHECK(last.read().loss < first.read().loss);
  CHECK(last.probe_rows == 4);
  CHECK(learner.steps_done() == 21);
  CHECK(last.step == 20);
  CHECK(last.tau > first.tau);
  CHECK(learner.embed(v1).shape() == Shape{4, learner.nets.embedding_dim()});

  // With the learning rate at 0 the encoder's features stay fixed; the probe alone must fit them.
  train.base_lr = 0.0;
  train.probe_lr = 0.05;
  Learner frozen(tiny_network(), train);
  const StepValues p0 = frozen.step(v1, v2, labels).read();
  StepValues p1 = p0;
  for (int i = 0; i < 30; ++i) p1 = frozen.step(v1, v2, labels).read();
  INFO("probe loss " << p0.probe_loss << " -> " << p1.probe_loss);
  CHECK(p1.probe_loss < 0.5 * p0.probe_loss);
  CHECK(p1.probe_accuracy == 1.0);
}

TEST_CASE("both views in one pass (batch norm in two groups) take the same steps as one pass per view",
          "[byol][learner]") {
  // TrainConfig::view_passes: the one-pass layout (GPU, synced BN) and the per-view passes (single-rank
  // CPU) must agree on everything a step changes: loss, parameters after LARS, the EMA target, both
  // networks' BN running statistics, the probe.
  auto run = [](TrainConfig::ViewPasses passes) {
    TrainConfig train = tiny_train(6);
    train.warmup_steps = 0;
    train.base_lr = 20.0;
    train.view_passes = passes;
    auto learner = std::make_unique<Learner>(tiny_network(), train);
    std::mt19937_64 gen(9);
    const Tensor v1 = Tensor::randn({6, 8, 8, 3}, gen), v2 = Tensor::randn({6, 8, 8, 3}, gen);
    const Tensor labels = Tensor::from_vector<int64_t>({0, 1, 2, 1, 0, 2}, {6});
    std::vector<double> losses;
    for (int i = 0; i < 3; ++i) losses.push_back(learner->step(v1, v2, labels).read().loss);
    return std::make_pair(std::move(learner), losses);
  };
  auto [one, loss_one] = run(TrainConfig::ViewPasses::one);
  auto [two, loss_two] = run(TrainConfig::ViewPasses::two);
  CHECK(one->views_in_one_pass());
  CHECK_FALSE(two->views_in_one_pass());
  for (size_t i = 0; i < loss_one.size(); ++i) CHECK(loss_one[i] == Approx(loss_two[i]).epsilon(1e-5));
  auto rel = [](const Tensor& a, const Tensor& b) {
    const std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
    double d = 0, n = 0;
    for (size_t i = 0; i < x.size(); ++i) d += (x[i] - y[i]) * double(x[i] - y[i]), n += double(y[i]) * y[i];
    return std::sqrt(d / std::max(n, 1e-30));
  };
  CHECK(rel(one->nets.online.params(), two->nets.online.params()) < 1e-5);
  CHECK(rel(one->nets.target.params(), two->nets.target.params()) < 1e-5);
  CHECK(rel(one->nets.online.stats(), two->nets.online.stats()) < 1e-5);
  CHECK(rel(one->nets.target.stats(), two->nets.target.stats()) < 1e-5);
  CHECK(rel(one->probe_params.params(), two->probe_params.params()) < 1e-5);
  // automatic: per-view passes on a single-rank CPU, one pass once synced BN is on
  TrainConfig automatic = tiny_train(6);
  Learner learner(tiny_network(), automatic);
  CHECK_FALSE(learner.views_in_one_pass());
  learner.bn_all_reduce = [](Tensor&) {};
  CHECK(learner.views_in_one_pass());
}

TEST_CASE("gradient accumulation: the mean of the micro-batches' gradients, one LARS step and one EMA",
          "[byol][learner]") {
  // Micro-batches of 4 rows: a learner at accumulation 2 on 8 rows against two learners at accumulation 1
  // on each half (same start; each normalises by its own 4 rows, as a micro-batch does).
  for (double beta : {0.0, 1.0}) {
    INFO("beta " << beta);
    TrainConfig train = tiny_train(12);
    train.batch_size = 8;
    train.warmup_steps = 0;
    train.base_lr = 20.0;
    train.objective = {beta, 0.2};
    TrainConfig accumulating = train;
    accumulating.accumulation_steps = 2;
    Learner whole(tiny_network(), accumulating), half_a(tiny_network(), train), half_b(tiny_network(), train),
        replay(tiny_network(), train);
    std::mt19937_64 gen(13);
    const Tensor v1 = Tensor::randn({8, 8, 8, 3}, gen), v2 = Tensor::randn({8, 8, 8, 3}, gen);
    const Tensor labels = Tensor::from_vector<int64_t>({0, 1, 2, 1, 0, 2, 2, 1}, {8});
    const StepValues w = whole.step(v1, v2, labels).read();
    const StepValues a = half_a.step(v1.slice_rows(0, 4).clone(), v2.slice_rows(0, 4).clone()).read();
    const StepValues b = half_b.step(v1.slice_rows(4, 8).clone(), v2.slice_rows(4, 8).clone()).read();
    CHECK(w.loss == Approx((a.loss + b.loss) / 2).epsilon(1e-6));
    CHECK(w.regression_loss == Approx((a.regression_loss + b.regression_loss) / 2).epsilon(1e-6));
    CHECK(w.probe_accuracy >= 0);
    const std::vector<float> gw = whole.nets.online.grads().to_vector<float>(),
                             ga = half_a.nets.online.grads().to_vector<float>(),
                             gb = half_b.nets.online.grads().to_vector<float>();
    double diff = 0, norm = 0;
    for (size_t i = 0; i < gw.size(); ++i) {
      const double want = (double(ga[i]) + gb[i]) / 2;
      diff += (gw[i] - want) * (gw[i] - want), norm += want * want;
    }
    CHECK(std::sqrt(diff / norm) < 1e-5);
    // One LARS step on that gradient and one EMA: replayed by hand on a fourth learner from the same start.
    replay.nets.online.grads().copy_(whole.nets.online.grads());
    replay.lars.step(replay.lr_at(0));
    ema_update_target(replay.nets.target.params(), replay.nets.online.params(), replay.tau_at(0));
    CHECK(bitwise_equal(whole.nets.online.params(), replay.nets.online.params()));
    CHECK(bitwise_equal(whole.nets.target.params(), replay.nets.target.params()));
    CHECK(whole.steps_done() == 1);
  }
  TrainConfig bad = tiny_train(1);
  bad.accumulation_steps = 3;
  Learner learner(tiny_network(), bad);
  std::mt19937_64 gen(1);
  const Tensor v = Tensor::randn({4, 8, 8, 3}, gen);
  CHECK_THROWS_WITH(learner.step(v, v),
                    Catch::Matchers::Contains("cannot be cut into 3 equal micro-batches"));
  bad.accumulation_steps = 0;
  CHECK_THROWS_WITH(Learner(tiny_network(), bad),
                    Catch::Matchers::Contains("accumulation_steps must be >= 1"));
}

TEST_CASE("checkpoint round trip is bitwise exact and a resumed run continues identically",
          "[byol][checkpoint]") {
  const byol::test_util::TempDir tmp;
  const fs::path dir = tmp.path();
  const std::string path = (dir / "ckpt.safetensors").string();
  std::mt19937_64 gen(12);
  std::vector<Tensor> v1s, v2s;
  for (int i = 0; i < 4; ++i)
    v1s.push_back(Tensor::randn({4, 8, 8, 3}, gen)), v2s.push_back(Tensor::randn({4, 8, 8, 3}, gen));
  Tensor labels = Tensor::from_vector<int64_t>({2, 0, 1, 1}, {4});

  Learner a(tiny_network(), tiny_train(1));
  a.step(v1s[0], v2s[0], labels);
  a.step(v1s[1], v2s[1], labels);
  save_checkpoint(path, a, {{"data_rng", "12345 678"}});

  Learner b(tiny_network(), tiny_train(99));  // different initialisation, overwritten by the load
  const auto meta = load_checkpoint(path, b);
  CHECK(meta.at("data_rng") == "12345 678");
  CHECK(b.steps_done() == 2);
  CHECK(bitwise_equal(a.nets.online.params(), b.nets.online.params()));
  CHECK(bitwise_equal(a.nets.online.stats(), b.nets.online.stats()));
  CHECK(bitwise_equal(a.nets.target.params(), b.nets.target.params()));
  CHECK(bitwise_equal(a.nets.target.stats(), b.nets.target.stats()));
  CHECK(bitwise_equal(a.lars.momentum(), b.lars.momentum()));
  CHECK(bitwise_equal(a.probe_params.params(), b.probe_params.params()));
  for (int i = 2; i < 4; ++i) {
    const StepValues ma = a.step(v1s[i], v2s[i], labels).read(), mb = b.step(v1s[i], v2s[i], labels).read();
    CHECK(ma.loss == mb.loss);
    CHECK(ma.probe_loss == mb.probe_loss);
  }
  CHECK(bitwise_equal(a.nets.online.params(), b.nets.online.params()));
  CHECK(bitwise_equal(a.nets.target.params(), b.nets.target.params()));
  CHECK(bitwise_equal(a.probe_params.params(), b.probe_params.params()));
}

TEST_CASE("bad checkpoints give clear errors", "[byol][checkpoint]") {
  const byol::test_util::TempDir tmp;
  const fs::path dir = tmp.path();
  const std::string path = (dir / "ckpt.safetensors").string();
  Learner a(tiny_network(), tiny_train(1));
  save_checkpoint(path, a);
  NetworkConfig wider = tiny_network();
  wider.encoder.base_channels = 3;
  Learner other(wider, tiny_train(1));
  CHECK_THROWS_WITH(load_checkpoint(path, other),
                    Contains("ckpt.safetensors") && Contains("differs from this run"));
  NetworkConfig deeper = tiny_network();  // a head depth other than 2 is part of the network's identity
  deeper.predictor_depth = 3;
  Learner deep(deeper, tiny_train(1));
  CHECK_THROWS_WITH(load_checkpoint(path, deep), Contains("differs from this run"));
  const std::string deep_path = (dir / "deep.safetensors").string();
  save_checkpoint(deep_path, deep);
  Learner deep_again(deeper, tiny_train(2));
  load_checkpoint(deep_path, deep_again);
  CHECK(bitwise_equal(deep_again.nets.online.params(), deep.nets.online.params()));
  Learner shallow(tiny_network(), tiny_train(1));
  CHECK_THROWS_WITH(load_checkpoint(deep_path, shallow), Contains("differs from this run"));
  fs::resize_file(path, fs::file_size(path) - 10);
  Learner c(tiny_network(), tiny_train(1));
  CHECK_THROWS_WITH(load_checkpoint(path, c), Contains("ckpt.safetensors"));
  CHECK_THROWS_WITH(load_checkpoint((dir / "missing.safetensors").string(), c),
                    Contains("missing.safetensors"));
  const std::string enc = (dir / "enc.safetensors").string();
  export_encoder(enc, a.nets.online);
  CHECK_THROWS_WITH(load_checkpoint(enc, c), Contains("not a byol.cpp checkpoint"));
}

TEST_CASE("checkpoint metadata integers are parsed strictly, errors name the file and the key",
          "[byol][checkpoint]") {
  const std::map<std::string, std::string> meta = {{"a", "16"},
                                                   {"b", "16x"},
                                                   {"c", "abc"},
                                                   {"d", ""},
                                                   {"e", "-3"},
                                                   {"f", " 7"},
                                                   {"g", "99999999999999999999"}};
  CHECK(metadata_int(meta, "a", "m.safetensors") == 16);
  CHECK(metadata_int(meta, "e", "m.safetensors") == -3);
  CHECK(metadata_uint(meta, "a", "m.safetensors") == 16);
  for (const char* key : {"b", "c", "d", "f", "g"})
    CHECK_THROWS_WITH(
        metadata_int(meta, key, "m.safetensors"),
        Contains("m.safetensors: metadata '" + std::string(key) + "'") && Contains("expected an integer"));
  CHECK_THROWS_WITH(metadata_uint(meta, "e", "m.safetensors"), Contains("metadata 'e' is \"-3\""));
  CHECK_THROWS_WITH(metadata_int(meta, "missing", "m.safetensors"),
                    Contains("m.safetensors: metadata 'missing' is missing"));

  // A checkpoint whose 'step' was rewritten: every bad value is an error naming the file and the key.
  const byol::test_util::TempDir tmp;
  const std::string path = (fs::path(tmp.path()) / "ckpt.safetensors").string();
  Learner a(tiny_network(), tiny_train(1));
  save_checkpoint(path, a);
  const SafetensorsFile good = load_safetensors(path);
  for (const char* bad : {"abc", "16x", "99999999999", "-1", ""}) {
    std::map<std::string, std::string> m = good.metadata();
    if (*bad) {
      m["step"] = bad;
    } else {
      m.erase("step");
    }
    save_safetensors(path, good.tensors(), m);
    Learner b(tiny_network(), tiny_train(1));
    CHECK_THROWS_WITH(load_checkpoint(path, b), Contains("ckpt.safetensors: metadata 'step'"));
    CHECK(b.steps_done() == 0);
  }
}

TEST_CASE("an exported encoder imports back to the same encoder; torchvision names, OIHW", "[byol][export]") {
  const byol::test_util::TempDir tmp;
  const fs::path dir = tmp.path();
  const std::string path = (dir / "encoder.safetensors").string();
  Learner a(tiny_network(), tiny_train(1));
  std::mt19937_64 gen(3);
  a.step(Tensor::randn({4, 8, 8, 3}, gen), Tensor::randn({4, 8, 8, 3}, gen));  // non-trivial BN statistics
  export_encoder(path, a.nets.online);
  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.contains("conv1.weight"));
  CHECK(f.get("conv1.weight").shape() == Shape{2, 3, 3, 3});  // O I H W
  CHECK(f.contains("layer4.0.downsample.1.running_var"));
  for (const std::string& n : f.names()) CHECK(n.rfind("projector", 0) != 0);

  Learner b(tiny_network(), tiny_train(2));
  const ImportReport rep = import_encoder(path, b.nets.online);
  CHECK(rep.ignored.empty());
  for (const auto& e : a.nets.online.param_entries())
    if (e.name.rfind("encoder.", 0) == 0) CHECK(bitwise_equal(*e.slot, b.nets.online.find(e.name)));
  for (const auto& e : a.nets.online.stat_entries())
    if (e.name.rfind("encoder.", 0) == 0) CHECK(bitwise_equal(*e.slot, b.nets.online.find(e.name)));
  Tensor x = Tensor::randn({2, 8, 8, 3}, gen);
  CHECK(bitwise_equal(a.embed(x), b.embed(x)));

  // A torchvision file carries fc.* too: reported as ignored. A wrong shape names the tensor.
  NamedTensors tensors;
  for (const auto& [n, t] : f.tensors()) tensors.emplace_back(n, t);
  tensors.emplace_back("fc.weight", Tensor::zeros({10, 16}));
  save_safetensors(path, tensors);
  CHECK(import_encoder(path, b.nets.online).ignored == std::vector<std::string>{"fc.weight"});
  tensors[0].second = Tensor::zeros({2, 3, 1, 1});
  save_safetensors(path, tensors);
  CHECK_THROWS_WITH(import_encoder(path, b.nets.online),
                    Contains("'conv1.weight'") && Contains("expected f32[2, 3, 3, 3]"));
}

TEST_CASE("precision bf16: the convolutions' products in bf16, the step close to fp32's",
          "[byol][train][bf16]") {
  // Two steps from the same start in fp32 and in bf16: the losses agree to bf16's rounding (operands
  // rounded to 8 significant bits: about 0.4 % relative per product, averaged over many products), the
  // parameters after LARS as closely, and they are not identical (the bf16 path ran).
  TrainConfig train = tiny_train(5);
  Learner fp32(tiny_network(), train);
  train.precision = TrainConfig::Precision::bf16;
  Learner bf16(tiny_network(), train);
  REQUIRE(bitwise_equal(fp32.nets.online.params(), bf16.nets.online.params()));
  std::mt19937_64 gen(23);
  const Tensor v1 = Tensor::randn({8, 8, 8, 3}, gen), v2 = Tensor::randn({8, 8, 8, 3}, gen);
  for (int i = 0; i < 2; ++i) {
    const double a = fp32.step(v1, v2).read().loss, b = bf16.step(v1, v2).read().loss;
    INFO("step " << i << ": fp32 loss " << a << ", bf16 loss " << b);
    CHECK(std::abs(a - b) < 2e-2 * std::abs(a));
  }
  CHECK(!bitwise_equal(fp32.nets.online.params(), bf16.nets.online.params()));
  const std::vector<float> pa = fp32.nets.online.params().to_vector<float>(),
                           pb = bf16.nets.online.params().to_vector<float>();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    diff += (double(pa[i]) - pb[i]) * (double(pa[i]) - pb[i]);
    norm += double(pa[i]) * pa[i];
  }
  CHECK(std::sqrt(diff / norm) < 1e-2);
  // bf16 activations between the encoder's layers too (TrainConfig::bf16_activations): each stored
  // activation and its gradient rounded to bf16 as well (one more 2^-9 relative rounding per layer), so a
  // looser bound than the products alone, and measured: INFO prints both.
  train.bf16_activations = true;
  Learner act(tiny_network(), train);
  double act_loss = 0, fp32_loss = 0;
  Learner fp32b(tiny_network(), tiny_train(5));
  for (int i = 0; i < 2; ++i) {
    fp32_loss = fp32b.step(v1, v2).read().loss;
    act_loss = act.step(v1, v2).read().loss;
    INFO("step " << i << ": fp32 loss " << fp32_loss << ", bf16-activation loss " << act_loss);
    CHECK(std::abs(fp32_loss - act_loss) < 2e-2 * std::abs(fp32_loss));
  }
  const std::vector<float> pc = act.nets.online.params().to_vector<float>();
  double diff_act = 0;
  for (size_t i = 0; i < pa.size(); ++i) diff_act += (double(pa[i]) - pc[i]) * (double(pa[i]) - pc[i]);
  INFO("relative parameter difference after 2 steps: bf16 products "
       << std::sqrt(diff / norm) << ", bf16 activations " << std::sqrt(diff_act / norm));
  CHECK(std::sqrt(diff_act / norm) < 1e-2);
  CHECK(diff_act != diff);  // the activation path ran
  // float64 has no bf16 products.
  const Tensor x64 = Tensor::randn({1, 4, 4, 2}, gen, DType::f64),
               w64 = Tensor::randn({3, 3, 3, 2}, gen, DType::f64);
  CHECK_THROWS_WITH(ops::conv2d(x64, w64, {1, 1, true}), Contains("bf16 products need float32"));
}

TEST_CASE("PhaseClock: phases in first-ended order, summed over marks; a step marks its phases",
          "[byol][train]") {
  PhaseClock clock(Device::cpu());
  using Clock = std::chrono::steady_clock;
  const auto busy = [](double ms) {
    const auto t0 = Clock::now();
    while (std::chrono::duration<double, std::milli>(Clock::now() - t0).count() < ms) {
    }
  };
  const auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  const Clock::time_point begin = Clock::now();
  clock.start();
  busy(3);
  clock.mark("a");
  busy(6);
  clock.mark("b");
  const Clock::time_point gap_begin = Clock::now();
  busy(20);  // not counted: start() begins a new window
  const Clock::time_point gap_end = Clock::now();
  clock.start();
  busy(3);
  clock.mark("a");
  const Clock::time_point end = Clock::now();
  auto t = clock.totals();
  REQUIRE(t.size() == 2);
  CHECK(t[0].first == "a");
  CHECK(t[1].first == "b");
  CHECK(t[0].second >= 0.006);  // two marks of "a", each after at least 3 ms
  CHECK(t[1].second >= 0.006);
  // Whatever the load: the phases fit in the wall time outside the gap between the windows.
  CHECK(t[0].second + t[1].second <= seconds(begin, end) - seconds(gap_begin, gap_end));
  clock.reset();
  CHECK(clock.totals().empty());
  CHECK_THROWS_WITH(clock.mark("x"), Contains("no window is open"));

  // Learner::step marks forward, backward, optimizer and (with labels) probe, once each per step.
  TrainConfig train = tiny_train(5);
  train.probe_classes = 3;
  Learner learner(tiny_network(), train);
  std::mt19937_64 gen(3);
  const Tensor v1 = Tensor::randn({4, 8, 8, 3}, gen), v2 = Tensor::randn({4, 8, 8, 3}, gen);
  const Tensor labels = Tensor::from_vector<int64_t>({0, 2, 1, 2}, {4});
  learner.phase_clock = &clock;
  for (int i = 0; i < 2; ++i) {
    clock.start();
    learner.step(v1, v2, labels);
  }
  learner.phase_clock = nullptr;
  t = clock.totals();
  REQUIRE(t.size() == 4);
  CHECK(t[0].first == "forward");
  CHECK(t[1].first == "backward");
  CHECK(t[2].first == "optimizer");
  CHECK(t[3].first == "probe");
  for (const auto& [name, secs] : t) CHECK(secs > 0);
}

TEST_CASE("step metrics stay a tensor until read; Learner::to(cpu) keeps the learner as it is",
          "[byol][train]") {
  TrainConfig train = tiny_train(5);
  train.probe_classes = 3;
  Learner a(tiny_network(), train), b(tiny_network(), train);
  b.to(Device::cpu());  // already there: nothing changes
  CHECK(b.device() == Device::cpu());
  std::mt19937_64 gen(17);
  const Tensor v1 = Tensor::randn({4, 8, 8, 3}, gen), v2 = Tensor::randn({4, 8, 8, 3}, gen);
  const Tensor labels = Tensor::from_vector<int64_t>({0, 2, 1, 2}, {4});
  const StepMetrics ma = a.step(v1, v2, labels), mb = b.step(v1, v2, labels);
  REQUIRE(ma.values.shape() == Shape{4});
  CHECK(ma.values.device() == Device::cpu());
  CHECK(ma.probe_rows == 4);
  const StepValues va = ma.read(), vb = mb.read();
  CHECK(va.loss == vb.loss);
  CHECK(va.probe_loss == vb.probe_loss);
  CHECK(bitwise_equal(a.nets.online.params(), b.nets.online.params()));
  // The accuracy is the device count over the rows; the count is the probe's top-1 on this batch.
  const std::vector<float> raw = ma.values.to_vector<float>();
  CHECK(va.loss == double(raw[0]));
  CHECK(va.probe_loss == double(raw[1]));
  CHECK(va.probe_accuracy == double(raw[2]) / 4);
  CHECK(va.regression_loss == double(raw[3]));
  CHECK(va.regression_loss == va.loss);  // beta 0: the loss is the regression loss
  CHECK(raw[2] == std::round(raw[2]));
  // Without labels the probe is skipped and its entries stay 0.
  const StepMetrics no_probe = a.step(v1, v2);
  CHECK(no_probe.probe_rows == 0);
  CHECK(no_probe.read().probe_accuracy == 0.0);
  CHECK(no_probe.read().probe_loss == 0.0);
  CHECK_THROWS_WITH(StepMetrics{}.read(), Contains("StepMetrics::read(): no step values"));
}

namespace {
// The CPU twin of test_cuda.cpp's TwinRanks: rank 0 of 2, the other rank holding the same values, so
// every sum is twice this rank's. It checks the premise that [cuda][nccl] test rests on: with the same
// batch on both ranks, a data-parallel step equals the one-rank step.
class CpuTwinRanks final : public comm::Communicator {
 public:
  const char* backend() const override { return "twin ranks"; }
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  void all_reduce_sum(const Tensor& t) override {
    if (t.dtype() == DType::f64)
      for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] *= 2;
    else
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] *= 2;
  }
  std::unique_ptr<comm::Request> all_reduce_sum_async(const Tensor& t) override {
    all_reduce_sum(t);
    return comm::NoneCommunicator().all_reduce_sum_async(t);
  }
  void broadcast(const Tensor&, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message) override {
    FAIL(message);
    std::abort();
  }
};

// |a - b| / |b| over the whole tensor (as the MPI tests measure).
double max_rel_gap(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  double d = 0, n = 0;
  for (size_t i = 0; i < x.size(); ++i)
    d += (double(x[i]) - y[i]) * (double(x[i]) - y[i]), n += double(y[i]) * y[i];
  return std::sqrt(d / std::max(n, 1e-30));
}
}  // namespace

TEST_CASE("data parallel over two identical ranks takes the one-rank step (the premise of the GPU twin test)",
          "[byol][sync]") {
  CpuTwinRanks twins;
  Learner plain(tiny_network(), tiny_train(1)), twin(tiny_network(), tiny_train(1));
  DataParallel dp(twin, twins, {size_t(1) << 10, true});
  CHECK(dp.bucket_count() > 3);
  std::mt19937_64 gen(5);
  for (int step = 0; step < 3; ++step) {
    const Tensor v1 = Tensor::randn({4, 8, 8, 3}, gen), v2 = Tensor::randn({4, 8, 8, 3}, gen);
    const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 1}, {4});
    const StepValues p = plain.step(v1, v2, labels).read();
    const StepValues t = dp.mean_over_ranks(twin.step(v1, v2, labels));
    INFO("step " << step);
    // The synced batch norm adds its partial sums in another order than the one-rank batch norm: the two
    // differ by rounding, which the tiny network's steps (lr 2) amplify. The MPI tests' bounds.
    CHECK(t.loss == Approx(p.loss).epsilon(1e-5));
    CHECK(max_rel_gap(twin.nets.online.grads(), plain.nets.online.grads()) < 1e-4);
    CHECK(max_rel_gap(twin.nets.online.params(), plain.nets.online.params()) < 1e-5);
    CHECK(max_rel_gap(twin.nets.target.params(), plain.nets.target.params()) < 1e-5);
    CHECK(max_rel_gap(twin.nets.online.stats(), plain.nets.online.stats()) < 1e-5);
    CHECK(max_rel_gap(twin.probe_params.params(), plain.probe_params.params()) < 1e-5);
  }
}

TEST_CASE("the launcher's environment: rank, world size and a local rank for each launcher", "[sync]") {
  const char* const names[] = {"OMPI_COMM_WORLD_RANK",
                               "OMPI_COMM_WORLD_SIZE",
                               "OMPI_COMM_WORLD_LOCAL_RANK",
                               "PMI_RANK",
                               "PMI_SIZE",
                               "MPI_LOCALRANKID",
                               "SLURM_PROCID",
                               "SLURM_NTASKS",
                               "SLURM_LOCALID",
                               "RANK",
                               "WORLD_SIZE",
                               "LOCAL_RANK"};
  struct Saved {  // the variables as they were, restored at the end whatever happens
    std::vector<std::pair<std::string, std::optional<std::string>>> vars;
    ~Saved() {
      for (const auto& [name, value] : vars)
        value ? setenv(name.c_str(), value->c_str(), 1) : unsetenv(name.c_str());
    }
  } saved;
  for (const char* n : names) {
    const char* v = std::getenv(n);
    saved.vars.emplace_back(n, v ? std::optional<std::string>(v) : std::nullopt);
    unsetenv(n);
  }
  const comm::DistEnv none = comm::detect_environment();
  CHECK((none.rank == 0 && none.world_size == 1 && none.local_rank == 0 && !none.launched_by_mpi));

  setenv("OMPI_COMM_WORLD_RANK", "5", 1);
  setenv("OMPI_COMM_WORLD_SIZE", "8", 1);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
  comm::DistEnv e = comm::detect_environment();
  CHECK((e.rank == 5 && e.world_size == 8 && e.local_rank == 1 && e.launched_by_mpi));
  for (const char* n : names) unsetenv(n);

  // srun --mpi=pmi2: PMI's rank and size, Slurm's local rank (Hydra's MPI_LOCALRANKID is not set)
  setenv("PMI_RANK", "6", 1);
  setenv("PMI_SIZE", "8", 1);
  setenv("SLURM_PROCID", "6", 1);
  setenv("SLURM_NTASKS", "8", 1);
  setenv("SLURM_LOCALID", "2", 1);
  e = comm::detect_environment();
  CHECK((e.rank == 6 && e.world_size == 8 && e.local_rank == 2 && e.launched_by_mpi));
  for (const char* n : names) unsetenv(n);

  // no local rank anywhere: the rank itself (one node)
  setenv("PMI_RANK", "3", 1);
  setenv("PMI_SIZE", "4", 1);
  e = comm::detect_environment();
  CHECK((e.rank == 3 && e.world_size == 4 && e.local_rank == 3));
  for (const char* n : names) unsetenv(n);

  setenv("RANK", "2", 1);
  setenv("WORLD_SIZE", "2", 1);
  CHECK_THROWS_WITH(comm::detect_environment(), Contains("rank 2 is not below the world size 2"));
}
