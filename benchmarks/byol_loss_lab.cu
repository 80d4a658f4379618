// Kernel lab: BYOL's regression loss (both symmetric terms), forward and backward — the shipping kernels
// of engine/cuda/byol_loss.cu, validated against the CPU backend, then timed.
//
//   build: cmake --build build-cuda --target byol_loss_lab
//   run:   build-cuda/benchmarks/byol_loss_lab [N D] [--json FILE]
//          (default 4096 256: a per-GPU batch, projection 256)
//
// Versions:
//   1. shipping: one warp per row, both terms in one launch, fp32 dot products, the batch mean by the
//      last block (deterministic); backward one launch, gradient scalar read on the device.
// Bytes counted: forward reads p1, z2, p2, z1 (4 N D floats); backward reads them twice and writes four
// gradients (12 N D floats; the second read mostly hits L1/L2, so the GB/s is a lower bound).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "benchmarks/lab_main.h"
#include "engine/cuda/byol_loss.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/timing.h"
#include "engine/ops.h"

using namespace byol;

namespace {

double rel_error(const Tensor& got, const Tensor& want) {
  const auto a = got.to_vector<float>(), b = want.to_vector<float>();
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    n += double(b[i]) * b[i];
  }
  return std::sqrt(d) / std::max(std::sqrt(n), 1e-30);
}

}  // namespace

int run(lab::Report& report, const std::vector<int64_t>& sizes) {
  const int64_t N = sizes.empty() ? 4096 : sizes[0], D = sizes.empty() ? 256 : sizes[1];
  report.options = {{"N", N}, {"D", D}};
  std::printf("byol_loss_lab: N = %lld rows, D = %lld\n", (long long)N, (long long)D);
  std::mt19937_64 gen(0);
  std::vector<Tensor> in;
  for (int i = 0; i < 4; ++i) in.push_back(Tensor::randn({N, D}, gen));

  // validation: loss and all four gradients through ops::byol_loss on both backends
  double worst = 0;
  {
    std::vector<Tensor> c, g;
    for (const Tensor& t : in) {
      c.push_back(t.clone().set_requires_grad(true));
      g.push_back(t.to(Device::cuda()).set_requires_grad(true));
    }
    Tensor lc = ops::byol_loss(c[0], c[1], c[2], c[3]), lg = ops::byol_loss(g[0], g[1], g[2], g[3]);
    worst = std::abs(lg.item() - lc.item()) / std::abs(lc.item());
    lc.backward();
    lg.backward();
    for (int i = 0; i < 4; ++i) worst = std::max(worst, rel_error(g[i].grad(), c[i].grad()));
  }
  const bool ok = worst < 1e-5;
  report.validated("loss and gradients", ok, {{"max_rel_error", worst}, {"tolerance", 1e-5}});
  std::printf("validation vs CPU: worst relative error %.2e (tolerance 1e-5): %s\n", worst,
              ok ? "OK" : "FAILED");
  lab::timing_anyway(ok);

  const Device gpu = Device::cuda();
  std::vector<Tensor> d, grads;
  for (const Tensor& t : in) {
    d.push_back(t.to(gpu));
    grads.push_back(Tensor::empty({N, D}, DType::f32, gpu));
  }
  Tensor loss = Tensor::empty({}, DType::f32, gpu), g = Tensor::full({}, 1.0, DType::f32, gpu);
  cudaStream_t s = cuda::compute_stream();
  auto p = [&](int i) { return d[i].data<float>(); };
  auto q = [&](int i) { return grads[i].data<float>(); };
  auto forward = [&] { kernels::byol_loss_forward(p(0), p(1), p(2), p(3), N, D, loss.data<float>(), s); };
  auto backward = [&] {
    kernels::byol_loss_backward(p(0), p(1), p(2), p(3), g.data<float>(), q(0), q(1), q(2), q(3), N, D, s);
  };
  report.measure_copy_bandwidth();
  const double bytes = static_cast<double>(N * D) * sizeof(float);
  report.timing("v1 forward", cuda::time_on_compute_stream(forward), 4 * bytes);
  report.timing("v1 backward", cuda::time_on_compute_stream(backward), 12 * bytes);
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  return lab::lab_main(
      argc, argv, "byol_loss_lab",
      "byol_loss_lab [N D] [--json FILE]   (default 4096 256: a per-GPU batch, projection 256)", {0, 2}, run);
}
