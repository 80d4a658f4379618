// byol-minimal: BYOL from images to a trained encoder in one short file, on the CPU: the place to start
// reading (docs/byol.md walks through what each call does). It builds the networks, draws two augmented
// views of a batch of images, and calls Learner::step in a loop, printing the loss; byol-pretrain is the
// same loop with a parallel loader, checkpoints, evaluation, several devices and ranks.
//
//   byol-minimal [DATASET=synthetic:1024:10:32] [STEPS=100] [BATCH=64]
//
// DATASET is a spec of data/dataset.h, e.g. folder:data-local/cifar10/train (../shared/data/cifar10.tar.gz
// unpacked). The networks: ResNet-18 with the CIFAR stem at base width 16, projector and predictor
// 512 -> 128; the recipe: LARS at base lr 1.0, weight decay 1e-6, tau_base 0.99, 10 % warmup.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "byol/learner.h"
#include "data/augment.h"
#include "data/dataset.h"

using namespace byol;

int main(int argc, char** argv) {
  const std::string spec = argc > 1 ? argv[1] : "synthetic:1024:10:32";
  const int64_t steps = argc > 2 ? std::atoll(argv[2]) : 100, batch = argc > 3 ? std::atoll(argv[3]) : 64;
  if (argc > 4 || steps < 1 || batch < 2) {
    std::fprintf(stderr, "usage: byol-minimal [DATASET=synthetic:1024:10:32] [STEPS=100] [BATCH>=2=64]\n");
    return 2;
  }
  try {
    const std::shared_ptr<data::Dataset> dataset = data::open_dataset(spec);
    const int side = 32;

    // The online network (encoder f, projector g, predictor q) and the target network (f', g').
    NetworkConfig net;
    net.encoder.depth = 18;
    net.encoder.stem = models::Stem::cifar;
    net.encoder.base_channels = 16;
    net.projector_hidden = 512, net.projection_dim = 128, net.predictor_hidden = 512;
    TrainConfig train;
    train.batch_size = batch;
    train.total_steps = steps;
    train.warmup_steps = steps / 10;
    train.base_lr = 1.0, train.weight_decay = 1e-6, train.tau_base = 0.99;
    train.copy_target_init = true;  // the target starts as a copy of the online network
    Learner learner(net, train);
    std::printf("byol-minimal: %s; ResNet-18 (CIFAR stem, base 16), %lld parameters; %lld steps of %lld\n",
                dataset->describe().c_str(), static_cast<long long>(learner.nets.online.param_count()),
                static_cast<long long>(steps), static_cast<long long>(batch));

    // The two views of the paper's augmentation (table 6): view 1 always blurred, view 2 rarely blurred
    // and sometimes solarized, both cropped, flipped, colour-jittered and sometimes greyed.
    data::AugmentOptions augment = data::AugmentOptions::byol(side, data::Normalization::imagenet());
    for (data::ViewOptions& v : augment.views)
      v.jitter_style = data::JitterStyle::torchvision;  // as byol-pretrain
    std::mt19937_64 gen(1);
    std::vector<uint8_t> scratch;
    data::AugmentWorkspace ws;
    // [byol:minimal-loop]
    for (int64_t step = 0; step < steps; ++step) {
      Tensor view1 = Tensor::empty({batch, side, side, 3}), view2 = Tensor::empty({batch, side, side, 3});
      for (int64_t i = 0; i < batch; ++i) {
        const int64_t index = std::uniform_int_distribution<int64_t>(0, dataset->size() - 1)(gen);
        const data::ImageView image = dataset->image(index, scratch);
        Tensor* views[2] = {&view1, &view2};
        for (int v = 0; v < 2; ++v) {
          const data::AugmentParams p =
              data::sample_view(augment.views[v], image.height, image.width, side, side, gen);
          data::apply_view(image, p, side, side, augment.normalization,
                           views[v]->data<float>() + i * side * side * 3, ws);
        }
      }
      // One BYOL step: both networks on both views, the symmetric loss, backward, LARS, then the EMA.
      const StepMetrics m = learner.step(view1, view2);
      if (step % 10 == 0 || step + 1 == steps)
        std::printf("step %4lld  loss %.4f  lr %.4f  tau %.5f\n", static_cast<long long>(step), m.read().loss,
                    m.lr, m.tau);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "byol-minimal: error: %s\n", e.what());
    return 1;
  }
}
