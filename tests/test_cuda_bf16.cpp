// bf16 activations on the GPU (train.precision = "bf16" there: models::bf16_activations_by_default) against
// the CPU backend's bf16 path, which test_bf16_activations.cpp ties to float32 (each stored value the float32
// result rounded once).
//
// [cuda] (skipped without a GPU), each op forward and backward from the same bf16 inputs:
//  - max pool, global average pool, relu, add: the same float math in the same order, so bitwise equal;
//  - batch norm (plain, fused with ReLU and the shortcut; training in two groups, evaluation): the GPU's
//    statistics come from fp32 partial sums merged in double, the CPU's from double sums, so the float
//    results differ in the last bits and an element near a bf16 rounding boundary may round the other way:
//    at most one bf16 step (2^-8 relative) for a few elements. Bound 1e-3 on the relative norm of the
//    difference (a wrong kernel is off by O(1));
//  - conv2d (cuDNN's bf16 kernels, float accumulation, on the tensor cores; the filter gradient comes back in
//    bf16; and the float32 fallback where cuDNN has no bf16 algorithm, forced): other summation orders and
//    algorithms, the weight gradient rounded to bf16 once more. Bound 1e-2, the float32 TF32 test's;
//  - a whole BYOL step with precision bf16 on the GPU against the CPU's step with bf16 activations: the two
//    differ by roundings that flip, which is less than bf16 itself changes the step; the bound is twice the
//    CPU's own bf16-vs-fp32 difference for each quantity, at least 1e-3 (printed for the GPU run's log). TF32
//    off and one pass for both views on all three learners, so the heads and batch-norm groups agree.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <random>
#include <vector>

#include "byol/learner.h"
#include "engine/ops.h"
#include "tests/tiny_byol.h"
#if BYOL_WITH_CUDA
#include "engine/cuda/conv_cudnn.h"
#include "tests/cuda_test_helpers.h"
#endif

using namespace byol;
using byol::test_util::tiny_network;

namespace {

const Device kGpuDevice = Device::cuda();

// ||a - b|| / ||b|| over float32 copies on the host.
double rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<float> va = a.to(Device::cpu()).to(DType::f32).to_vector<float>(),
                           vb = b.to(Device::cpu()).to(DType::f32).to_vector<float>();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    diff += (double(va[i]) - vb[i]) * (double(va[i]) - vb[i]);
    norm += double(vb[i]) * vb[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.to(Device::cpu()).to(DType::f32).to_vector<float>() ==
         b.to(Device::cpu()).to(DType::f32).to_vector<float>();
}

// f(inputs) on `device`, backward with dy; returns the output and the inputs' gradients (on the CPU).
// Inputs that are float32 stay float32 (weights, gamma, beta); bf16 ones are the activations.
std::vector<Tensor> run(Device device, const std::vector<Tensor>& inputs,
                        const std::function<Tensor(const std::vector<Tensor>&)>& f, uint64_t seed) {
  std::vector<Tensor> in;
  for (const Tensor& t : inputs) {
    // A copy on either side (to() returns the tensor itself on its own device, and the gradients would pile
    // up on the caller's tensors from one call to the next).
    Tensor c = device.is_cpu() ? t.clone() : t.to(device);
    c.set_requires_grad(true);
    in.push_back(c);
  }
  const Tensor y = f(in);
  std::mt19937_64 gen(seed);
  const Tensor dy = Tensor::randn(y.shape(), gen).to(y.dtype()).to(device);
  y.backward(dy);
  std::vector<Tensor> out{y.to(Device::cpu())};
  for (const Tensor& t : in) out.push_back(t.grad().to(Device::cpu()));
  return out;
}

void compare(const char* what, const std::vector<Tensor>& inputs,
             const std::function<Tensor(const std::vector<Tensor>&)>& f, double bound) {
  const std::vector<Tensor> c = run(Device::cpu(), inputs, f, 5), g = run(kGpuDevice, inputs, f, 5);
  REQUIRE(c[0].dtype() == DType::bf16);
  REQUIRE(g[0].dtype() == DType::bf16);
  const char* names[] = {"output", "gradient 0", "gradient 1", "gradient 2", "gradient 3"};
  for (size_t i = 0; i < c.size(); ++i) {
    INFO(what << ", " << names[i] << ": relative difference " << rel_diff(g[i], c[i]) << ", bound " << bound);
    REQUIRE(g[i].dtype() == c[i].dtype());
    if (bound == 0)
      CHECK(same_bits(g[i], c[i]));
    else
      CHECK(rel_diff(g[i], c[i]) <= bound);
  }
}

// cuda::force_bf16_conv_fallback where the build has the CUDA backend (these tests run only there), for
// one scope: a failing REQUIRE inside must not leave the later tests on the fallback.
class ForcedConvFallback {
 public:
  explicit ForcedConvFallback([[maybe_unused]] bool on) {
#if BYOL_WITH_CUDA
    cuda::force_bf16_conv_fallback(on);
#endif
  }
  ~ForcedConvFallback() {
#if BYOL_WITH_CUDA
    cuda::force_bf16_conv_fallback(false);
#endif
  }
  ForcedConvFallback(const ForcedConvFallback&) = delete;
  ForcedConvFallback& operator=(const ForcedConvFallback&) = delete;
};

Tensor bf16_randn(const Shape& s, std::mt19937_64& gen, double mean = 0, double sd = 1) {
  return Tensor::randn(s, gen, DType::f32, mean, sd).to(DType::bf16);
}

}  // namespace

TEST_CASE("[cuda] bf16 activations: pooling, relu and add on the GPU equal the CPU's bitwise",
          "[cuda][cuda-kernels][bf16]") {
  std::mt19937_64 gen(41);
  for (Shape s : {Shape{2, 7, 9, 3}, Shape{3, 8, 8, 33}, Shape{2, 9, 7, 16}}) {  // C = 16: packs of 8 bf16
    const Tensor x = bf16_randn(s, gen);
    compare(
        "max_pool2d 3x3/2", {x},
        [](const std::vector<Tensor>& in) { return ops::max_pool2d(in[0], 3, 2, 1); }, 0);
    compare(
        "global_avg_pool", {x}, [](const std::vector<Tensor>& in) { return ops::global_avg_pool(in[0]); }, 0);
    compare(
        "add(relu(x), x)", {x},
        [](const std::vector<Tensor>& in) { return ops::add(ops::relu(in[0]), in[0]); }, 0);
  }
}

TEST_CASE("[cuda] bf16 activations: batch norm on the GPU matches the CPU's bf16 path",
          "[cuda][cuda-kernels][bf16]") {
  std::mt19937_64 gen(43);
  // C = 8, 64, 264 in packs of 8 bf16 (264: two tiles of 256 channels, the second partly filled); [65600, 8]:
  // several rows per thread in the reductions and two turns of the elementwise passes' row loop
  for (Shape s :
       {Shape{4, 5, 3, 8}, Shape{2, 9, 9, 33}, Shape{4, 6, 5, 64}, Shape{40, 264}, Shape{65600, 8}}) {
    const int64_t C = s.back();
    const Tensor x = bf16_randn(s, gen, 3.0, 2.0), r = bf16_randn(s, gen);
    const Tensor gamma = Tensor::randn({C}, gen, DType::f32, 1.0, 0.2), beta = Tensor::randn({C}, gen);
    for (bool training : {true, false}) {
      ops::BatchNormOptions opt;
      opt.training = training;
      opt.groups = 2;
      // Running statistics on each side's device, compared after the forward passes.
      Tensor rm_c = Tensor::zeros({C}), rv_c = Tensor::full({C}, 1.5);
      Tensor rm_g = rm_c.to(kGpuDevice), rv_g = rv_c.to(kGpuDevice);
      const char* mode = training ? "training" : "evaluation";
      compare(
          mode, {x, gamma, beta, r},
          [&](const std::vector<Tensor>& in) {
            const bool gpu = in[0].device().is_cuda();
            return ops::batch_norm_relu(in[0], in[1], in[2], gpu ? rm_g : rm_c, gpu ? rv_g : rv_c, opt,
                                        in[3]);
          },
          1e-3);
      CHECK(rel_diff(rm_g, rm_c) < 1e-5);
      CHECK(rel_diff(rv_g, rv_c) < 1e-5);
      compare(
          mode, {x, gamma, beta},
          [&](const std::vector<Tensor>& in) {
            const bool gpu = in[0].device().is_cuda();
            return ops::batch_norm(in[0], in[1], in[2], gpu ? rm_g : rm_c, gpu ? rv_g : rv_c, opt);
          },
          1e-3);
    }
  }
}

TEST_CASE("[cuda] bf16 activations: cuDNN's bf16 convolutions match the CPU's bf16 path", "[cuda][bf16]") {
  std::mt19937_64 gen(47);
  struct Case {
    Shape x, w;
    int stride, pad;
  };
  // cuDNN's bf16 kernels, and the float32 fallback on widened copies that runs where cuDNN has none (forced
  // here, so the GPU run checks it too).
  for (bool fallback : {false, true}) {
    const ForcedConvFallback forced(fallback);
    for (const Case& c :
         {Case{{2, 9, 9, 16}, {32, 3, 3, 16}, 1, 1}, Case{{2, 8, 8, 16}, {32, 1, 1, 16}, 2, 0},
          Case{{2, 15, 13, 3}, {16, 7, 7, 3}, 2, 3}, Case{{4, 4, 4, 64}, {64, 3, 3, 64}, 1, 1}}) {
      INFO("x " << shape_str(c.x) << " w " << shape_str(c.w) << (fallback ? ", float32 fallback" : ""));
      compare(
          "conv2d", {bf16_randn(c.x, gen), Tensor::randn(c.w, gen, DType::f32, 0.0, 0.2)},
          [&](const std::vector<Tensor>& in) {
            return ops::conv2d(in[0], in[1], {c.stride, c.pad});
          },
          1e-2);
    }
  }
}

TEST_CASE("[cuda] precision bf16: a BYOL step on the GPU (bf16 activations) matches the CPU's",
          "[cuda][bf16]") {
#if BYOL_WITH_CUDA
  cuda_test::Tf32Guard tf32(false);  // the heads stay float32: no TF32 rounding on top of bf16's
#endif
  TrainConfig train = byol::test_util::tiny_train(3);
  train.batch_size = 8;
  // One pass for both views on every learner (the GPU's default; the CPU's is two): the same batch-norm
  // groups and summation shapes on all three.
  train.view_passes = TrainConfig::ViewPasses::one;
  TrainConfig bf = train;
  bf.precision = TrainConfig::Precision::bf16;
  bf.bf16_activations = true;  // the GPU's form, asked for on the CPU
  Learner fp32(tiny_network(), train), cpu(tiny_network(), bf), gpu(tiny_network(), bf);
  gpu.to(kGpuDevice);
  std::mt19937_64 gen(53);
  for (int step = 0; step < 2; ++step) {
    const Tensor v1 = Tensor::randn({8, 8, 8, 3}, gen), v2 = Tensor::randn({8, 8, 8, 3}, gen);
    const double l32 = fp32.step(v1, v2).read().loss, lc = cpu.step(v1, v2).read().loss,
                 lg = gpu.step(v1.to(kGpuDevice), v2.to(kGpuDevice)).read().loss;
    struct Gap {
      const char* name;
      double gpu_cpu, bf16_fp32;
    };
    const Gap gaps[] = {{"loss", std::abs(lg - lc) / std::abs(lc), std::abs(lc - l32) / std::abs(l32)},
                        {"online gradients", rel_diff(gpu.nets.online.grads(), cpu.nets.online.grads()),
                         rel_diff(cpu.nets.online.grads(), fp32.nets.online.grads())},
                        {"online weights", rel_diff(gpu.nets.online.params(), cpu.nets.online.params()),
                         rel_diff(cpu.nets.online.params(), fp32.nets.online.params())},
                        {"BN statistics", rel_diff(gpu.nets.online.stats(), cpu.nets.online.stats()),
                         rel_diff(cpu.nets.online.stats(), fp32.nets.online.stats())}};
    std::printf("[cuda bf16] step %d, GPU bf16 vs CPU bf16 (CPU bf16 vs CPU fp32):", step);
    for (const Gap& g : gaps) std::printf(" %s %.2e (%.2e)", g.name, g.gpu_cpu, g.bf16_fp32);
    std::printf("\n");
    for (const Gap& g : gaps) {
      INFO("step " << step << ", " << g.name << ": GPU vs CPU " << g.gpu_cpu << ", bf16 vs fp32 "
                   << g.bf16_fp32);
      // The floor: the loss is one signed number, so bf16 may leave it nearly unchanged by chance.
      CHECK(g.gpu_cpu <= std::max(2 * g.bf16_fp32, 1e-3));
    }
  }
}
