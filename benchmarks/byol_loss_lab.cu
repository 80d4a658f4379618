// Kernel lab: BYOL's regression loss (both symmetric terms), forward and backward — the shipping kernels
// of engine/cuda/byol_loss.cu, validated against the CPU backend, then timed.
//
//   build: cmake --build build-cuda --target byol_loss_lab
//   run:   build-cuda/benchmarks/byol_loss_lab [N D] [--json FILE]
//          (default 4096 256: a per-GPU batch, projection 256)
//
// Versions:
//   1. one warp per row, both terms in one launch, fp32 dot products, the batch mean by the last block
//      (deterministic), its partials added by one thread; backward one launch, gradient scalar read on the
//      device. The forward took 0.026 ms at the default size, 15.8 % of the copy bandwidth (H200,
//      2026-12-04). Its forward is kept here (a copy) and timed next to version 2.
//   2. shipping: the forward's partials added by the last block's 256 threads (engine/cuda/grid_sum.cuh);
//      the backward unchanged.
// Bytes counted: forward reads p1, z2, p2, z1 (4 N D floats); backward reads them twice and writes four
// gradients (12 N D floats; the second read mostly hits L1/L2, so the GB/s is a lower bound).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "benchmarks/lab_main.h"
#include "engine/cuda/byol_loss.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/launch.h"
#include "engine/cuda/timing.h"
#include "engine/math/byol_loss.h"
#include "engine/ops.h"

using namespace byol;

namespace {

// Version 1's forward (engine/cuda/byol_loss.cu and grid_sum.cuh until 2026-12-05), kept for its timing.
__device__ double v1_cosine_loss_row(const float* p, const float* z, int64_t D, int lane) {
  float pp = 0, zz = 0, pz = 0;
  for (int64_t k = lane; k < D; k += kernels::kWarp) {
    pp += p[k] * p[k];
    zz += z[k] * z[k];
    pz += p[k] * z[k];
  }
  return math::cosine_loss_row(kernels::warp_sum(pp), kernels::warp_sum(zz), kernels::warp_sum(pz));
}

__global__ void v1_byol_loss_forward_kernel(const float* p1, const float* z2, const float* p2,
                                            const float* z1, int64_t N, int64_t D, double* partials,
                                            unsigned* counter, float* loss) {
  const int lane = threadIdx.x % kernels::kWarp, warp = threadIdx.x / kernels::kWarp;
  double acc = 0;
  for (int64_t i = kernels::global_warp(); i < N; i += kernels::grid_warps()) {
    acc += v1_cosine_loss_row(p1 + i * D, z2 + i * D, D, lane);
    acc += v1_cosine_loss_row(p2 + i * D, z1 + i * D, D, lane);
  }
  __shared__ double warp_sums[kernels::kThreads / kernels::kWarp];
  __shared__ bool is_last;
  if (lane == 0) warp_sums[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x) / kernels::kWarp; ++w) s += warp_sums[w];
    partials[blockIdx.x] = s;
    __threadfence();
    is_last = atomicAdd(counter, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (is_last && threadIdx.x == 0) {  // one thread adds every partial in turn
    __threadfence();
    const volatile double* v = partials;
    double total = 0;
    for (unsigned b = 0; b < gridDim.x; ++b) total += v[b];
    loss[0] = static_cast<float>(total / static_cast<double>(N));
    *counter = 0;
  }
}

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
  // Version 1's forward, checked against version 2's loss (the same rows; only the order of the last sum
  // differs), then both timed. The copy reuses one zeroed scratch buffer, where the shipping launcher
  // allocates its scratch and zeroes the counter on every call: the comparison favours version 1.
  const unsigned blocks = kernels::grid_rows(N);
  Tensor scratch = Tensor::zeros({static_cast<int64_t>(blocks) + 1}, DType::f64, gpu);
  auto v1_forward = [&] {
    v1_byol_loss_forward_kernel<<<blocks, kernels::kThreads, 0, s>>>(
        p(0), p(1), p(2), p(3), N, D, scratch.data<double>(),
        reinterpret_cast<unsigned*>(scratch.data<double>() + blocks), loss.data<float>());
    BYOL_CUDA_CHECK_LAUNCH();
  };
  v1_forward();
  const double v1_loss = loss.item();
  forward();
  const double v2_loss = loss.item();
  const bool same = std::abs(v1_loss - v2_loss) <= 1e-6 * std::abs(v2_loss);
  report.validated("version 1 forward against version 2", same,
                   {{"v1_loss", v1_loss}, {"v2_loss", v2_loss}, {"tolerance", 1e-6}});
  std::printf("version 1 forward: loss %.9g, version 2 %.9g: %s\n", v1_loss, v2_loss, same ? "OK" : "FAILED");
  report.timing("v1 forward", cuda::time_on_compute_stream(v1_forward), 4 * bytes);
  report.timing("v2 forward", cuda::time_on_compute_stream(forward), 4 * bytes);
  report.timing("v1 backward", cuda::time_on_compute_stream(backward), 12 * bytes);
  return ok && same ? 0 : 1;
}

int main(int argc, char** argv) {
  return lab::lab_main(
      argc, argv, "byol_loss_lab",
      "byol_loss_lab [N D] [--json FILE]   (default 4096 256: a per-GPU batch, projection 256)", {0, 2}, run);
}
