// Recorded view streams, to bisect a training difference between byol.cpp and the PyTorch reference
// (tests/reference/byol_train.py): either side can train on the views the other one made.
//
//   byol_views record DATASET OUT.safetensors STEPS BATCH SIDE SEED [official|torchvision [AREA [STRENGTH]]]
//       runs byol.cpp's loader (BYOL's two view distributions, the given colour-jitter convention, crops of
//       at least AREA of the image (0.08), jitter strengths scaled by STRENGTH (1), ImageNet mean/std) for
//       STEPS batches and writes view1, view2 as u8 [STEPS, BATCH, SIDE, SIDE, 3] (the
//       normalisation undone and rounded to 1/255, the precision of a decoded image)
//   byol_views train VIEWS.safetensors ENCODER.safetensors STEPS SEED copy|random [BASE HIDDEN DIM]
//       trains byol.cpp's Learner on the first STEPS batches of a recorded stream with the recipe of
//       docs/results.md (ResNet-18 CIFAR stem, base lr 1.0, weight decay 1e-6, tau_base 0.99, 10 % warmup)
//       and exports the online encoder (torchvision names) for byol_train.py --eval-encoder; STEPS = 0
//       exports the initial encoder (the random-init baseline of the same draw)
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <string>

#include "byol/checkpoint.h"
#include "byol/learner.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "engine/io/safetensors.h"

namespace {

using namespace byol;

int record(int argc, char** argv) {
  BYOL_CHECK(argc >= 8 && argc <= 11, "usage: byol_views record DATASET OUT.safetensors STEPS BATCH SIDE SEED "
                                      "[official|torchvision [CROP_AREA_MIN [JITTER_STRENGTH]]]");
  const std::string spec = argv[2], out = argv[3];
  const int64_t steps = std::atoll(argv[4]), batch = std::atoll(argv[5]);
  const int side = std::atoi(argv[6]);
  const uint64_t seed = std::strtoull(argv[7], nullptr, 10);
  const std::string jitter = argc >= 9 ? argv[8] : "official";
  const double area_min = argc >= 10 ? std::atof(argv[9]) : 0.08;
  const double strength = argc >= 11 ? std::atof(argv[10]) : 1.0;
  BYOL_CHECK(area_min > 0 && area_min <= 1 && strength >= 0 && strength <= 2.5,
             "CROP_AREA_MIN: expected (0, 1], JITTER_STRENGTH: expected [0, 2.5], got ", area_min, " and ", strength);
  const data::Normalization norm = data::Normalization::imagenet();
  data::AugmentOptions aug = data::AugmentOptions::byol(side, norm);
  for (data::ViewOptions& v : aug.views) {
    v.jitter_style = data::parse_jitter_style(jitter);
    v.area_min = area_min;
    v.brightness *= strength, v.contrast *= strength, v.saturation *= strength;
    v.hue = std::min(0.5, v.hue * strength);
  }
  data::LoaderOptions lo;
  lo.batch_size = batch;
  lo.seed = seed;
  data::Loader loader(data::open_dataset(spec), aug, lo);
  const int64_t plane = int64_t(side) * side * 3;
  Tensor v[2] = {Tensor::empty({steps, batch, side, side, 3}, DType::u8),
                 Tensor::empty({steps, batch, side, side, 3}, DType::u8)};
  int64_t step = 0;
  for (int64_t epoch = 0; step < steps; ++epoch) {
    loader.start_epoch(epoch);
    while (step < steps) {
      std::optional<data::Batch> b = loader.next();
      if (!b) break;
      for (int k = 0; k < 2; ++k) {
        const float* src = b->views[k].data<float>();
        uint8_t* dst = v[k].data<uint8_t>() + step * batch * plane;
        for (int64_t i = 0; i < batch * plane; ++i) {
          const int c = static_cast<int>(i % 3);
          const float x = src[i] * norm.std[c] + norm.mean[c];
          dst[i] = static_cast<uint8_t>(std::lround(std::min(1.0f, std::max(0.0f, x)) * 255.0f));
        }
      }
      ++step;
    }
  }
  save_safetensors(out, {{"view1", v[0]}, {"view2", v[1]}},
                   {{"steps", std::to_string(steps)}, {"batch", std::to_string(batch)}, {"jitter", jitter},
                    {"seed", std::to_string(seed)}, {"crop_area_min", std::to_string(area_min)},
                    {"jitter_strength", std::to_string(strength)}, {"source", "byol.cpp loader " + spec}});
  std::printf("byol_views: recorded %lld batches of %lld view pairs from %s into %s\n",
              static_cast<long long>(steps), static_cast<long long>(batch), spec.c_str(), out.c_str());
  return 0;
}

int train(int argc, char** argv) {
  BYOL_CHECK(argc == 7 || argc == 10,
             "usage: byol_views train VIEWS.safetensors ENCODER.safetensors STEPS SEED copy|random "
             "[BASE HIDDEN DIM]");
  const SafetensorsFile views = load_safetensors(argv[2]);
  const std::string encoder_out = argv[3];
  const int64_t steps = std::atoll(argv[4]);
  const std::string target_init = argv[6];
  BYOL_CHECK(target_init == "copy" || target_init == "random", "target init: expected copy or random, got '",
             target_init, "'");
  const Tensor& v1 = views.get("view1");
  const Tensor& v2 = views.get("view2");
  BYOL_CHECK(steps >= 0, "STEPS: expected >= 0 (0 exports the initial encoder), got ", steps);
  BYOL_CHECK(v1.dtype() == DType::u8 && v1.dim() == 5 && v1.shape() == v2.shape() && v1.size(0) >= steps,
             argv[2], ": expected view1, view2 u8 [>= ", steps, ", batch, side, side, 3], got ", v1.describe(),
             " and ", v2.describe());
  NetworkConfig net;
  net.encoder.depth = 18;
  net.encoder.stem = models::Stem::cifar;
  net.encoder.base_channels = argc == 10 ? std::atoll(argv[7]) : 16;
  net.projector_hidden = net.predictor_hidden = argc == 10 ? std::atoll(argv[8]) : 1024;
  net.projection_dim = argc == 10 ? std::atoll(argv[9]) : 128;
  TrainConfig t;
  t.batch_size = v1.size(1);
  t.total_steps = std::max<int64_t>(steps, 1);
  t.warmup_steps = static_cast<int64_t>(std::llround(0.1 * static_cast<double>(steps)));
  t.base_lr = 1.0;
  t.weight_decay = 1e-6;
  t.tau_base = 0.99;
  t.seed = std::strtoull(argv[5], nullptr, 10);
  t.copy_target_init = target_init == "copy";
  Learner learner(net, t);
  const data::Normalization norm = data::Normalization::imagenet();
  const Shape shape(v1.shape().begin() + 1, v1.shape().end());
  const int64_t per_step = v1.numel() / v1.size(0);
  auto normalised = [&](const Tensor& u8, int64_t s) {
    Tensor x = Tensor::empty(shape, DType::f32);
    const uint8_t* src = u8.data<uint8_t>() + s * per_step;
    float* dst = x.data<float>();
    for (int64_t i = 0; i < per_step; ++i) {
      const int c = static_cast<int>(i % 3);
      dst[i] = (static_cast<float>(src[i]) / 255.0f - norm.mean[c]) / norm.std[c];
    }
    return x;
  };
  for (int64_t s = 0; s < steps; ++s) {
    const StepMetrics m = learner.step(normalised(v1, s), normalised(v2, s));
    if ((s + 1) % 50 == 0 || s == 0)
      std::printf("step %lld: loss %.4f  lr %.4f  tau %.5f\n", static_cast<long long>(s + 1), m.read().loss, m.lr,
                  m.tau);
    std::fflush(stdout);
  }
  export_encoder(encoder_out, learner.nets.online, "encoder.", &net.encoder);
  std::printf("byol_views: trained %lld steps, wrote %s\n", static_cast<long long>(steps), encoder_out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "record") return record(argc, argv);
    if (cmd == "train") return train(argc, argv);
    std::fprintf(stderr, "usage: byol_views record|train ... (see tests/reference/byol_views.cpp)\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "byol_views: error: %s\n", e.what());
    return 1;
  }
}
