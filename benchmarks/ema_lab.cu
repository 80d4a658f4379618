// Kernel lab: the target network's EMA over its flat parameter buffer — the shipping kernel of
// engine/cuda/ema.cu, validated against the CPU (byol::ema_update_target), then timed.
//
//   build: cmake --build build-cuda --target ema_lab
//   run:   build-cuda/benchmarks/ema_lab [n] [--json FILE]     (default 28e6 floats: ResNet-50 + projector)
//
// Versions:
//   1. shipping: in place, one launch, float4 loads/stores (scalar for unaligned buffers). Training passes
//      tau in device memory (ops::StepScalar, so that a captured CUDA graph replays with each step's tau):
//      validated and timed that way, and with tau as an argument.
// Bytes counted: reads target and online, writes target (3 n floats).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <utility>
#include <vector>

#include "benchmarks/lab_main.h"
#include "byol/learner.h"
#include "engine/cuda/context.h"
#include "engine/cuda/ema.cuh"
#include "engine/cuda/timing.h"
#include "engine/optim_ops.h"

using namespace byol;

int run(lab::Report& report, const std::vector<int64_t>& sizes) {
  const int64_t n = sizes.empty() ? 28000000 : sizes[0];
  report.options = {{"n", n}};
  std::printf("ema_lab: n = %lld floats\n", (long long)n);
  std::mt19937_64 gen(0);
  const Tensor target = Tensor::randn({n}, gen), online = Tensor::randn({n}, gen);
  Tensor t_cpu = target.clone(), t_gpu = target.to(Device::cuda()), o_gpu = online.to(Device::cuda());
  const Tensor tau_gpu = Tensor::full({}, 0.996, DType::f32, Device::cuda());
  Tensor t_gpu2 = target.to(Device::cuda());
  ema_update_target(t_cpu, online, 0.996);
  ema_update_target(t_gpu, o_gpu, 0.996);
  ema_update_target(t_gpu2, o_gpu, ops::StepScalar(tau_gpu));
  const std::vector<float> want = t_cpu.to_vector<float>();
  bool all_ok = true;
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"ema_update (tau argument)", &t_gpu},
                                {"ema_update (tau in device memory)", &t_gpu2}}) {
    const std::vector<float> got = t->to_vector<float>();
    const bool ok = got == want;
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(double(got[i]) - want[i]));
    report.validated(name, ok, {{"bitwise", true}, {"max_abs_error", worst}});
    std::printf("validation vs CPU, %s: %s (bitwise: one formula, float on both sides)\n", name,
                ok ? "OK" : "FAILED");
    all_ok = all_ok && ok;
  }
  lab::timing_anyway(all_ok);

  report.measure_copy_bandwidth();
  auto run = [&] {
    kernels::ema_update(t_gpu.data<float>(), o_gpu.data<float>(), n, 0.996, cuda::compute_stream(),
                        tau_gpu.data<float>());
  };
  report.timing("v1 ema (float4, in place, tau in device memory)", cuda::time_on_compute_stream(run),
                3.0 * static_cast<double>(n) * sizeof(float));
  auto run_arg = [&] {
    kernels::ema_update(t_gpu.data<float>(), o_gpu.data<float>(), n, 0.996, cuda::compute_stream());
  };
  report.timing("v1 ema (float4, in place, tau argument)", cuda::time_on_compute_stream(run_arg),
                3.0 * static_cast<double>(n) * sizeof(float));
  return all_ok ? 0 : 1;
}

int main(int argc, char** argv) {
  return lab::lab_main(argc, argv, "ema_lab",
                       "ema_lab [n] [--json FILE]   (default 28e6 floats: ResNet-50 + projector)", {0, 1},
                       run);
}
