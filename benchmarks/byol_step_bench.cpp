// End-to-end BYOL step benchmark: ResNet-18 (or -50) with the CIFAR or ImageNet stem, projector and
// predictor at the paper's sizes (4096 hidden, 256 out), two views per image. One step = online forward
// and backward of both views, target forward of both views, the loss, LARS and the EMA.
//
//   build/benchmarks/byol_step_bench [batch=64] [steps=3] [base_channels=64] [side=32] [mlp_hidden=4096]
//   [stem=cifar|imagenet] [--device cpu|cuda] [--depth 18|34|50|101|152|200] [--json FILE]
//
// Prints images/s (images, not views: each image is seen twice) after the warm-up: one step (two with
// --data, three with --cuda-graph: its eager steps and the capture).
//  - cpu (default): wall-clock time of `steps` steps, each step's loss read as it ends.
//    benchmarks/run_step_bench.sh runs it next to the same step in PyTorch (benchmarks/reference/
//    byol_step_torch.py) with the same thread count.
//  - cuda: the learner and the views on the GPU (TF32 on, the default); `steps` steps are queued back to
//    back with no host synchronisation between them and timed with CUDA events on the compute stream
//    around all of them (the loss is read once, after the last). scripts/gpu_check.sh runs it next to
//    `byol_step_torch.py --device cuda` with the same model and batch.
// --phases: after the timed steps, `steps` more with Learner::phase_clock set (engine/phase_clock.h: CUDA
// events on a GPU, recorded without waiting), printing where a step's time goes: data (with --data),
// forward, backward (with the wait for the gradient all-reduce), optimizer (LARS + EMA).
// --data SPEC: real inputs instead of random views: the loader (data/loader.h) with the BYOL augmentations
// of the dataset (any data.train spec, e.g. cifar10:DIR), --workers threads, uploaded as byol-pretrain does
// (pinned memory, the copy stream); the time a step waits for its batch is the "data" phase and is part of
// images/s. --augment-on gpu (with --device cuda): the workers only decode, and the CUDA kernel augments
// (data.augment_on = "gpu"; engine/cuda/augment.cuh).
// --precision bf16: on the CPU the convolutions' and linear layers' products in bf16 (bf16act: and the
// encoder's activations stored as bf16); on a GPU, bf16 always means bf16 activations (cuDNN's bf16
// convolutions), so bf16act is the same there (TrainConfig::precision).
// --cuda-graph (with --device cuda): the step as one captured CUDA graph (TrainConfig::cuda_graph); the
// warm-up is then the graph's eager steps and its capture, and the phases are the replay and the data.
// --json FILE writes the options and the step's figures as one JSON object (benchmarks/bench_json.h).
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "benchmarks/bench_json.h"
#include "byol/learner.h"
#include "data/loader.h"
#include "engine/device_memory.h"
#include "engine/phase_clock.h"
#include "engine/upload.h"
#if BYOL_WITH_CUDA
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#endif

namespace {
int run(int argc, char** argv) {
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
  std::string precision = "fp32";
  cli.add_option(
         "--precision", precision,
         "fp32; bf16 (CPU: the convolutions' and linear layers' products; GPU: bf16 activations too); "
         "bf16act (bf16 products and the encoder's activations stored as bf16; on a GPU the same as "
         "bf16)")
      ->check(CLI::IsMember({"fp32", "bf16", "bf16act"}))
      ->capture_default_str();
  bool cuda_graph = false;
  cli.add_flag("--cuda-graph", cuda_graph, "with --device cuda: replay the step as one captured CUDA graph");
  bool phases = false;
  cli.add_flag("--phases", phases, "also time the phases of a step (forward, backward, optimizer; data)");
  std::string data_spec, norm_name = "imagenet";
  int workers = 2;
  cli.add_option("--data", data_spec, "real inputs: a dataset spec (e.g. cifar10:DIR) through the loader")
      ->type_name("SPEC");
  cli.add_option("--workers", workers, "loader threads with --data")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  cli.add_option("--normalization", norm_name, std::string("with --data: ") + data::Normalization::kNames)
      ->capture_default_str();
  std::string augment_on = "cpu";
  cli.add_option("--augment-on", augment_on,
                 "with --data: augment on the loader's workers (cpu) or with the CUDA kernel (gpu)")
      ->check(CLI::IsMember({"cpu", "gpu"}))
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
  if (cuda_graph && !gpu) {
    std::fprintf(stderr, "byol_step_bench: --cuda-graph needs --device cuda\n");
    return 2;
  }
  if (augment_on == "gpu" && (!gpu || data_spec.empty())) {
    std::fprintf(stderr, "byol_step_bench: --augment-on gpu needs --device cuda and --data SPEC\n");
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
  train.precision = precision == "fp32" ? TrainConfig::Precision::fp32 : TrainConfig::Precision::bf16;
  train.bf16_activations = precision == "bf16act";
  train.cuda_graph = cuda_graph;
  Learner learner(net, train);
  learner.to(device);
  std::mt19937_64 gen(1);
  Tensor v1 = Tensor::randn({batch, side, side, 3}, gen).to(device),
         v2 = Tensor::randn({batch, side, side, 3}, gen).to(device);
  // --data: the next batch from the loader (a new epoch when one ends), on the device.
  std::unique_ptr<data::Loader> loader;
  BatchUploader uploader;
  int64_t epoch = 0;
  if (!data_spec.empty()) {
    const std::optional<data::Normalization> norm = data::Normalization::named(norm_name);
    BYOL_CHECK(norm.has_value(), "--normalization: expected ", data::Normalization::kNames, ", got '",
               norm_name, "'");
    data::LoaderOptions lopt;
    lopt.batch_size = batch;
    lopt.workers = workers;
    lopt.raw = augment_on == "gpu";
    loader = std::make_unique<data::Loader>(data::open_dataset(data_spec),
                                            data::AugmentOptions::byol(static_cast<int>(side), *norm), lopt);
    loader->start_epoch(epoch);
  }
  auto next_views = [&] {
    if (!loader) return;
    std::optional<data::Batch> b = loader->next();
    if (!b) {
      loader->start_epoch(++epoch);
      b = loader->next();
    }
    BYOL_CHECK(b.has_value(), "byol_step_bench --data ", data_spec, ": the loader gave no batch");
    const data::AugmentOptions& aug = loader->augment_options();
    const std::vector<Tensor> in =
        loader->options().raw
            ? upload_and_augment(uploader, b->pixels, b->sources, b->params, aug.height, aug.width,
                                 aug.normalization.mean, aug.normalization.std, device)
            : uploader.upload({b->views[0], b->views[1]}, device);
    v1 = in[0], v2 = in[1];
  };
  // Warm-up (cuDNN algorithm choice, pool growth; with --cuda-graph the eager steps and the capture).
  // With --data, at least two: the uploader's two pinned staging slots are each allocated on first use,
  // which would otherwise fall in the first timed step.
  const int64_t warmup = std::max<int64_t>(cuda_graph ? kGraphWarmupSteps + 1 : 1, loader ? 2 : 1);
  for (int64_t i = 0; i < warmup; ++i) {
    next_views();
    learner.step(v1, v2).read();
  }
  // A learner whose capture failed goes on eagerly: timed, that would be an eager figure under the graph's
  // name.
  BYOL_CHECK(!cuda_graph || learner.graph_captures() == 1,
             "byol_step_bench --cuda-graph: the step was not captured: ", learner.graph_failure());
  double s = 0, loss = 0;
  if (gpu) {
#if BYOL_WITH_CUDA
    cudaEvent_t start, stop;
    BYOL_CUDA_CHECK(cudaEventCreate(&start));
    BYOL_CUDA_CHECK(cudaEventCreate(&stop));
    BYOL_CUDA_CHECK(cudaEventRecord(start, cuda::compute_stream()));
    StepMetrics m;
    for (int i = 0; i < steps; ++i) {
      next_views();
      m = learner.step(v1, v2);
    }
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
    for (int i = 0; i < steps; ++i) {
      next_views();
      loss = learner.step(v1, v2).read().loss;
    }
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
      "byol.cpp  ResNet-%d %s stem (base %lld, %lldx%lld, MLP %lld), %s%s, batch %lld, %s: %.4f s/step, "
      "%.1f images/s (loss %.4f)\n",
      depth, imagenet_stem ? "ImageNet" : "CIFAR", static_cast<long long>(base), static_cast<long long>(side),
      static_cast<long long>(side), static_cast<long long>(hidden), precision.c_str(),
      cuda_graph ? ", CUDA graph" : "", static_cast<long long>(batch), where, s, batch / s, loss);
  // --phases: the same steps again with the clock; each phase's time per step and share of the step.
  bench::Json phase_rows = bench::Json::array();
  if (phases) {
    PhaseClock clock(device);
    learner.phase_clock = &clock;
    for (int i = 0; i < steps; ++i) {
      clock.start();
      if (loader) {
        next_views();
        clock.mark("data");
      }
      const StepMetrics m = learner.step(v1, v2);
      if (!gpu) m.read();  // on the CPU each step ends with its loss read, as in the timed run
    }
    learner.phase_clock = nullptr;
    const auto totals = clock.totals();
    double sum = 0;
    for (const auto& [name, secs] : totals) sum += secs;
    std::printf("  phases per step (%d steps):", steps);
    for (const auto& [name, secs] : totals) {
      std::printf("  %s %.2f ms (%.1f %%)", name.c_str(), 1e3 * secs / steps,
                  100 * secs / std::max(sum, 1e-30));
      phase_rows.push_back(
          {{"name", "phase " + name}, {"step_ms", 1e3 * secs / steps}, {"share", secs / sum}});
    }
    std::printf("\n");
  }
  result["options"] = {
      {"batch", batch},        {"steps", steps}, {"base_channels", base},     {"side", side},
      {"mlp_hidden", hidden},  {"stem", stem},   {"device", device_name_arg}, {"depth", depth},
      {"precision", precision}};
  result["options"]["phases"] = phases;
  result["options"]["cuda_graph"] = cuda_graph;
  result["options"]["data"] = data_spec.empty() ? "synthetic" : data_spec;
  result["options"]["augment_on"] = augment_on;
  result["rows"] = {
      {{"name", "byol step"}, {"step_ms", 1e3 * s}, {"images_per_s", batch / s}, {"loss", loss}}};
  for (const auto& row : phase_rows) result["rows"].push_back(row);
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
}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const byol::Error& e) {
    std::fprintf(stderr, "byol_step_bench: %s\n", e.message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "byol_step_bench: %s\n", e.what());
    return 1;
  }
}
