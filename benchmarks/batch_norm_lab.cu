// Kernel lab: batch norm over an [M, C] (NHWC) activation — the shipping kernels of
// engine/cuda/batch_norm.cu, validated against the CPU backend, then timed.
//
//   build: cmake --build build-cuda --target batch_norm_lab
//   run:   build-cuda/benchmarks/batch_norm_lab [N H W C] [--json FILE]
//          (default 128 28 28 256: a ResNet-50 stage-2 BN)
//
// Versions (add one by adding a case to `run_version`):
//   1. shipping: fp32 partial sums per (32-channel tile x row chunk) block, combined in double; then
//      statistics + running update, then one elementwise normalise pass. Backward: the two per-channel
//      sums the same way, then one dx pass.
//   2. fused epilogue (issue 18): the normalise pass also adds the residual and applies ReLU
//      (batch_norm_apply_relu, ops::batch_norm_relu), next to the three passes it replaces (normalise, add,
//      ReLU: kernels::add and relu_forward) timed in the same run.
//   3. bf16 activations (issue 17): the same kernels on bf16 rows (float math and parameters), validated
//      against the CPU's bf16 path; the same passes move half the bytes.
//   4. (2026-12-05) the elementwise passes (normalise, fused epilogue, dx) on a 2-D grid of
//      32-channel x 8-row blocks (launch.h's bn_rows_grid): each thread keeps its channel's values in
//      registers and strides over rows, instead of a 1-D grid-stride loop with a 64-bit `i % C` per element
//      (version 1's normalise pass is kept in this file and timed next to it).
//   5. (shipping) every pass over the rows, the reductions included, in packs of 16 bytes of channels per
//      thread (4 floats, 8 bf16; engine/cuda/pack.cuh) where C divides and the rows are aligned, on tiles
//      of 32 x V channels: 16-byte accesses, where a warp of version 4 moved 128 bytes of floats or 64 of
//      bf16 per load. Validated and timed next to version 4 (kernels::force_unpacked_batch_norm).
// Bytes counted: forward reads x twice and writes y (3 M C floats); backward reads dy and x twice and
// writes dx (5 M C floats); the fused normalise + add + ReLU pass reads x and the residual and writes y
// (3 M C floats), the unfused three passes (normalise, add, ReLU) move 2 + 3 + 2 = 7 M C floats. Validation
// runs ops::batch_norm and ops::batch_norm_relu (with a residual) on both backends, forward and backward.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "benchmarks/lab_main.h"
#include "engine/cuda/batch_norm.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/elementwise.cuh"
#include "engine/cuda/timing.h"
#include "engine/math/batch_norm.h"
#include "engine/ops.h"

using namespace byol;

namespace {

// Version 1's normalise pass, kept here to be timed next to the shipping one (version 4): a 1-D grid-stride
// loop with a 64-bit `i % C` per element. The first GPU run (H200) measured the forward with it at 48 % of
// the copy bandwidth.
__global__ void v1_apply_kernel(const float* __restrict__ x, const float* __restrict__ mean,
                                const float* __restrict__ invstd, const float* __restrict__ gamma,
                                const float* __restrict__ beta, float* __restrict__ y, int64_t M, int64_t C) {
  for (int64_t i = kernels::global_thread(); i < M * C; i += kernels::grid_threads()) {
    const int64_t c = i % C;
    y[i] = math::bn_normalize(x[i], mean[c], invstd[c], gamma[c], beta[c]);
  }
}

double rel_error(const Tensor& got, const Tensor& want) {
  const auto a = got.to(Device::cpu()).to(DType::f32).to_vector<float>(),
             b = want.to(Device::cpu()).to(DType::f32).to_vector<float>();
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    n += double(b[i]) * b[i];
  }
  return std::sqrt(d) / std::max(std::sqrt(n), 1e-30);
}

// fused: ops::batch_norm_relu with `residual`, else ops::batch_norm. Every gradient is compared: x, gamma,
// beta and (fused) the residual's, which is the ReLU-masked incoming gradient. bf16 x and residual: the bf16
// activations' kernels against the CPU's bf16 path (tolerance 1e-3: an element whose float result lies near
// a bf16 rounding boundary may round the other way, one bf16 step; tests/test_cuda_bf16.cpp).
bool validate(lab::Report& report, bool unpacked, const Tensor& x, const Tensor& gamma, const Tensor& beta,
              const Tensor& residual = Tensor()) {
  kernels::force_unpacked_batch_norm(unpacked);
  const bool fused = residual.defined(), bf16 = x.dtype() == DType::bf16;
  const double tolerance = bf16 ? 1e-3 : 2e-5;
  // The version under test must be the one that runs: packs wherever C divides into them.
  const Tensor probe = x.to(Device::cuda());
  const int64_t C = x.shape().back();
  const int per_thread = bf16 ? kernels::batch_norm_channels_per_thread(C, probe.data<byol::bf16>())
                              : kernels::batch_norm_channels_per_thread(C, probe.data<float>());
  const int pack = bf16 ? 8 : 4, want = unpacked || C % pack != 0 ? 1 : pack;
  struct Result {
    Tensor y, dx, dgamma, dbeta, dresidual;
  };
  auto run = [&](Device d) {
    Tensor xi = x.to(d), g = gamma.to(d), b = beta.to(d), r = fused ? residual.to(d) : Tensor();
    if (d.is_cpu()) xi = xi.clone(), g = g.clone(), b = b.clone(), r = fused ? r.clone() : r;
    xi.set_requires_grad(true);
    g.set_requires_grad(true);
    b.set_requires_grad(true);
    if (fused) r.set_requires_grad(true);
    Result out;
    out.y = fused ? ops::batch_norm_relu(xi, g, b, Tensor(), Tensor(), {}, r)
                  : ops::batch_norm(xi, g, b, Tensor(), Tensor());
    std::mt19937_64 gen(1);
    out.y.backward(Tensor::randn(x.shape(), gen).to(x.dtype()).to(d));
    out.dx = xi.grad(), out.dgamma = g.grad(), out.dbeta = b.grad();
    if (fused) out.dresidual = r.grad();
    return out;
  };
  const Result c = run(Device::cpu()), g = run(Device::cuda());
  std::vector<std::pair<const char*, double>> errors = {{"y", rel_error(g.y, c.y)},
                                                        {"dx", rel_error(g.dx, c.dx)},
                                                        {"dgamma", rel_error(g.dgamma, c.dgamma)},
                                                        {"dbeta", rel_error(g.dbeta, c.dbeta)}};
  if (fused) errors.push_back({"dresidual", rel_error(g.dresidual, c.dresidual)});
  // A pre-activation within rounding of 0 could take the ReLU's other side on the GPU (a channel's float mean
  // or invstd one ulp apart): one such element moves the fused gradients by about 3e-4. The float32 fused
  // check runs on a residual nudged away from those (nudged()); bf16's tolerance covers a flip.
  bool ok = per_thread == want;
  const std::string prefix =
      std::string(unpacked ? "v4 " : "") + (bf16 ? "bf16 " : "") + (fused ? "fused " : "");
  report.validated(prefix + "channels per thread", per_thread == want, {{"got", per_thread}, {"want", want}});
  std::printf("validation vs CPU, %d channel(s) per thread (want %d)%s%s:", per_thread, want,
              bf16 ? ", bf16 activations" : "", fused ? " (batch_norm_relu + residual)" : "");
  for (const auto& [name, e] : errors) {
    report.validated(prefix + name, e < tolerance, {{"rel_l2_error", e}, {"tolerance", tolerance}});
    std::printf(" %s %.2e", name, e);
    ok = ok && e < tolerance;
  }
  std::printf(" (tolerance %.0e): %s\n", tolerance, ok ? "OK" : "FAILED");
  kernels::force_unpacked_batch_norm(false);
  return ok;
}

// The residual, moved by 2e-4 wherever the CPU's pre-activation batch_norm(x) + residual lies within 1e-4
// of 0, so that no ReLU decision of the float32 fused check hangs on rounding.
Tensor nudged(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& residual) {
  const Tensor pre = ops::add(ops::batch_norm(x, gamma, beta, Tensor(), Tensor()), residual);
  Tensor r = residual.clone();
  const float* p = pre.data<float>();
  float* rp = r.data<float>();
  int64_t moved = 0;
  for (int64_t i = 0; i < r.numel(); ++i)
    if (std::abs(p[i]) < 1e-4f) rp[i] += p[i] < 0 ? -2e-4f : 2e-4f, ++moved;
  std::printf("(the float32 fused check: %lld of %lld residual values moved off a ReLU edge)\n",
              (long long)moved, (long long)r.numel());
  return r;
}

}  // namespace

int run(lab::Report& report, const std::vector<int64_t>& sizes) {
  const bool given = !sizes.empty();
  const int64_t N = given ? sizes[0] : 128, H = given ? sizes[1] : 28, W = given ? sizes[2] : 28,
                C = given ? sizes[3] : 256;
  const int64_t M = N * H * W;
  report.options = {{"N", N}, {"H", H}, {"W", W}, {"C", C}};
  std::printf("batch_norm_lab: x [%lld, %lld, %lld, %lld] (M = %lld rows, C = %lld)\n", (long long)N,
              (long long)H, (long long)W, (long long)C, (long long)M, (long long)C);
  std::mt19937_64 gen(0);
  const Tensor x = Tensor::randn({N, H, W, C}, gen, DType::f32, 1.0, 2.0);
  const Tensor gamma = Tensor::randn({C}, gen, DType::f32, 1.0, 0.1), beta = Tensor::randn({C}, gen);
  const Tensor residual = Tensor::randn({N, H, W, C}, gen);
  const Tensor fused_residual = nudged(x, gamma, beta, residual);
  bool valid = true;
  for (const bool unpacked : {false, true}) {  // the shipping packs (where C divides), then version 4
    const bool plain_ok = validate(report, unpacked, x, gamma, beta);
    const bool bf16_ok = validate(report, unpacked, x.to(DType::bf16), gamma, beta, residual.to(DType::bf16));
    const bool fused_ok = validate(report, unpacked, x, gamma, beta, fused_residual);
    valid = valid && plain_ok && bf16_ok && fused_ok;
  }
  lab::timing_anyway(valid);

  const Device gpu = Device::cuda();
  const Tensor dx_in = x.to(gpu), dgamma = gamma.to(gpu), dbeta = beta.to(gpu), ddy = x.to(gpu);
  Tensor y = Tensor::empty(x.shape(), DType::f32, gpu), dx = Tensor::empty(x.shape(), DType::f32, gpu);
  Tensor stats = Tensor::empty({2 * C + 1}, DType::f64, gpu), sums = Tensor::empty({2 * C}, DType::f64, gpu);
  Tensor mean = Tensor::empty({C}, DType::f32, gpu), invstd = Tensor::empty({C}, DType::f32, gpu);
  Tensor g_gamma = Tensor::empty({C}, DType::f32, gpu), g_beta = Tensor::empty({C}, DType::f32, gpu);
  Tensor rm = Tensor::zeros({C}, DType::f32, gpu), rv = Tensor::zeros({C}, DType::f32, gpu);
  cudaStream_t s = cuda::compute_stream();
  auto forward = [&] {
    kernels::batch_norm_partial_sums(dx_in.data<float>(), M, C, stats.data<double>(), s);
    kernels::batch_norm_stats(stats.data<double>(), C, 1e-5, 0.9, mean.data<float>(), invstd.data<float>(),
                              rm.data<float>(), rv.data<float>(), s);
    kernels::batch_norm_apply(dx_in.data<float>(), mean.data<float>(), invstd.data<float>(),
                              dgamma.data<float>(), dbeta.data<float>(), y.data<float>(), M, C, s);
  };
  auto backward = [&] {
    kernels::batch_norm_backward_sums(ddy.data<float>(), dx_in.data<float>(), mean.data<float>(),
                                      invstd.data<float>(), M, C, sums.data<double>(), g_beta.data<float>(),
                                      g_gamma.data<float>(), s);
    kernels::batch_norm_backward_dx(ddy.data<float>(), dx_in.data<float>(), mean.data<float>(),
                                    invstd.data<float>(), dgamma.data<float>(), sums.data<double>(),
                                    stats.data<double>(), dx.data<float>(), M, C, s);
  };
  report.measure_copy_bandwidth();
  const double elems = static_cast<double>(M * C) * sizeof(float);
  // The normalise pass alone: version 1's 1-D grid against the shipping 2-D grid (bn_rows_grid).
  auto normalise_v1 = [&] {
    v1_apply_kernel<<<kernels::grid_1d(M * C), kernels::kThreads, 0, s>>>(
        dx_in.data<float>(), mean.data<float>(), invstd.data<float>(), dgamma.data<float>(),
        dbeta.data<float>(), y.data<float>(), M, C);
  };
  auto normalise = [&] {
    kernels::batch_norm_apply(dx_in.data<float>(), mean.data<float>(), invstd.data<float>(),
                              dgamma.data<float>(), dbeta.data<float>(), y.data<float>(), M, C, s);
  };
  // The epilogue of a ResNet block after the statistics: fused (one pass) against normalise, add, ReLU.
  const Tensor dres = residual.to(gpu);
  Tensor h = Tensor::empty(x.shape(), DType::f32, gpu);
  auto fused = [&] {
    kernels::batch_norm_apply_relu(dx_in.data<float>(), mean.data<float>(), invstd.data<float>(),
                                   dgamma.data<float>(), dbeta.data<float>(), dres.data<float>(),
                                   y.data<float>(), M, C, s);
  };
  auto unfused = [&] {
    kernels::batch_norm_apply(dx_in.data<float>(), mean.data<float>(), invstd.data<float>(),
                              dgamma.data<float>(), dbeta.data<float>(), h.data<float>(), M, C, s);
    kernels::add(h.data<float>(), dres.data<float>(), y.data<float>(), M * C, s);
    kernels::relu_forward(y.data<float>(), h.data<float>(), M * C, s);
  };
  // v3: the same kernels on bf16 activations (train.precision = "bf16" on a GPU): half the bytes.
  const Tensor xb = x.to(DType::bf16).to(gpu), dyb = xb, resb = residual.to(DType::bf16).to(gpu);
  Tensor yb = Tensor::empty(x.shape(), DType::bf16, gpu), dxb = Tensor::empty(x.shape(), DType::bf16, gpu);
  auto forward_bf16 = [&] {
    kernels::batch_norm_partial_sums(xb.data<bf16>(), M, C, stats.data<double>(), s);
    kernels::batch_norm_stats(stats.data<double>(), C, 1e-5, 0.9, mean.data<float>(), invstd.data<float>(),
                              rm.data<float>(), rv.data<float>(), s);
    kernels::batch_norm_apply(xb.data<bf16>(), mean.data<float>(), invstd.data<float>(), dgamma.data<float>(),
                              dbeta.data<float>(), yb.data<bf16>(), M, C, s);
  };
  auto backward_bf16 = [&] {
    kernels::batch_norm_backward_sums(dyb.data<bf16>(), xb.data<bf16>(), mean.data<float>(),
                                      invstd.data<float>(), M, C, sums.data<double>(), g_beta.data<float>(),
                                      g_gamma.data<float>(), s);
    kernels::batch_norm_backward_dx(dyb.data<bf16>(), xb.data<bf16>(), mean.data<float>(),
                                    invstd.data<float>(), dgamma.data<float>(), sums.data<double>(),
                                    stats.data<double>(), dxb.data<bf16>(), M, C, s);
  };
  auto fused_bf16 = [&] {
    kernels::batch_norm_apply_relu(xb.data<bf16>(), mean.data<float>(), invstd.data<float>(),
                                   dgamma.data<float>(), dbeta.data<float>(), resb.data<bf16>(),
                                   yb.data<bf16>(), M, C, s);
  };
  const double elems_bf16 = static_cast<double>(M * C) * sizeof(bf16);
  report.timing("v1 normalise pass (1-D grid, i % C per element)", cuda::time_on_compute_stream(normalise_v1),
                2 * elems);
  // Version 4 (a channel per thread) and 5 (packs of 16 bytes of channels where C divides; ships), side by
  // side; v3 marks the bf16 rows.
  for (const bool unpacked : {true, false}) {
    kernels::force_unpacked_batch_norm(unpacked);
    const std::string v = unpacked ? "v4 " : "v5 ";
    auto timed = [&](const std::string& name, const std::function<void()>& fn, double bytes) {
      report.timing(v + name, cuda::time_on_compute_stream(fn), bytes);
    };
    timed("forward (training)", forward, 3 * elems);
    timed("normalise pass (2-D grid)", normalise, 2 * elems);
    timed("backward", backward, 5 * elems);
    timed("fused normalise + residual + ReLU", fused, 3 * elems);
    timed("normalise, add, ReLU (three passes)", unfused, 7 * elems);
    timed("v3 bf16 forward (training)", forward_bf16, 3 * elems_bf16);
    timed("v3 bf16 backward", backward_bf16, 5 * elems_bf16);
    timed("v3 bf16 fused normalise + residual + ReLU", fused_bf16, 3 * elems_bf16);
  }
  kernels::force_unpacked_batch_norm(false);
  return valid ? 0 : 1;
}

int main(int argc, char** argv) {
  return lab::lab_main(
      argc, argv, "batch_norm_lab",
      "batch_norm_lab [N H W C] [--json FILE]   (default 128 28 28 256: a ResNet-50 stage-2 batch norm)",
      {0, 4}, run);
}
