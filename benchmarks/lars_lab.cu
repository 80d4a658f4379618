// Kernel lab: LARS over a ResNet's flat parameter buffer — the shipping kernels of engine/cuda/lars.cu,
// validated against the CPU optimizer (byol::Lars), then timed.
//
//   build: cmake --build build-cuda --target lars_lab
//   run:   build-cuda/benchmarks/lars_lab [depth] [--json FILE]
//          (default 50: ResNet-50's 161 tensors, 23.5e6 floats)
//
// Versions:
//   1. (2026-11, replaced) per-tensor sums (w.w, g.g, w.g) in double by one CUB segmented reduction (one
//      block per tensor), then one update launch that found each element's tensor by binary search:
//      2.544 ms, 258.7 GB/s, 6.3 % of the copy bandwidth on an H200 (2026-12-04).
//   2. (replaced) chunks of at most 16384 elements of one tensor, one block each, for the sums and for the
//      update, one float per access; one thread per tensor in between adds its chunks' sums and forms the
//      trust ratio: 0.227 ms, 70.2 % on the H200 (2026-12-04). Timed here with chunks of 16384 and
//      kernels::force_unpacked_lars.
//   3. shipping: chunks of kLarsChunk = 4096 (5.5 waves of update blocks instead of 1.35 at ResNet-50),
//      read and written in packs of 4 floats, and one warp per tensor adding its chunks' sums (a tensor now
//      has up to 576 chunks). The chunk size and the packs are also timed one at a time; every row here
//      runs version 3's trust kernel.
//      Training passes the learning rate in device memory (ops::StepScalar, for CUDA graph replays):
//      validated and timed that way.
// Every version is validated against the CPU before the timings.
// Bytes counted: the reduction reads w and g, the update reads w, g, m and writes w, m (7 n floats).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "benchmarks/lab_main.h"
#include "byol/optimizers.h"
#include "engine/cuda/context.h"
#include "engine/cuda/lars.cuh"
#include "engine/cuda/launch.h"
#include "engine/cuda/timing.h"
#include "models/resnet.h"

using namespace byol;

namespace {

// A packed segment table in device memory.
Tensor table_on(const kernels::LarsTable& packed, Device device) {
  Tensor host = Tensor::empty({static_cast<int64_t>(packed.bytes.size())}, DType::u8);
  std::memcpy(host.data<uint8_t>(), packed.bytes.data(), packed.bytes.size());
  return host.to(device);
}

}  // namespace

int run(lab::Report& report, const std::vector<int64_t>& sizes) {
  models::ResNetConfig cfg;
  cfg.depth = sizes.empty() ? 50 : static_cast<int>(sizes[0]);
  models::ParamRegistry reg;
  models::ResNet net(reg, "encoder.", cfg);
  reg.finalize(true);
  std::mt19937_64 gen(0);
  reg.initialize(gen);
  const int64_t n = reg.params().numel();
  report.options = {{"depth", cfg.depth}, {"tensors", reg.param_entries().size()}, {"n", n}};
  std::printf("lars_lab: ResNet-%d, %zu tensors, %lld floats\n", cfg.depth, reg.param_entries().size(),
              (long long)n);
  reg.grads().copy_(Tensor::randn({n}, gen, DType::f32, 0.0, 1e-3));

  const LarsOptions opt{1.5e-6, 0.9, 1e-3};
  const Device gpu = Device::cuda();
  kernels::LarsSegments seg;
  for (const auto& e : reg.param_entries()) {
    seg.begins.push_back(e.offset);
    seg.ends.push_back(e.offset + e.numel());
    seg.flags.push_back(
        static_cast<uint8_t>(((e.tags & models::kNoWeightDecay) ? kernels::kLarsNoWeightDecay : 0) |
                             ((e.tags & models::kNoLarsAdapt) ? kernels::kLarsNoAdapt : 0)));
  }
  // The learning rate in device memory, as training passes it; the argument (lr) then plays no part.
  const Tensor lr_gpu = Tensor::full({}, 0.3, DType::f32, gpu);
  const kernels::LarsHyper hyper{-1.0, opt.weight_decay, opt.momentum, opt.eta, lr_gpu.data<float>()};
  const Tensor w0 = reg.params().clone();
  Lars cpu(reg, opt);
  cpu.step(0.3);
  const std::vector<double> trust_cpu = cpu.last_trust_ratios();
  const auto wc = reg.params().to_vector<float>();

  // The versions: {chunk, one float at a time}.
  struct Version {
    const char* name;
    int64_t chunk;
    bool unpacked;
  };
  const Version versions[] = {
      {"v2 lars (chunks of 16384, one float at a time)", 16384, true},
      {"v2 + packs (chunks of 16384, packs of 4)", 16384, false},
      {"v2 + small chunks (chunks of 4096, one float at a time)", kernels::kLarsChunk, true},
      {"v3 lars (chunks of 4096, packs of 4; shipping)", kernels::kLarsChunk, false},
  };
  bool ok = true;
  for (const Version& v : versions) {
    Tensor w = w0.to(gpu), g = reg.grads().to(gpu), m = Tensor::zeros({n}, DType::f32, gpu);
    Tensor trust_gpu = Tensor::zeros({static_cast<int64_t>(seg.begins.size())}, DType::f64, gpu);
    const kernels::LarsTable packed = kernels::lars_pack_segments(seg, n, v.chunk);
    const Tensor table = table_on(packed, gpu);
    kernels::force_unpacked_lars(v.unpacked);
    kernels::lars_step(w.data<float>(), g.data<float>(), m.data<float>(), table.data<uint8_t>(),
                       packed.segments, packed.chunks, packed.chunk, hyper, trust_gpu.data<double>(),
                       cuda::compute_stream());
    kernels::force_unpacked_lars(false);
    const std::vector<double> trust = trust_gpu.to_vector<double>();
    double worst = 0;
    for (size_t i = 0; i < trust.size(); ++i)
      worst = std::max(worst, std::abs(trust[i] - trust_cpu[i]) / trust_cpu[i]);
    const auto wg = w.to_vector<float>();
    double d = 0, nn = 0;
    for (int64_t i = 0; i < n; ++i) {
      d += (double(wg[i]) - wc[i]) * (double(wg[i]) - wc[i]);
      nn += double(wc[i]) * wc[i];
    }
    const double rel = std::sqrt(d / nn);
    const bool good = worst < 1e-6 && rel < 1e-6;
    ok = ok && good;
    report.validated(std::string(v.name) + ": trust ratios", worst < 1e-6,
                     {{"max_rel_error", worst}, {"tolerance", 1e-6}});
    report.validated(std::string(v.name) + ": parameters", rel < 1e-6,
                     {{"rel_l2_error", rel}, {"tolerance", 1e-6}});
    std::printf("%s: validation vs CPU: trust ratios %.2e, parameters %.2e (tolerance 1e-6): %s\n", v.name,
                worst, rel, good ? "OK" : "FAILED");
  }
  lab::timing_anyway(ok);

  report.measure_copy_bandwidth();
  // Timed as byol::Lars runs it: the segment table packed and uploaded once, outside the loop.
  Tensor w = w0.to(gpu), g = reg.grads().to(gpu), m = Tensor::zeros({n}, DType::f32, gpu);
  for (const Version& v : versions) {
    const kernels::LarsTable packed = kernels::lars_pack_segments(seg, n, v.chunk);
    const Tensor table = table_on(packed, gpu);
    std::printf("%d tensors in %d chunks of at most %lld floats\n", packed.segments, packed.chunks,
                static_cast<long long>(packed.chunk));
    auto run = [&] {
      kernels::lars_step(w.data<float>(), g.data<float>(), m.data<float>(), table.data<uint8_t>(),
                         packed.segments, packed.chunks, packed.chunk, hyper, nullptr,
                         cuda::compute_stream());
    };
    kernels::force_unpacked_lars(v.unpacked);
    report.timing(v.name, cuda::time_on_compute_stream(run), 7.0 * static_cast<double>(n) * sizeof(float),
                  {{"chunks", packed.chunks}, {"chunk", packed.chunk}, {"packs", !v.unpacked}});
    kernels::force_unpacked_lars(false);
  }
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  return lab::lab_main(argc, argv, "lars_lab",
                       "lars_lab [depth] [--json FILE]   (default 50: ResNet-50's 161 tensors)", {0, 1}, run);
}
