// End-to-end BYOL step benchmark on the CPU: ResNet-18 with the CIFAR stem, projector and predictor at
// the paper's sizes (4096 hidden, 256 out), two 32x32 views per image. One step = online forward and
// backward of both views, target forward of both views, the loss, LARS and the EMA.
//
//   build/benchmarks/byol_step_bench [batch=64] [steps=3] [base_channels=64] [side=32] [mlp_hidden=4096]
//   [stem=cifar|imagenet]
//
// Prints images/s (images, not views: each image is seen twice) after one warm-up step.
// benchmarks/run_step_bench.sh runs it next to the same step in PyTorch (benchmarks/reference/
// byol_step_torch.py) with the same thread count.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "byol/learner.h"

int main(int argc, char** argv) {
  using namespace byol;
  const int64_t batch = argc > 1 ? std::atol(argv[1]) : 64;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 3;
  const int64_t base = argc > 3 ? std::atol(argv[3]) : 64;
  const int64_t side = argc > 4 ? std::atol(argv[4]) : 32;
  const int64_t hidden = argc > 5 ? std::atol(argv[5]) : 4096;
  const bool imagenet_stem = argc > 6 && std::string(argv[6]) == "imagenet";
  NetworkConfig net;
  net.encoder.depth = 18;
  net.encoder.stem = imagenet_stem ? models::Stem::imagenet : models::Stem::cifar;
  net.encoder.base_channels = base;
  net.projector_hidden = net.predictor_hidden = hidden;
  TrainConfig train;
  train.batch_size = batch;
  train.total_steps = 1000;
  train.warmup_steps = 10;
  train.base_lr = 0.45;
  Learner learner(net, train);
  std::mt19937_64 gen(1);
  Tensor v1 = Tensor::randn({batch, side, side, 3}, gen), v2 = Tensor::randn({batch, side, side, 3}, gen);
  learner.step(v1, v2);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  double loss = 0;
  for (int i = 0; i < steps; ++i) loss = learner.step(v1, v2).loss;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
  std::printf(
      "byol.cpp  ResNet-18 %s stem (base %lld, %lldx%lld, MLP %lld), batch %lld, %d threads: %.3f s/step, "
      "%.1f images/s (loss %.4f)\n",
      imagenet_stem ? "ImageNet" : "CIFAR", static_cast<long long>(base), static_cast<long long>(side),
      static_cast<long long>(side), static_cast<long long>(hidden), static_cast<long long>(batch),
      omp_get_max_threads(), s, batch / s, loss);
  return 0;
}
