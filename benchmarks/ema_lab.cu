// Kernel lab: the target network's EMA over its flat parameter buffer — the shipping kernel of
// kernels/ema.cu, validated against the CPU (byol::ema_update_target), then timed.
//
//   build: cmake --build build-cuda --target ema_lab
//   run:   build-cuda/benchmarks/ema_lab [n]     (default 28e6 floats: ResNet-50 + projector)
//
// Versions:
//   1. shipping: in place, one launch, float4 loads/stores (scalar for unaligned buffers).
// Bytes counted: reads target and online, writes target (3 n floats).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "benchmarks/lab_main.h"
#include "byol/learner.h"
#include "engine/cuda/context.h"
#include "engine/cuda/timing.h"
#include "kernels/ema.cuh"

using namespace byol;

int run(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 28000000;
  std::printf("ema_lab: n = %lld floats\n", (long long)n);
  std::mt19937_64 gen(0);
  const Tensor target = Tensor::randn({n}, gen), online = Tensor::randn({n}, gen);
  Tensor t_cpu = target.clone(), t_gpu = target.to(Device::cuda()), o_gpu = online.to(Device::cuda());
  ema_update_target(t_cpu, online, 0.996);
  ema_update_target(t_gpu, o_gpu, 0.996);
  const bool ok = t_gpu.to_vector<float>() == t_cpu.to_vector<float>();
  std::printf("validation vs CPU: %s (bitwise: one formula, float on both sides)\n", ok ? "OK" : "FAILED");
  if (!ok) return 1;

  const double copy_gbs = cuda::device_copy_bandwidth_gbs();
  std::printf("device-to-device copy: %.1f GB/s\n", copy_gbs);
  auto run = [&] {
    kernels::ema_update(t_gpu.data<float>(), o_gpu.data<float>(), n, 0.996, cuda::compute_stream());
  };
  cuda::print_timing("v1 ema (float4, in place)", cuda::time_on_compute_stream(run),
                     3.0 * static_cast<double>(n) * sizeof(float), copy_gbs);
  return 0;
}

int main(int argc, char** argv) {
  return byol::lab::lab_main(argc, argv, "ema_lab [n]   (default 28e6 floats: ResNet-50 + projector)",
                             [&] { return run(argc, argv); });
}
