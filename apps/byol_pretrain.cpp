// byol-pretrain: BYOL self-supervised pretraining (Grill et al. 2020) on the CPU or a GPU, one process
// or many under mpirun (run.device; with GPUs each rank takes the GPU of its local rank and the ranks
// all-reduce over NCCL, on the CPU over MPI).
//
//   byol-pretrain --config configs/fashion_mnist.toml [--set train.epochs=5 ...] [--resume]
//
// Outputs under run.out: config.toml (the effective configuration), metrics.jsonl (one JSON object per
// logged step and per kNN evaluation), checkpoints/step_NNNNNNNN.safetensors (the last
// run.keep_checkpoints, written atomically), events.out.tfevents.* (the same scalars for TensorBoard:
// `tensorboard --logdir runs/`), curves.svg and metrics.csv (at every checkpoint, on interruption and at
// the end), and at the end encoder.safetensors (torchvision names, loadable by torchvision's ResNets and
// byol-eval).
// --resume continues from the newest checkpoint exactly as if the run had not stopped. SIGINT/SIGTERM
// write a checkpoint after the current step (with several ranks: at the next log point, where the ranks
// agree on it) and exit (status 128 + signal); a NaN/Inf loss stops the run (status 1), keeping the last
// good checkpoint. Rank 0 alone logs and writes files.
// The step's metrics stay on the device: they are read (one wait for the GPU) at each log point, and the
// NaN/Inf check — a device-side running sum of the losses since the last check — is read at each log
// point and before each checkpoint, so no checkpoint is ever written after a non-finite loss.
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "apps/device_arg.h"
#include "apps/plot.h"
#include "apps/pretrain_config.h"
#include "apps/progress.h"
#include "apps/tensorboard.h"
#include "apps/version.h"
#include "byol/checkpoint.h"
#include "byol/distributed.h"
#include "byol/evaluation.h"
#include "data/loader.h"
#include "engine/comm/nccl_communicator.h"
#include "engine/device_memory.h"
#include "engine/io/safetensors.h"
#include "engine/upload.h"

namespace fs = std::filesystem;
using namespace byol;
using apps::PretrainConfig;

namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) {
  g_signal.store(sig);
}

data::Normalization normalization(const std::string& name) {
  if (name == "fashion-mnist") return data::Normalization::fashion_mnist();
  if (name == "cifar10") return data::Normalization::cifar10();
  if (name == "cifar100") return data::Normalization::cifar100();
  if (name == "stl10") return data::Normalization::stl10();
  if (name == "imagenet") return data::Normalization::imagenet();
  return data::Normalization::none();
}

// The two BYOL views of the recipe, with the [augment] section's changes.
data::AugmentOptions augment_options(const PretrainConfig& c) {
  data::AugmentOptions a = data::AugmentOptions::byol(c.side, normalization(c.normalization));
  for (size_t v = 0; v < a.views.size(); ++v) {
    data::ViewOptions& o = a.views[v];
    o.area_min = c.crop_area_min;
    o.jitter_p = c.jitter_p;
    o.brightness *= c.jitter_strength;
    o.contrast *= c.jitter_strength;
    o.saturation *= c.jitter_strength;
    o.hue = std::min(0.5, o.hue * c.jitter_strength);
    o.jitter_style = data::parse_jitter_style(c.jitter);
    o.grayscale_p = c.grayscale_p;
    o.blur_p = v == 0 ? c.blur_p_view1 : c.blur_p_view2;
    o.solarize_p = v == 0 ? c.solarize_p_view1 : c.solarize_p_view2;
  }
  return a;
}

NetworkConfig network_config(const PretrainConfig& c) {
  NetworkConfig n;
  n.encoder.depth = c.depth;
  n.encoder.width = c.width;
  n.encoder.stem = c.stem == "cifar" ? models::Stem::cifar : models::Stem::imagenet;
  n.encoder.base_channels = c.base_channels;
  n.projector_hidden = c.projector_hidden;
  n.projector_depth = c.projector_depth;
  n.predictor_depth = c.predictor_depth;
  n.projection_dim = c.projection_dim;
  n.predictor_hidden = c.predictor_hidden;
  return n;
}

std::string checkpoint_name(int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "step_%08lld.safetensors", static_cast<long long>(step));
  return buf;
}

std::vector<fs::path> checkpoints_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step_", 0) == 0 && e.path().extension() == ".safetensors") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string fixed(double v, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, v);
  return text;
}

std::string format_duration(double s) {
  char buf[32];
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, t / 60 % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  }
  return buf;
}

// A dataset named by a config key; an error that does not say which key gets it prefixed.
std::shared_ptr<data::Dataset> open_for_key(const std::string& key, const std::string& spec) {
  try {
    return data::open_dataset(spec);
  } catch (const Error& e) {
    if (e.message().rfind(key, 0) == 0) throw;
    throw Error(cat(key, " = \"", spec, "\": ", e.message()),
                e.location());  // the location stays for --verbose
  }
}

double unix_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// metrics.jsonl's keys as TensorBoard tags: the part before '/' is the section TensorBoard groups them in.
std::string tensorboard_tag(const std::string& key) {
  static const std::pair<const char*, const char*> tags[] = {
      {"loss", "train/loss"},
      {"lr", "train/lr"},
      {"tau", "train/tau"},
      {"epoch", "train/epoch"},
      {"images_per_s", "train/images_per_s"},
      {"probe_loss", "probe/loss"},
      {"probe_top1", "probe/top1"},
      {"knn_top1", "knn/top1"},
      {"feature_rank", "collapse/feature_rank"},
      {"projection_rank", "collapse/projection_rank"},
      {"projection_std", "collapse/projection_std"},
      {"train_projection_std", "collapse/train_projection_std"},
      {"train_projection_rank", "collapse/train_projection_rank"},
      {"online_target_cos", "collapse/online_target_cos"}};
  for (const auto& [k, tag] : tags)
    if (key == k) return tag;
  return key;
}

// The periodic kNN monitor: features of two fixed labeled subsets through the online encoder.
struct KnnMonitor {
  std::shared_ptr<const data::Dataset> train, test;
  data::AugmentOptions transform;
  int workers = 1;
  struct Result {
    double top1 = 0;
    eval::CollapseStats features, projections;  // the collapse monitor, on the test subset
  };
  Result evaluate(const Learner& learner) const {
    const eval::Features tr =
        eval::extract_features(*learner.nets.online_encoder, *train, transform, 256, workers);
    const eval::Features te =
        eval::extract_features(*learner.nets.online_encoder, *test, transform, 256, workers);
    Result r;
    r.top1 = eval::knn_classify(tr, te).top1;
    // Collapse: the encoder's features and the online projections (BN in evaluation mode) of up to
    // 1,024 test images.
    const Tensor y = te.x.slice_rows(0, std::min<int64_t>(te.size(), 1024));
    r.features = eval::collapse_stats(y);
    NoGradGuard no_grad;
    r.projections = eval::collapse_stats(learner.nets.online_projector->forward(
        y.contiguous().to(learner.device()), models::ForwardContext{false, {}}));
    return r;
  }
};

// run.device -> the device this rank trains on; a GPU is the local rank's (modulo the visible count).

// The communicator for the device: MPI (or none) on the CPU; on a GPU, NCCL when the build has it
// (it also serves one rank), else a single rank only.
std::unique_ptr<comm::Communicator> make_communicator(Device device) {
  if (device.is_cpu()) return comm::make_cpu_communicator();
  cuda_set_device(device.index);
  if (comm::nccl_compiled()) return comm::make_nccl_communicator();
  const comm::DistEnv env = comm::detect_environment();
  BYOL_CHECK(env.world_size == 1, "run.device = cuda with ", env.world_size,
             " ranks needs NCCL, and this build has none (configure with NCCL available)");
  return comm::make_cpu_communicator();
}

std::shared_ptr<const data::Dataset> subset(std::shared_ptr<const data::Dataset> d, int64_t n,
                                            uint64_t seed) {
  if (n <= 0 || n >= d->size()) return d;
  std::vector<int64_t> idx = data::split_indices(d->size(), static_cast<double>(n) / d->size(), seed).val;
  return std::make_shared<data::Subset>(d, std::move(idx));
}

int run(int argc, char** argv) {
  CLI::App cli{"byol-pretrain: BYOL self-supervised pretraining"};
  std::string config_path;
  std::vector<std::string> overrides;
  bool print_config = false, auto_resume = false, dry_run = false;
  std::string resume_from;
  cli.add_option("-c,--config", config_path, "TOML configuration (see configs/README.md)")
      ->check(CLI::ExistingFile);
  cli.add_option("-s,--set", overrides, "override a key: section.key=value (repeatable)");
  CLI::Option* resume_opt =
      cli.add_option("--resume", resume_from,
                     "continue a run: alone, the one in run.out (its config.toml, the newest checkpoint); "
                     "with a run folder, "
                     "that run; with a checkpoint file, from that checkpoint. --set keys still apply");
  resume_opt->expected(0, 1);
  cli.add_flag(
      "--auto-resume", auto_resume,
      "continue the run in run.out when it has a checkpoint, else start it (for jobs that are rerun)");
  cli.add_flag("--print-config", print_config, "print the effective configuration and exit");
  cli.add_flag(
      "--dry-run", dry_run,
      "open the data, build the networks, print the steps, sizes and the first batch's shapes, and exit "
      "without writing anything");
  cli.set_version_flag("--version", apps::version_line("byol-pretrain"));
  bool verbose_flag = false;  // read by main() through apps::verbose_errors, before and after parsing
  cli.add_flag("--verbose", verbose_flag,
               "errors name the source location that raised them (also BYOL_VERBOSE=1)");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; a usage error prints CLI11's message and exits 2 (as byol-eval and
    // byol-pack); an error while running exits 1, a signal 128 + its number.
    const int rc = cli.exit(e);
    return rc == 0 ? 0 : 2;
  }

  bool resume = resume_opt->count() > 0;
  BYOL_CHECK(!(resume && auto_resume), "give --resume or --auto-resume, not both");
  PretrainConfig cfg;
  fs::path resume_checkpoint;  // --resume FILE: this checkpoint, not the newest
  fs::path resume_dir;         // --resume FOLDER or FILE: that run's folder
  if (resume && !resume_from.empty()) {
    const fs::path p = resume_from;
    fs::path run_dir;
    if (fs::is_directory(p)) {
      run_dir = p;
    } else if (fs::is_regular_file(p)) {
      BYOL_CHECK(p.parent_path().filename() == "checkpoints", "--resume ", p.string(),
                 ": a checkpoint file must lie in a run folder's checkpoints/ "
                 "(run.out/checkpoints/step_*.safetensors)");
      resume_checkpoint = p;
      run_dir = p.parent_path().parent_path();
    } else {
      BYOL_FAIL("--resume ", p.string(), ": neither a run folder nor a checkpoint file");
    }
    resume_dir = run_dir;
  }
  apps::load_config(cfg, config_path, overrides);
  if (!resume_dir.empty()) cfg.out = resume_dir.string();  // the run named by --resume, whatever run.out says
  // Resuming without --config: the run's own configuration (run.out/config.toml), then the --set keys.
  if ((resume || auto_resume) && config_path.empty() && fs::exists(fs::path(cfg.out) / "config.toml")) {
    config_path = (fs::path(cfg.out) / "config.toml").string();
    // run.max_steps stopped one invocation; it is not part of the run (B stopped at 7 would stop at 7 again)
    std::vector<std::string> sets{"run.max_steps=0"};
    sets.insert(sets.end(), overrides.begin(), overrides.end());
    cfg = PretrainConfig{};
    apps::load_config(cfg, config_path, sets);
    if (!resume_dir.empty()) cfg.out = resume_dir.string();
  }
  apps::validate(cfg);
  if (print_config) {
    std::fputs(apps::to_toml(cfg).c_str(), stdout);
    return 0;
  }
  const comm::DistEnv dist_env = comm::detect_environment();
  const Device device =
      apps::resolve_device(cfg.device, dist_env.local_rank, dist_env.world_size, "config key 'run.device'");
  cuda_set_tf32(cfg.tf32);
  std::unique_ptr<comm::Communicator> comm = make_communicator(device);
  const bool root = comm->is_root();
  const int world = comm->world_size();
  if (cfg.threads > 0) omp_set_num_threads(cfg.threads);
  BYOL_CHECK(cfg.batch_size % world == 0, "train.batch_size ", cfg.batch_size, " is not divisible by the ",
             world, " ranks");
  BYOL_CHECK((cfg.batch_size / world) % cfg.accumulation_steps == 0, "train.accumulation_steps ",
             cfg.accumulation_steps, " does not divide each rank's batch of ", cfg.batch_size / world,
             " (train.batch_size ", cfg.batch_size, " over ", world, " ranks)");

  // Data.
  auto dataset = std::shared_ptr<const data::Dataset>(open_for_key("data.train", cfg.train));
  data::LoaderOptions lopt;
  lopt.batch_size = cfg.batch_size / world;
  lopt.workers = cfg.workers;
  lopt.seed = cfg.seed;
  lopt.rank = comm->rank();
  lopt.world_size = world;
  lopt.skip_corrupt = cfg.skip_corrupt;
  lopt.report_skipped = false;  // reported below, for epochs cut short too, and logged to metrics.jsonl
  data::Loader loader(dataset, augment_options(cfg), lopt);
  const int64_t per_epoch = loader.batches_per_epoch();
  BYOL_CHECK(per_epoch > 0, "data.train: ", dataset->describe(),
             " has fewer images per rank than one batch of ", lopt.batch_size);
  const int64_t total_steps = std::max<int64_t>(1, static_cast<int64_t>(cfg.epochs * per_epoch));

  TrainConfig train;
  train.batch_size = cfg.batch_size;
  train.total_steps = total_steps;
  train.warmup_steps = std::min<int64_t>(total_steps, static_cast<int64_t>(cfg.warmup_epochs * per_epoch));
  train.base_lr = cfg.base_lr;
  train.weight_decay = cfg.weight_decay;
  train.tau_base = cfg.tau_base;
  train.probe_classes = dataset->num_classes();
  train.probe_lr = cfg.probe_lr;
  train.seed = cfg.seed;
  train.copy_target_init = cfg.target_init == "copy";
  train.predictor = cfg.predictor;
  train.target_network = cfg.target_network;
  train.stop_gradient = cfg.stop_gradient;
  train.accumulation_steps = cfg.accumulation_steps;
  train.objective = {cfg.beta, cfg.temperature};
  train.constant_tau = cfg.tau_schedule == "constant";
  Learner learner(network_config(cfg), train);
  learner.to(device);  // before DataParallel: its collectives run on the learner's buffers
  DataParallel dp(learner, *comm, {size_t(25) << 20, cfg.sync_bn});

  std::unique_ptr<KnnMonitor> knn;
  if (!cfg.knn_train.empty() && root) {
    if (const std::string w = data::test_overlap_warning(cfg.knn_train, cfg.knn_test); !w.empty())
      std::fprintf(stderr, "warning: data.knn_train / data.knn_test: %s\n", w.c_str());
    knn = std::make_unique<KnnMonitor>();
    knn->train = subset(open_for_key("data.knn_train", cfg.knn_train), cfg.knn_train_images, cfg.seed + 1);
    knn->test = subset(open_for_key("data.knn_test", cfg.knn_test), cfg.knn_test_images, cfg.seed + 2);
    knn->transform = data::AugmentOptions::eval(cfg.side, normalization(cfg.normalization), 1.0);
    knn->workers = std::max(cfg.workers, 1);
    BYOL_CHECK(knn->train->has_labels() && knn->test->has_labels(),
               "data.knn_train / data.knn_test must be labeled");
  }

  if (dry_run) {
    // What the run would do, without writing anything: the plan, the sizes of the flat buffers, the first
    // batch as the loader makes it (so a bad dataset or augmentation shows now, not hours later).
    if (root) {
      const auto mib = [](const Tensor& t) { return t.defined() ? t.numel() * 4.0 / 1048576.0 : 0.0; };
      const double online = mib(learner.nets.online.params()), target = mib(learner.nets.target.params()),
                   stats = mib(learner.nets.online.stats()) + mib(learner.nets.target.stats()),
                   probe = mib(learner.probe_params.params());
      std::printf(
          "byol-pretrain --dry-run: %s\n  %d rank(s) x %lld images per step, %lld steps per epoch, %lld "
          "steps "
          "(%lld warmup), device %s\n  online network %lld parameters (%.1f MiB), target %.1f MiB, BN "
          "statistics %.2f MiB, probe %.2f MiB\n  per rank, float32: parameters + gradients + LARS momentum "
          "+ "
          "target = %.1f MiB; activations come on top and grow with the batch and the image side\n",
          dataset->describe().c_str(), world, static_cast<long long>(lopt.batch_size),
          static_cast<long long>(per_epoch), static_cast<long long>(total_steps),
          static_cast<long long>(train.warmup_steps), device_name(device).c_str(),
          static_cast<long long>(learner.nets.online.param_count()), online, target, stats, probe,
          3 * online + target + stats + 3 * probe);
    }
    loader.start_epoch(0);
    const std::optional<data::Batch> b = loader.next();
    BYOL_CHECK(b.has_value(), "--dry-run: the loader gave no batch");
    if (root && knn)
      std::printf("  kNN monitor: %s / %s\n", knn->train->describe().c_str(), knn->test->describe().c_str());
    if (root)
      std::printf("  first batch: views %s and %s, labels %s\n", b->views[0].describe().c_str(),
                  b->views[1].describe().c_str(),
                  b->labels.defined() ? b->labels.describe().c_str() : "none");
    return 0;
  }

  // Outputs and resume.
  const fs::path out = cfg.out, ckpt_dir = out / "checkpoints", metrics_path = out / "metrics.jsonl";
  if (root) {
    fs::create_directories(ckpt_dir);
    // A run killed while writing a checkpoint (or the encoder) left its temporary file behind.
    for (const fs::path& dir : {ckpt_dir, out})
      for (const std::string& stale : remove_stale_temporaries(dir.string()))
        std::printf("removed %s (the temporary file of an interrupted write)\n", stale.c_str());
  }
  comm->barrier();
  std::vector<nlohmann::json> history;  // metrics entries, kept for the plot and rewritten on resume
  if (auto_resume) {
    resume = !checkpoints_in(ckpt_dir).empty();
    if (root)
      std::printf("--auto-resume: %s\n",
                  resume ? "a checkpoint exists, continuing the run" : "no checkpoint yet, starting the run");
  }
  if (resume) {
    const auto found = checkpoints_in(ckpt_dir);
    BYOL_CHECK(!found.empty(), "--resume: no checkpoint in ", ckpt_dir.string());
    const std::string ckpt = resume_checkpoint.empty() ? found.back().string() : resume_checkpoint.string();
    const auto meta = load_checkpoint(ckpt, learner);
    BYOL_CHECK(metadata_int(meta, "run.batch_size", ckpt) == cfg.batch_size &&
                   metadata_uint(meta, "run.seed", ckpt) == cfg.seed &&
                   metadata_int(meta, "run.total_steps", ckpt) == total_steps,
               "--resume: ", ckpt, " was written with another batch size, seed or length (",
               meta.at("run.batch_size"), ", ", meta.at("run.seed"), ", ", meta.at("run.total_steps"),
               " steps); resuming would not continue the same run");
    if (root) {
      // Keep what the run had logged when it wrote the checkpoint: every line up to its step (step S's
      // log line and kNN evaluation come before checkpoint S), except the final kNN evaluation, which
      // follows the last checkpoint and is run again. Later lines are logged again by this run.
      const int64_t resumed = learner.steps_done();
      std::ifstream in(metrics_path);
      for (std::string line; std::getline(in, line);) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
          continue;
        const int64_t s = j["step"].get<int64_t>();
        if (s < resumed || (s == resumed && !(resumed == total_steps && j.contains("knn_top1"))))
          history.push_back(j);
      }
      std::printf("resumed from %s at step %lld\n", ckpt.c_str(),
                  static_cast<long long>(learner.steps_done()));
    }
  } else {
    dp.broadcast_from_root();
    BYOL_CHECK(checkpoints_in(ckpt_dir).empty() || !root, "run.out ", out.string(),
               " already holds checkpoints: pass --resume (or --auto-resume) to continue that run, or choose "
               "another run.out");
  }
  std::ofstream metrics;
  std::unique_ptr<apps::EventFile> events;  // TensorBoard's copy of metrics.jsonl's scalars
  auto to_events = [&](const nlohmann::json& j) {
    std::vector<std::pair<std::string, float>> values;
    for (const auto& [key, value] : j.items())
      if (value.is_number() && key != "step" && key != "time")
        values.emplace_back(tensorboard_tag(key), value.get<float>());
    const double when = j.contains("time") && j["time"].is_number() ? j["time"].get<double>() : unix_time();
    events->scalars(j["step"].get<int64_t>(), when, values);
  };
  if (root) {
    {  // atomically: a resume reads it back (--resume RUN_FOLDER, --auto-resume)
      const fs::path tmp = out / "config.toml.tmp";
      std::ofstream(tmp, std::ios::trunc) << apps::to_toml(cfg);
      fs::rename(tmp, out / "config.toml");
    }
    // Every start and resume of the run, one JSON line each: when, which build, which command line.
    {
      nlohmann::json inv;
      const std::time_t now = std::time(nullptr);
      char when[32];
      std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
      inv["time"] = when;
      inv["revision"] = apps::build_revision();
      inv["build"] = apps::build_features();
      inv["argv"] = std::vector<std::string>(argv, argv + argc);
      inv["resume"] = resume;
      inv["step"] = learner.steps_done();
      inv["ranks"] = world;
      std::ofstream(out / "invocations.jsonl", std::ios::app) << inv.dump() << "\n";
    }
    metrics.open(metrics_path, std::ios::trunc);
    for (const auto& j : history) metrics << j.dump() << "\n";
    metrics.flush();
    // One event file per run folder, rewritten from the history on every start (a resume drops the steps
    // after its checkpoint, as metrics.jsonl does), then appended to at every log point.
    for (const auto& entry : fs::directory_iterator(out))
      if (entry.path().filename().string().starts_with("events.out.tfevents.")) fs::remove(entry.path());
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    const double now = unix_time();
    events = std::make_unique<apps::EventFile>(
        (out / cat("events.out.tfevents.", static_cast<long long>(now), ".", host)).string(), now);
    for (const auto& j : history) to_events(j);
    events->flush();
    std::printf(
        "byol-pretrain: %s\n  %d rank(s) x %lld images per step (global batch %lld) on %s (%s), %lld steps "
        "per epoch, %lld steps, %d threads per rank\n  ResNet-%d x%d (%s stem, base %lld), %lld parameters; "
        "lr %.4g "
        "(base %.4g x %lld/256), tau_base %.4g, weight decay %.3g\n",
        dataset->describe().c_str(), world, static_cast<long long>(lopt.batch_size),
        static_cast<long long>(cfg.batch_size), device_name(device).c_str(), comm->backend(),
        static_cast<long long>(per_epoch), static_cast<long long>(total_steps), omp_get_max_threads(),
        cfg.depth, cfg.width, cfg.stem.c_str(), static_cast<long long>(cfg.base_channels),
        static_cast<long long>(learner.nets.online.param_count()),
        scaled_learning_rate(cfg.base_lr, cfg.batch_size), cfg.base_lr,
        static_cast<long long>(cfg.batch_size), cfg.tau_base, cfg.weight_decay);
    std::fflush(stdout);
  }
  auto log = [&](nlohmann::json j) {
    if (!root) return;
    j["time"] = unix_time();  // seconds since 1970: TensorBoard's wall-time axis
    history.push_back(j);
    metrics << j.dump() << "\n";
    metrics.flush();
    to_events(j);
    events->flush();
  };
  // The NaN/Inf stop. Each step adds its loss to a device-side sum (NaN and Inf survive a sum); the sum
  // is read at every log point and before every checkpoint (check_finite), never inside a step.
  // BYOL_TEST_NAN_AT_STEP=k (tests) makes step k's loss NaN.
  const char* nan_env = std::getenv("BYOL_TEST_NAN_AT_STEP");
  const int64_t nan_at_step = nan_env && *nan_env ? std::atoll(nan_env) : -1;
  Tensor loss_watch = Tensor::zeros({}, DType::f32, device);
  int64_t watch_first = learner.steps_done(), watch_last = -1;  // steps in the sum since the last check
  double watch_lr = 0;
  auto watch = [&](const StepMetrics& m) {
    Tensor loss = m.value(StepMetrics::kLoss);
    if (m.step == nan_at_step) loss = Tensor::full({}, std::nan(""), DType::f32, device);  // fault injection
    loss_watch = ops::add(loss_watch, loss);
    watch_last = m.step;
    watch_lr = m.lr;
  };
  auto check_finite = [&] {
    if (watch_last < watch_first) return;
    const double sum = dp.sum_over_ranks(loss_watch);
    if (!std::isfinite(sum)) {
      const auto found = checkpoints_in(ckpt_dir);
      const std::string when = watch_first == watch_last
                                   ? cat("at step ", watch_last)
                                   : cat("between steps ", watch_first, " and ", watch_last);
      BYOL_FAIL("the loss became ", sum, " ", when, " (lr ", watch_lr, "); stopping. ",
                found.empty() ? std::string("No checkpoint was written yet")
                              : "The last good checkpoint is " + found.back().string(),
                ". Lower train.base_lr or check the data.");
    }
    loss_watch.zero_();
    watch_first = watch_last + 1;
  };
  // curves.svg and metrics.csv from what the run has logged: at every checkpoint, on interruption and at
  // the end, so a long run can be looked at (and a crashed one keeps its picture). Root only.
  const std::string heading = cat(out.filename().string(), ": ResNet-", cfg.depth, " x", cfg.width, " (",
                                  cfg.stem, " stem, base ", cfg.base_channels, "), ", dataset->describe());
  auto write_reports = [&] {
    if (!root) return;
    apps::Series loss{"BYOL loss", "loss", {}}, acc{"kNN top-1 accuracy (k = 200)", "accuracy", {}},
        lr{"learning rate", "lr", {}}, tau{"target EMA tau", "tau", {}},
        probe{"online probe top-1", "accuracy", {}};
    const std::vector<std::string> columns = {"step",
                                              "epoch",
                                              "loss",
                                              "lr",
                                              "tau",
                                              "probe_loss",
                                              "probe_top1",
                                              "images_per_s",
                                              "knn_top1",
                                              "feature_rank",
                                              "projection_rank",
                                              "projection_std",
                                              "train_projection_std",
                                              "train_projection_rank",
                                              "online_target_cos"};
    std::string csv;
    for (size_t c = 0; c < columns.size(); ++c) csv += (c ? "," : "") + columns[c];
    csv += "\n";
    for (const auto& j : history) {
      if (!j.contains("step") || j.contains("skipped_image") || j.contains("collapse_warning")) continue;
      const double s = j["step"].get<double>();
      const auto add = [&](apps::Series& series, const char* key) {
        if (j.contains(key) && j[key].is_number()) series.points.emplace_back(s, j[key].get<double>());
      };
      add(loss, "loss"), add(acc, "knn_top1"), add(lr, "lr"), add(tau, "tau"), add(probe, "probe_top1");
      for (size_t c = 0; c < columns.size(); ++c) {
        if (c) csv += ",";
        if (j.contains(columns[c]) && j[columns[c]].is_number()) csv += j[columns[c]].dump();
      }
      csv += "\n";
    }
    std::vector<apps::Series> panels = {loss};
    if (!acc.points.empty()) panels.push_back(acc);
    if (!probe.points.empty()) panels.push_back(probe);
    panels.push_back(lr);
    panels.push_back(tau);
    apps::write_svg_chart((out / "curves.svg").string(), heading, panels);
    const fs::path tmp = out / "metrics.csv.tmp";
    std::ofstream(tmp, std::ios::trunc) << csv;
    fs::rename(tmp, out / "metrics.csv");
  };
  auto save = [&](int64_t step) {
    check_finite();  // never write a checkpoint after a non-finite loss
    write_reports();
    if (root) {
      save_checkpoint((ckpt_dir / checkpoint_name(step)).string(), learner,
                      {{"run.batch_size", std::to_string(cfg.batch_size)},
                       {"run.seed", std::to_string(cfg.seed)},
                       {"run.total_steps", std::to_string(total_steps)},
                       {"run.world_size", std::to_string(world)},
                       {"run.config_toml", apps::to_toml(cfg)}});
      const auto all = checkpoints_in(ckpt_dir);
      for (size_t i = 0; i + cfg.keep_checkpoints < all.size(); ++i) fs::remove(all[i]);
    }
    comm->barrier();
  };
  const apps::ProgressStyle style = apps::progress_style();
  // Collapse: after the warmup, the spread of the normalised online projections (batch norm in training
  // mode) below 30 % of a healthy one (1/sqrt(d): directions spread over the sphere) at three log points in
  // a row. BYOL keeps it near 80 %; without predictor and target network it falls below 25 % within 40
  // steps of a small synthetic run (tests/apps/pretrain_collapse.sh). Said once, on stderr and in
  // metrics.jsonl.
  const double healthy_std = 1.0 / std::sqrt(static_cast<double>(learner.nets.config().projection_dim));
  int64_t low_since = -1, low_points = 0;
  bool collapse_reported = false;
  auto watch_collapse = [&](int64_t step, double projection_std) {
    if (step <= train.warmup_steps || !(projection_std < 0.3 * healthy_std)) {
      low_since = -1, low_points = 0;
      return;
    }
    if (low_since < 0) low_since = step;
    if (++low_points < 3 || collapse_reported) return;
    collapse_reported = true;
    std::fprintf(stderr,
                 "%swarning: the representation is collapsing: since step %lld the normalised projections' "
                 "standard deviation per dimension is %.2g, against about %.3f (1/sqrt(%lld)) when healthy; "
                 "the online and target outputs agree whatever the image (online-target cosine near 1)\n",
                 apps::progress_break(style), static_cast<long long>(low_since), projection_std, healthy_std,
                 static_cast<long long>(learner.nets.config().projection_dim));
    log({{"step", step},
         {"collapse_warning", {{"since_step", low_since}, {"projection_std", projection_std}}}});
  };
  auto run_knn = [&](int64_t step) {
    if (!knn) return;
    const auto t0 = std::chrono::steady_clock::now();
    const KnnMonitor::Result r = knn->evaluate(learner);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log({{"step", step},
         {"knn_top1", r.top1},
         {"feature_rank", r.features.effective_rank},
         {"projection_rank", r.projections.effective_rank},
         {"projection_std", r.projections.normalized_std}});
    std::printf(
        "%sstep %lld: kNN top-1 %.2f%% (%lld train / %lld test images, %.1f s); effective rank of the "
        "features %.1f / %lld, of the projections %.1f / %lld; normalised projection std %.4f\n",
        apps::progress_break(style), static_cast<long long>(step), 100 * r.top1,
        static_cast<long long>(knn->train->size()), static_cast<long long>(knn->test->size()), secs,
        r.features.effective_rank, static_cast<long long>(learner.nets.embedding_dim()),
        r.projections.effective_rank, static_cast<long long>(learner.nets.config().projection_dim),
        r.projections.normalized_std);
    std::fflush(stdout);
  };

  // The kNN accuracy of the randomly initialised encoder: the baseline at the start of the curve.
  if (!resume && learner.steps_done() == 0) run_knn(0);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const int64_t stop_at = cfg.max_steps > 0 ? std::min(cfg.max_steps, total_steps) : total_steps;
  auto t_start = std::chrono::steady_clock::now(), t_window = t_start;
  int64_t window_images = 0;
  double last_ips = 0;
  int64_t step = learner.steps_done();
  BatchUploader uploader;  // views and labels to the GPU through pinned memory and the copy stream
  // data.skip_corrupt: every image the loader skipped, once, on stderr and in metrics.jsonl, at the end of
  // each epoch, of an epoch the run ends inside, and before a signal's checkpoint (the loader's own report
  // comes only after an epoch's last batch, which the run's last epoch never asks for).
  size_t skips_reported = 0;
  auto report_skips = [&](int64_t epoch) {
    const std::vector<data::SkippedImage> skipped = loader.skipped();
    if (skipped.size() <= skips_reported) return;
    std::fprintf(stderr, "%sbyol-pretrain: rank %d skipped %zu corrupt image(s) in epoch %lld; first: %s\n",
                 root ? apps::progress_break(style) : "", comm->rank(), skipped.size() - skips_reported,
                 static_cast<long long>(epoch), skipped[skips_reported].error.c_str());
    for (size_t i = skips_reported; i < skipped.size(); ++i)
      log({{"step", step},
           {"epoch", epoch},
           {"skipped_image",
            {{"index", skipped[i].index}, {"name", skipped[i].name}, {"error", skipped[i].error}}}});
    skips_reported = skipped.size();
  };
  while (step < stop_at) {
    const int64_t epoch = step / per_epoch;
    loader.start_epoch(epoch, step % per_epoch);
    skips_reported = 0;
    while (step < stop_at) {
      std::optional<data::Batch> batch = loader.next();
      if (!batch) break;
      const std::vector<Tensor> in =
          uploader.upload({batch->views[0], batch->views[1], batch->labels}, device);
      const StepMetrics m = learner.step(in[0], in[1], in[2]);
      watch(m);
      step = learner.steps_done();
      window_images += cfg.batch_size;
      if (step % cfg.log_every == 0 || step == stop_at) {
        check_finite();
        const StepValues v = dp.mean_over_ranks(m);  // this step's metrics: the log point's one read
        const double loss = v.loss, probe = v.probe_accuracy;
        const auto now = std::chrono::steady_clock::now();
        last_ips = window_images / std::max(1e-9, std::chrono::duration<double>(now - t_window).count());
        t_window = now;
        window_images = 0;
        // The collapse monitor (docs/byol.md, section 7): the spread of this step's online projections (view
        // 1 of rank 0's batch, batch norm in training mode), and the mean online-target cosine: each of the
        // loss's two terms is 2 - 2 cos, so it is 1 - loss / 4.
        // At most 256 rows of view 1: a small copy to the host and a 256 x d Gram matrix, whatever the batch.
        const Tensor& z = learner.last_projections();
        const eval::CollapseStats cs =
            root
                ? eval::collapse_stats(ops::slice(z, 0, std::min<int64_t>({z.size(0), lopt.batch_size, 256})))
                : eval::CollapseStats{};
        log({{"step", step},
             {"epoch", static_cast<double>(step) / per_epoch},
             {"loss", loss},
             {"lr", m.lr},
             {"tau", m.tau},
             {"probe_loss", v.probe_loss},
             {"probe_top1", probe},
             {"images_per_s", last_ips},
             {"train_projection_std", cs.normalized_std},
             {"train_projection_rank", cs.effective_rank},
             {"online_target_cos", 1 - v.regression_loss / 4}});
        if (root) watch_collapse(step, cs.normalized_std);
        if (root) {
          const double eta = (stop_at - step) * cfg.batch_size / std::max(last_ips, 1e-9);
          const std::string line =
              cat("epoch ", fixed(static_cast<double>(step) / per_epoch, 2), "  step ", step, "/",
                  total_steps, "  loss ", fixed(loss, 4), "  lr ", fixed(m.lr, 4), "  tau ", fixed(m.tau, 5),
                  "  probe ", fixed(100 * probe, 1), "%  std ", fixed(cs.normalized_std, 4), "  cos ",
                  fixed(1 - v.regression_loss / 4, 3), "  ", fixed(last_ips, 0), " img/s  ETA ",
                  format_duration(eta));
          std::fputs(apps::progress_text(style, line).c_str(), stdout);
          std::fflush(stdout);
        }
      }
      if (cfg.knn_every > 0 && step % cfg.knn_every == 0 && step < total_steps) run_knn(step);
      int sig = g_signal.load();
      if (world > 1) {
        // Ranks see a signal at different steps. Acting on it alone, a rank would enter save()'s
        // collectives while the others wait in the next step's: a hang. So the ranks agree at log points
        // (the same steps everywhere), and a rank the signal missed stops as if SIGTERM had come.
        const bool log_point = step % cfg.log_every == 0 || step == stop_at;
        sig = log_point && dp.sum_over_ranks(Tensor::full({}, sig != 0 ? 1.0 : 0.0, DType::f32, device)) > 0
                  ? (sig != 0 ? sig : SIGTERM)
                  : 0;
      }
      if (sig != 0) {
        report_skips(epoch);
        save(step);
        if (root)
          std::printf("\n%s at step %lld: checkpoint written to %s; continue with --resume\n",
                      sig == SIGINT ? "interrupted" : "terminated", static_cast<long long>(step),
                      (ckpt_dir / checkpoint_name(step)).string().c_str());
        return 128 + sig;
      }
      if (step % cfg.checkpoint_every == 0 && step < stop_at) save(step);
    }
    report_skips(epoch);
  }
  if (root) std::fputs(apps::progress_break(style), stdout);
  save(step);
  if (step < total_steps) {
    if (root)
      std::printf("stopped at step %lld of %lld (run.max_steps); continue with --resume\n",
                  static_cast<long long>(step), static_cast<long long>(total_steps));
    return 0;
  }
  run_knn(step);
  if (root) {
    export_encoder((out / "encoder.safetensors").string(), learner.nets.online, "encoder.",
                   &learner.nets.config().encoder);
    write_reports();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    std::printf("done: %lld steps in %s; encoder: %s, curves: %s, metrics: %s\n",
                static_cast<long long>(step), format_duration(secs).c_str(),
                (out / "encoder.safetensors").string().c_str(), (out / "curves.svg").string().c_str(),
                metrics_path.string().c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<comm::Communicator> fallback;
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    // With several ranks, bring the whole job down so no rank waits forever in a collective.
    const comm::DistEnv env = comm::detect_environment();
    if (env.world_size > 1 && comm::mpi_compiled()) {
      try {
        fallback = comm::make_cpu_communicator();
        fallback->abort(e.what());
      } catch (...) {
      }
    }
    std::fprintf(stderr, "\nerror: %s\n", error_text(e, apps::verbose_errors(argc, argv)).c_str());
    return 1;
  }
}
