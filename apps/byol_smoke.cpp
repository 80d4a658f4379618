// byol-smoke: an end-to-end run of the engine until the BYOL apps exist. It trains a small
// convolutional classifier (conv-BN-ReLU-maxpool, conv-BN-ReLU, global average pool, linear) with
// softmax cross-entropy and SGD momentum on a procedural data set (oriented gratings, one orientation
// per class, random phase and noise), then reports held-out accuracy.
//
// It exercises what BYOL's trainer will: parameters as named views into one flat buffer, gradients
// accumulated into one flat gradient buffer by backward(), batch norm with running statistics in
// training and evaluation mode, and a single pass over the flat buffers for the optimizer.
//
//   byol-smoke [steps=150] [batch=64] [seed=1]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/ops.h"

using namespace byol;

namespace {

constexpr int64_t kSide = 16, kClasses = 8, kWidth = 16;

// Image i of class k: a grating at angle k * pi / kClasses, random phase and frequency, plus noise.
void make_batch(int64_t n, std::mt19937_64& gen, Tensor& images, Tensor& labels) {
  images = Tensor::empty({n, kSide, kSide, 3});
  labels = Tensor::empty({n}, DType::i64);
  std::uniform_int_distribution<int64_t> cls(0, kClasses - 1);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> noise(0.0, 0.3);
  float* px = images.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = cls(gen);
    labels.data<int64_t>()[i] = k;
    const double angle = M_PI * k / kClasses, phase = 2 * M_PI * u(gen), freq = 0.6 + 0.4 * u(gen);
    for (int64_t h = 0; h < kSide; ++h)
      for (int64_t w = 0; w < kSide; ++w) {
        const double v = std::sin(freq * (std::cos(angle) * w + std::sin(angle) * h) + phase);
        for (int64_t c = 0; c < 3; ++c) *px++ = static_cast<float>(v * (0.6 + 0.2 * c) + noise(gen));
      }
  }
}

struct Net {
  Tensor flat, grad_flat, stats_flat;  // parameters, gradients, BN running statistics
  Tensor conv1, bn1_g, bn1_b, conv2, bn2_g, bn2_b, fc_w, fc_b;
  Tensor bn1_mean, bn1_var, bn2_mean, bn2_var;

  explicit Net(std::mt19937_64& gen) {
    const Shape shapes[] = {{kWidth, 3, 3, 3},          {kWidth},     {kWidth},
                            {2 * kWidth, 3, 3, kWidth}, {2 * kWidth}, {2 * kWidth},
                            {kClasses, 2 * kWidth},     {kClasses}};
    int64_t total = 0;
    for (const Shape& s : shapes) total += shape_numel(s);
    flat = Tensor::zeros({total});
    grad_flat = Tensor::zeros({total});
    Tensor* views[] = {&conv1, &bn1_g, &bn1_b, &conv2, &bn2_g, &bn2_b, &fc_w, &fc_b};
    const char* names[] = {"conv1.weight", "bn1.weight", "bn1.bias",  "conv2.weight",
                           "bn2.weight",   "bn2.bias",   "fc.weight", "fc.bias"};
    int64_t at = 0;
    for (int i = 0; i < 8; ++i) {
      *views[i] = flat.window(at, shapes[i]).set_name(names[i]).set_requires_grad(true);
      views[i]->set_grad(grad_flat.window(at, shapes[i]));
      at += shape_numel(shapes[i]);
    }
    // He-normal convolutions, small linear layer, BN scale 1 shift 0.
    conv1.copy_(Tensor::randn(conv1.shape(), gen, DType::f32, 0.0, std::sqrt(2.0 / 27)));
    conv2.copy_(Tensor::randn(conv2.shape(), gen, DType::f32, 0.0, std::sqrt(2.0 / (9 * kWidth))));
    fc_w.copy_(Tensor::randn(fc_w.shape(), gen, DType::f32, 0.0, 0.1));
    bn1_g.fill_(1.0);
    bn2_g.fill_(1.0);
    stats_flat = Tensor::zeros({6 * kWidth});
    bn1_mean = stats_flat.window(0, {kWidth});
    bn1_var = stats_flat.window(kWidth, {kWidth});
    bn2_mean = stats_flat.window(2 * kWidth, {2 * kWidth});
    bn2_var = stats_flat.window(4 * kWidth, {2 * kWidth});
    bn1_var.fill_(1.0);
    bn2_var.fill_(1.0);
  }

  Tensor forward(const Tensor& x, bool training) const {
    ops::BatchNormOptions bn;
    bn.training = training;
    Tensor h = ops::conv2d(x, conv1, {1, 1});
    h = ops::max_pool2d(ops::relu(ops::batch_norm(h, bn1_g, bn1_b, bn1_mean, bn1_var, bn)), 3, 2, 1);
    h = ops::relu(ops::batch_norm(ops::conv2d(h, conv2, {2, 1}), bn2_g, bn2_b, bn2_mean, bn2_var, bn));
    return ops::linear(ops::global_avg_pool(h), fc_w, fc_b);
  }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    auto arg = [&](int i, long def) {
      if (argc <= i) return def;
      char* end = nullptr;
      long v = std::strtol(argv[i], &end, 10);
      BYOL_CHECK(end && *end == '\0' && v > 0, "byol-smoke: argument ", i, " ('", argv[i],
                 "') must be a positive integer; usage: byol-smoke [steps] [batch] [seed]");
      return v;
    };
    const long steps = arg(1, 150), batch = arg(2, 64), seed = arg(3, 1);
    std::mt19937_64 gen(seed);
    Net net(gen);
    Tensor momentum = Tensor::zeros(net.flat.shape());
    const double lr = 0.1, mu = 0.9;
    std::printf("byol-smoke: %ld steps of batch %ld, %lld parameters in one flat buffer\n", steps, batch,
                static_cast<long long>(net.flat.numel()));
    auto t0 = std::chrono::steady_clock::now();
    for (long step = 1; step <= steps; ++step) {
      Tensor x, y;
      make_batch(batch, gen, x, y);
      net.grad_flat.zero_();
      Tensor loss = ops::softmax_cross_entropy(net.forward(x, true), y);
      loss.backward();
      // SGD with momentum: one pass over the flat buffers.
      float* p = net.flat.data<float>();
      float* g = net.grad_flat.data<float>();
      float* m = momentum.data<float>();
      for (int64_t i = 0; i < net.flat.numel(); ++i) {
        m[i] = static_cast<float>(mu * m[i] + g[i]);
        p[i] -= static_cast<float>(lr * m[i]);
      }
      BYOL_CHECK(std::isfinite(loss.item()), "byol-smoke: loss became ", loss.item(), " at step ", step);
      if (step % 25 == 0 || step == 1) std::printf("step %4ld  loss %.4f\n", step, loss.item());
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    NoGradGuard no_grad;
    Tensor x, y;
    make_batch(1000, gen, x, y);
    Tensor logits = net.forward(x, false);
    int64_t correct = 0;
    for (int64_t i = 0; i < 1000; ++i) {
      const float* row = logits.data<float>() + i * kClasses;
      correct += std::max_element(row, row + kClasses) - row == y.data<int64_t>()[i];
    }
    std::printf("held-out accuracy %.1f%% (chance %.1f%%), %.0f images/s training\n", correct / 10.0,
                100.0 / kClasses, steps * batch / secs);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
