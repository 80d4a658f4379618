// End-to-end BYOL step benchmark: ResNet-18 (or -50) with the CIFAR or ImageNet stem, projector and
// predictor at the paper's sizes (4096 hidden, 256 out), two views per image. One step = online forward
// and backward of both views, target forward of both views, the loss, LARS and the EMA.
//
//   build/benchmarks/byol_step_bench [batch=64] [steps=3] [base_channels=64] [side=32] [mlp_hidden=4096]
//   [stem=cifar|imagenet] [--device cpu|cuda] [--depth 18|34|50|101|152|200] [--json FILE]
//
// Prints images/s (images, not views: each image is seen twice) after one warm-up step.
//  - cpu (default): wall-clock time of `steps` steps, each step's loss read as it ends.
//    benchmarks/run_step_bench.sh runs it next to the same step in PyTorch (benchmarks/reference/
//    byol_step_torch.py) with the same thread count.
//  - cuda: the learner and the views on the GPU (TF32 on, the default); `steps` steps are queued back to
//    back with no host synchronisation between them and timed with CUDA events on the compute stream
//    around all of them (the loss is read once, after the last). scripts/gpu_check.sh runs it next to
//    `byol_step_torch.py --device cuda` with the same model and batch.
// --json FILE writes the options and the step's figures as one JSON object (benchmarks/bench_json.h).
#include <omp.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "benchmarks/bench_json.h"
#include "byol/learner.h"
#include "engine/device_memory.h"
#if BYOL_WITH_CUDA
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#endif

int main(int argc, char** argv) {
  using namespace byol;
  // The positional order is the one scripts/gpu_check.sh and benchmarks/run_step_bench.sh use.
  CLI::App cli{"byol_step_bench: images/s of whole BYOL steps (online and target passes, loss, LARS, EMA)"};
  int64_t batch = 64, base = 64, side = 32, hidden = 4096;
  int steps = 3, depth = 18;
  std::string stem = "cifar", device_name_arg = "cpu";
  cli.add_option("batch", batch, "images per step")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  cli.add_option("steps", steps, "timed steps")->check(CLI::Range(1, 100000))->capture_default_str();
  cli.add_option("base_channels", base, "the first stage's channels")
      ->check(CLI::Range(int64_t(1), int64_t(1024)))
      ->capture_default_str();
  cli.add_option("side", side, "image side")
      ->check(CLI::Range(int64_t(8), int64_t(1024)))
      ->capture_default_str();
  cli.add_option("mlp_hidden", hidden, "projector and predictor hidden width")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  cli.add_option("stem", stem, "cifar or imagenet")
      ->check(CLI::IsMember({"cifar", "imagenet"}))
      ->capture_default_str();
  cli.add_option("--device", device_name_arg, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cli.add_option("--depth", depth, "ResNet depth")
      ->check(CLI::IsMember({18, 34, 50, 101, 152, 200}))
      ->capture_default_str();
  std::string json_path;
  cli.add_option("--json", json_path, "also write the results to FILE as one JSON object")->type_name("FILE");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;  // --help: 0; a usage error: 2
  }
  const bool imagenet_stem = stem == "imagenet";
  const bool gpu = device_name_arg == "cuda";
  if (gpu && (!cuda_compiled() || cuda_device_count() == 0)) {
    std::fprintf(stderr, "byol_step_bench: --device cuda, but %s\n",
                 cuda_compiled() ? "no CUDA device is visible" : "this build has no CUDA backend");
    return 2;
  }
  const Device device = gpu ? Device::cuda() : Device::cpu();
  NetworkConfig net;
  net.encoder.depth = depth;
  net.encoder.stem = imagenet_stem ? models::Stem::imagenet : models::Stem::cifar;
  net.encoder.base_channels = base;
  net.projector_hidden = net.predictor_hidden = hidden;
  TrainConfig train;
  train.batch_size = batch;
  train.total_steps = 1000;
  train.warmup_steps = 10;
  train.base_lr = 0.45;
  Learner learner(net, train);
  learner.to(device);
  std::mt19937_64 gen(1);
  Tensor v1 = Tensor::randn({batch, side, side, 3}, gen).to(device),
         v2 = Tensor::randn({batch, side, side, 3}, gen).to(device);
  learner.step(v1, v2).read();  // warm-up (cuDNN algorithm choice, pool growth)
  double s = 0, loss = 0;
  if (gpu) {
#if BYOL_WITH_CUDA
    cudaEvent_t start, stop;
    BYOL_CUDA_CHECK(cudaEventCreate(&start));
    BYOL_CUDA_CHECK(cudaEventCreate(&stop));
    BYOL_CUDA_CHECK(cudaEventRecord(start, cuda::compute_stream()));
    StepMetrics m;
    for (int i = 0; i < steps; ++i) m = learner.step(v1, v2);
    BYOL_CUDA_CHECK(cudaEventRecord(stop, cuda::compute_stream()));
    BYOL_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    BYOL_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    s = ms / 1e3 / steps;
    loss = m.read().loss;
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
#endif
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) loss = learner.step(v1, v2).read().loss;
    s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
  }
  char where[64];
  bench::Json result = bench::result_header("byol_step_bench");
  if (gpu) {
    std::snprintf(where, sizeof where, "GPU");
#if BYOL_WITH_CUDA
    int id = 0;
    cudaDeviceProp props{};
    BYOL_CUDA_CHECK(cudaGetDevice(&id));
    BYOL_CUDA_CHECK(cudaGetDeviceProperties(&props, id));
    result["device"] = props.name;
#endif
  } else {
    result["device"] = "cpu";
    result["openmp_threads"] = omp_get_max_threads();
    std::snprintf(where, sizeof where, "%d threads", omp_get_max_threads());
  }
  std::printf(
      "byol.cpp  ResNet-%d %s stem (base %lld, %lldx%lld, MLP %lld), batch %lld, %s: %.4f s/step, "
      "%.1f images/s (loss %.4f)\n",
      depth, imagenet_stem ? "ImageNet" : "CIFAR", static_cast<long long>(base), static_cast<long long>(side),
      static_cast<long long>(side), static_cast<long long>(hidden), static_cast<long long>(batch), where, s,
      batch / s, loss);
  result["options"] = {
      {"batch", batch},       {"steps", steps}, {"base_channels", base},     {"side", side},
      {"mlp_hidden", hidden}, {"stem", stem},   {"device", device_name_arg}, {"depth", depth}};
  result["rows"] = {
      {{"name", "byol step"}, {"step_ms", 1e3 * s}, {"images_per_s", batch / s}, {"loss", loss}}};
  if (!json_path.empty()) {
    try {
      bench::write_json_atomically(json_path, result);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "byol_step_bench: %s\n", e.what());
      return 1;
    }
  }
  return 0;
}
