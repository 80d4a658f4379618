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
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

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
#include "engine/cpu/cpu_backend.h"
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

// data.normalization, validated with the configuration.
data::Normalization normalization(const std::string& name) {
  return data::Normalization::named(name).value();
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

// --- the command line -----------------------------------------------------------------------------

struct CommandLine {
  std::string config_path;
  std::vector<std::string> overrides;
  bool print_config = false, auto_resume = false, dry_run = false;
  bool resume = false;      // --resume given
  std::string resume_from;  // its argument (a run folder or a checkpoint), if any
};

// Parses argv into `cl`; returns an exit status when the program stops here: --help and --version exit 0,
// a usage error prints CLI11's message and exits 2 (as byol-eval and byol-pack). An error while running
// exits 1, a signal 128 + its number.
std::optional<int> parse_command_line(int argc, char** argv, CommandLine& cl) {
  CLI::App cli{"byol-pretrain: BYOL self-supervised pretraining"};
  cli.add_option("-c,--config", cl.config_path, "TOML configuration (see configs/README.md)")
      ->check(CLI::ExistingFile);
  cli.add_option("-s,--set", cl.overrides, "override a key: section.key=value (repeatable)");
  CLI::Option* resume_opt =
      cli.add_option("--resume", cl.resume_from,
                     "continue a run: alone, the one in run.out (its config.toml, the newest checkpoint); "
                     "with a run folder, "
                     "that run; with a checkpoint file, from that checkpoint. --set keys still apply");
  resume_opt->expected(0, 1);
  cli.add_flag(
      "--auto-resume", cl.auto_resume,
      "continue the run in run.out when it has a checkpoint, else start it (for jobs that are rerun)");
  cli.add_flag("--print-config", cl.print_config, "print the effective configuration and exit");
  cli.add_flag(
      "--dry-run", cl.dry_run,
      "open the data, build the networks, print the steps, sizes and the first batch's shapes, and exit "
      "without writing anything");
  cli.set_version_flag("--version", apps::version_line("byol-pretrain"));
  bool verbose_flag = false;  // read by main() through apps::verbose_errors, before and after parsing
  cli.add_flag("--verbose", verbose_flag,
               "errors name the source location that raised them (also BYOL_VERBOSE=1)");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = cli.exit(e);
    return rc == 0 ? 0 : 2;
  }
  cl.resume = resume_opt->count() > 0;
  return std::nullopt;
}

// The effective configuration: the TOML file, then the --set keys. Resuming without --config, the run's
// own config.toml instead (in the folder --resume names, or run.out). resume_checkpoint is set to
// --resume FILE's checkpoint.
PretrainConfig resolve_config(CommandLine& cl, fs::path& resume_checkpoint) {
  BYOL_CHECK(!(cl.resume && cl.auto_resume), "give --resume or --auto-resume, not both");
  fs::path resume_dir;  // --resume FOLDER or FILE: that run's folder
  if (cl.resume && !cl.resume_from.empty()) {
    const fs::path p = cl.resume_from;
    if (fs::is_directory(p)) {
      resume_dir = p;
    } else if (fs::is_regular_file(p)) {
      BYOL_CHECK(p.parent_path().filename() == "checkpoints", "--resume ", p.string(),
                 ": a checkpoint file must lie in a run folder's checkpoints/ "
                 "(run.out/checkpoints/step_*.safetensors)");
      resume_checkpoint = p;
      resume_dir = p.parent_path().parent_path();
    } else {
      BYOL_FAIL("--resume ", p.string(), ": neither a run folder nor a checkpoint file");
    }
  }
  PretrainConfig cfg;
  apps::load_config(cfg, cl.config_path, cl.overrides);
  if (!resume_dir.empty()) cfg.out = resume_dir.string();  // the run named by --resume, whatever run.out says
  if ((cl.resume || cl.auto_resume) && cl.config_path.empty() &&
      fs::exists(fs::path(cfg.out) / "config.toml")) {
    cl.config_path = (fs::path(cfg.out) / "config.toml").string();
    // run.max_steps stopped one invocation; it is not part of the run (B stopped at 7 would stop at 7 again)
    std::vector<std::string> sets{"run.max_steps=0"};
    sets.insert(sets.end(), cl.overrides.begin(), cl.overrides.end());
    cfg = PretrainConfig{};
    apps::load_config(cfg, cl.config_path, sets);
    if (!resume_dir.empty()) cfg.out = resume_dir.string();
  }
  apps::validate(cfg);
  return cfg;
}

// --- the run ---------------------------------------------------------------------------------------

// One pretraining run on this rank. The constructor sets it up (device, communicator, data, learner,
// data parallelism, kNN monitor); then either dry_run(), or open_outputs(), train() and finish().
class PretrainRun {
 public:
  explicit PretrainRun(const PretrainConfig& cfg);
  int dry_run();
  // Continues from a checkpoint (resume) or starts the run; writes config.toml and invocations.jsonl, and
  // rewrites metrics.jsonl and the event file from what the checkpoint's run had logged.
  void open_outputs(bool resume, bool auto_resume, const fs::path& resume_checkpoint,
                    const std::vector<std::string>& argv);
  // Steps until run.max_steps or the end of the run; 128 + the signal's number when a signal stopped it.
  int train();
  // The last checkpoint; at the end of the run also the final kNN, the encoder and the reports.
  int finish();

 private:
  void print_banner();
  // A batch's two views and labels on the device: uploaded as the loader made them, or (data.augment_on =
  // "gpu") augmented there from the uploaded images.
  std::vector<Tensor> upload_views(const data::Batch& b) {
    if (!lopt_.raw) return uploader_->upload({b.views[0], b.views[1], b.labels}, device_);
    const data::AugmentOptions& aug = loader_->augment_options();
    return upload_and_augment(*uploader_, b.pixels, b.sources, b.params, aug.height, aug.width,
                              aug.normalization.mean, aug.normalization.std, device_, {b.labels});
  }
  // "bf16" or "fp32", with "(auto)" where train.precision = "auto" chose it, and ", bf16 activations" on a
  // GPU.
  std::string precision_text() const {
    return std::string(bf16_ ? "bf16" : "fp32") +
           (bf16_ && (cfg_.cpu_bf16_activations || models::bf16_activations_by_default(device_))
                ? ", bf16 activations"
                : "") +
           (cfg_.precision == "auto" ? " (auto)" : "");
  }
  void log(nlohmann::json j);  // metrics.jsonl and the event file (root only)
  void to_events(const nlohmann::json& j);
  void watch(const StepMetrics& m);
  void check_finite();
  void log_point(const StepMetrics& m);
  void watch_collapse(int64_t step, double projection_std);
  void run_knn(int64_t step);
  std::string from_root(const std::string& text);
  int agreed_signal();
  int stop_on_signal(int sig, int64_t epoch);
  void report_skips(int64_t epoch);
  void write_reports();
  void save(int64_t step);
  bool is_log_point() const { return step_ % cfg_.log_every == 0 || step_ == stop_at_; }

  const PretrainConfig cfg_;
  Device device_;
  std::unique_ptr<comm::Communicator> comm_;
  bool root_ = true;
  int world_ = 1;
  std::shared_ptr<const data::Dataset> dataset_;
  data::LoaderOptions lopt_;
  std::unique_ptr<data::Loader> loader_;
  int64_t per_epoch_ = 0, total_steps_ = 0;
  TrainConfig train_;
  std::unique_ptr<Learner> learner_;
  std::unique_ptr<DataParallel> dp_;
  std::unique_ptr<KnnMonitor> knn_;
  const apps::ProgressStyle style_ = apps::progress_style();

  // Outputs (rank 0 writes them).
  fs::path out_, ckpt_dir_, metrics_path_;
  std::string heading_;                  // of curves.svg
  std::vector<nlohmann::json> history_;  // metrics entries, kept for the plot and rewritten on resume
  std::ofstream metrics_;
  std::unique_ptr<apps::EventFile> events_;  // TensorBoard's copy of metrics.jsonl's scalars
  bool resume_ = false;

  // The NaN/Inf stop. Each step adds its loss to a device-side sum (NaN and Inf survive a sum); the sum
  // is read at every log point and before every checkpoint (check_finite), never inside a step.
  // BYOL_TEST_NAN_AT_STEP=k (tests) makes step k's loss NaN.
  int64_t nan_at_step_ = -1;
  Tensor loss_watch_;
  int64_t watch_first_ = 0, watch_last_ = -1;  // steps in the sum since the last check
  double watch_lr_ = 0;

  // Collapse: after the warmup, the spread of the normalised online projections (batch norm in training
  // mode) below 30 % of a healthy one (1/sqrt(d): directions spread over the sphere) at three log points in
  // a row. BYOL keeps it near 80 %; without predictor and target network it falls below 25 % within 40
  // steps of a small synthetic run (tests/apps/pretrain_collapse.sh). Said once, on stderr and in
  // metrics.jsonl.
  double healthy_std_ = 0;
  int64_t low_since_ = -1, low_points_ = 0;
  bool collapse_reported_ = false;

  // The loop.
  int64_t step_ = 0, stop_at_ = 0;
  std::chrono::steady_clock::time_point t_start_, t_window_;
  int64_t window_images_ = 0;
  double last_ips_ = 0;
  // data.skip_corrupt: every image the loader skipped, once, on stderr and in metrics.jsonl, at the end of
  // each epoch, of an epoch the run ends inside, and before a signal's checkpoint (the loader's own report
  // comes only after an epoch's last batch, which the run's last epoch never asks for).
  size_t skips_reported_ = 0;
  std::unique_ptr<BatchUploader> uploader_;  // views and labels to the GPU through pinned memory
  bool bf16_ = false;                        // train.precision resolved ("auto": bf16 where faster)
};

PretrainRun::PretrainRun(const PretrainConfig& cfg) : cfg_(cfg) {
  const comm::DistEnv dist_env = comm::detect_environment();
  device_ =
      apps::resolve_device(cfg_.device, dist_env.local_rank, dist_env.world_size, "config key 'run.device'");
  // bf16 on a GPU stores the encoder's activations in bf16 (models::bf16_activations_by_default). "auto"
  // picks it only where it measured faster: so far CPUs with AMX tiles; the GPU path has not yet been timed.
  bf16_ = cfg_.precision == "bf16" ||
          (cfg_.precision == "auto" && device_.is_cpu() && cpu::bf16_measured_faster());
  BYOL_CHECK(!cfg_.cpu_bf16_activations || bf16_,
             "train.cpu_bf16_activations = true stores activations in bf16 ",
             "with bf16 precision, and train.precision = \"", cfg_.precision, "\" chose fp32 on ",
             device_name(device_), ": set train.precision = \"bf16\" or train.cpu_bf16_activations = false");
  BYOL_CHECK(cfg_.augment_on == "cpu" || device_.is_cuda(),
             "data.augment_on = \"gpu\" augments on the GPU, and ", "run.device = \"", cfg_.device,
             "\" chose ", device_name(device_), ": set data.augment_on = \"cpu\" or run.device = \"cuda\"");
  BYOL_CHECK(!cfg_.cuda_graph || device_.is_cuda(),
             "train.cuda_graph = true captures the step on a GPU, and ", "run.device = \"", cfg_.device,
             "\" chose ", device_name(device_), ": set train.cuda_graph = false or run.device = \"cuda\"");
  cuda_set_tf32(cfg_.tf32);
  // Every rank must train on the same kind of device: with run.device = "auto", a rank that sees no GPU
  // would take the CPU and an MPI communicator while the others wait in NCCL's start-up, forever. One MPI
  // sum first; every rank then fails alike, naming the counts.
  if (dist_env.world_size > 1 && comm::mpi_compiled()) {
    const std::unique_ptr<comm::Communicator> boot = comm::make_cpu_communicator();
    const Tensor on_gpu = Tensor::full({1}, device_.is_cuda() ? 1.0 : 0.0, DType::f64);
    boot->all_reduce_sum(on_gpu);
    const long long gpus = std::llround(on_gpu.item());
    BYOL_CHECK(gpus == 0 || gpus == dist_env.world_size, "run.device = \"", cfg_.device, "\": ", gpus, " of ",
               dist_env.world_size,
               " ranks chose a GPU and the others the CPU (this rank: ", device_name(device_),
               "); all ranks train on one kind of device: check nvidia-smi and CUDA_VISIBLE_DEVICES on every "
               "node, or set run.device = \"cuda\" or \"cpu\"");
  }
  comm_ = make_communicator(device_);
  root_ = comm_->is_root();
  world_ = comm_->world_size();
  if (cfg_.threads > 0) omp_set_num_threads(cfg_.threads);
  BYOL_CHECK(cfg_.batch_size % world_ == 0, "train.batch_size ", cfg_.batch_size, " is not divisible by the ",
             world_, " ranks");
  BYOL_CHECK((cfg_.batch_size / world_) % cfg_.accumulation_steps == 0, "train.accumulation_steps ",
             cfg_.accumulation_steps, " does not divide each rank's batch of ", cfg_.batch_size / world_,
             " (train.batch_size ", cfg_.batch_size, " over ", world_, " ranks)");

  // Data.
  dataset_ = open_for_key("data.train", cfg_.train);
  lopt_.batch_size = cfg_.batch_size / world_;
  lopt_.workers = cfg_.workers;
  lopt_.seed = cfg_.seed;
  lopt_.rank = comm_->rank();
  lopt_.world_size = world_;
  lopt_.skip_corrupt = cfg_.skip_corrupt;
  lopt_.report_skipped = false;          // reported by report_skips, for epochs cut short too, and logged
  lopt_.raw = cfg_.augment_on == "gpu";  // decoded images and parameters; upload_and_augment makes the views
  loader_ = std::make_unique<data::Loader>(dataset_, augment_options(cfg_), lopt_);
  per_epoch_ = loader_->batches_per_epoch();
  BYOL_CHECK(per_epoch_ > 0, "data.train: ", dataset_->describe(),
             " has fewer images per rank than one batch of ", lopt_.batch_size);
  total_steps_ = std::max<int64_t>(1, static_cast<int64_t>(cfg_.epochs * per_epoch_));

  // The learner.
  train_.batch_size = cfg_.batch_size;
  train_.total_steps = total_steps_;
  train_.warmup_steps =
      std::min<int64_t>(total_steps_, static_cast<int64_t>(cfg_.warmup_epochs * per_epoch_));
  train_.base_lr = cfg_.base_lr;
  train_.weight_decay = cfg_.weight_decay;
  train_.tau_base = cfg_.tau_base;
  train_.probe_classes = dataset_->num_classes();
  train_.probe_lr = cfg_.probe_lr;
  train_.seed = cfg_.seed;
  train_.copy_target_init = cfg_.target_init == "copy";
  train_.predictor = cfg_.predictor;
  train_.target_network = cfg_.target_network;
  train_.stop_gradient = cfg_.stop_gradient;
  train_.accumulation_steps = cfg_.accumulation_steps;
  train_.objective = {cfg_.beta, cfg_.temperature};
  train_.constant_tau = cfg_.tau_schedule == "constant";
  train_.precision = bf16_ ? TrainConfig::Precision::bf16 : TrainConfig::Precision::fp32;
  train_.cuda_graph = cfg_.cuda_graph;
  train_.bf16_activations = cfg_.cpu_bf16_activations;
  learner_ = std::make_unique<Learner>(network_config(cfg_), train_);
  learner_->to(device_);  // before DataParallel: its collectives run on the learner's buffers
  dp_ =
      std::make_unique<DataParallel>(*learner_, *comm_, DataParallelOptions{size_t(25) << 20, cfg_.sync_bn});

  if (!cfg_.knn_train.empty() && root_) {
    if (const std::string w = data::test_overlap_warning(cfg_.knn_train, cfg_.knn_test); !w.empty())
      std::fprintf(stderr, "warning: data.knn_train / data.knn_test: %s\n", w.c_str());
    knn_ = std::make_unique<KnnMonitor>();
    knn_->train =
        subset(open_for_key("data.knn_train", cfg_.knn_train), cfg_.knn_train_images, cfg_.seed + 1);
    knn_->test = subset(open_for_key("data.knn_test", cfg_.knn_test), cfg_.knn_test_images, cfg_.seed + 2);
    knn_->transform = data::AugmentOptions::eval(cfg_.side, normalization(cfg_.normalization), 1.0);
    knn_->workers = std::max(cfg_.workers, 1);
    BYOL_CHECK(knn_->train->has_labels() && knn_->test->has_labels(),
               "data.knn_train / data.knn_test must be labeled");
  }

  out_ = cfg_.out;
  ckpt_dir_ = out_ / "checkpoints";
  metrics_path_ = out_ / "metrics.jsonl";
  heading_ = cat(out_.filename().string(), ": ResNet-", cfg_.depth, " x", cfg_.width, " (", cfg_.stem,
                 " stem, base ", cfg_.base_channels, "), ", dataset_->describe());
  const char* nan_env = std::getenv("BYOL_TEST_NAN_AT_STEP");
  nan_at_step_ = nan_env && *nan_env ? std::atoll(nan_env) : -1;
  healthy_std_ = 1.0 / std::sqrt(static_cast<double>(learner_->nets.config().projection_dim));
}

// What the run would do, without writing anything: the plan, the sizes of the flat buffers, the first
// batch as the loader makes it (so a bad dataset or augmentation shows now, not hours later).
int PretrainRun::dry_run() {
  const Learner& learner = *learner_;
  if (root_) {
    const auto mib = [](const Tensor& t) { return t.defined() ? t.numel() * 4.0 / 1048576.0 : 0.0; };
    const double online = mib(learner.nets.online.params()), target = mib(learner.nets.target.params()),
                 stats = mib(learner.nets.online.stats()) + mib(learner.nets.target.stats()),
                 probe = mib(learner.probe_params.params());
    std::printf(
        "byol-pretrain --dry-run: %s\n  %d rank(s) x %lld images per step, %lld steps per epoch, %lld "
        "steps "
        "(%lld warmup), device %s, precision %s\n  online network %lld parameters (%.1f MiB), target %.1f "
        "MiB, BN "
        "statistics %.2f MiB, probe %.2f MiB\n  per rank, float32: parameters + gradients + LARS momentum "
        "+ "
        "target = %.1f MiB; activations come on top and grow with the batch and the image side\n",
        dataset_->describe().c_str(), world_, static_cast<long long>(lopt_.batch_size),
        static_cast<long long>(per_epoch_), static_cast<long long>(total_steps_),
        static_cast<long long>(train_.warmup_steps), device_name(device_).c_str(), precision_text().c_str(),
        static_cast<long long>(learner.nets.online.param_count()), online, target, stats, probe,
        3 * online + target + stats + 3 * probe);
  }
  loader_->start_epoch(0);
  const std::optional<data::Batch> b = loader_->next();
  BYOL_CHECK(b.has_value(), "--dry-run: the loader gave no batch");
  if (root_ && knn_)
    std::printf("  kNN monitor: %s / %s\n", knn_->train->describe().c_str(), knn_->test->describe().c_str());
  if (root_ && lopt_.raw)
    std::printf(
        "  first batch: %zu decoded images (%lld bytes) and their views' parameters, augmented on the "
        "GPU; labels %s\n",
        b->sources.size(), static_cast<long long>(b->pixels.numel()),
        b->labels.defined() ? b->labels.describe().c_str() : "none");
  else if (root_)
    std::printf("  first batch: views %s and %s, labels %s\n", b->views[0].describe().c_str(),
                b->views[1].describe().c_str(), b->labels.defined() ? b->labels.describe().c_str() : "none");
  return 0;
}

void PretrainRun::open_outputs(bool resume, bool auto_resume, const fs::path& resume_checkpoint,
                               const std::vector<std::string>& argv) {
  if (root_) {
    fs::create_directories(ckpt_dir_);
    // A run killed while writing a checkpoint (or the encoder) left its temporary file behind.
    for (const fs::path& dir : {ckpt_dir_, out_})
      for (const std::string& stale : remove_stale_temporaries(dir.string()))
        std::printf("removed %s (the temporary file of an interrupted write)\n", stale.c_str());
  }
  comm_->barrier();
  // The run folder's newest checkpoint as the root sees it: ranks on other nodes may list a shared file
  // system differently (attribute caching), and ranks that decided apart would resume from different steps,
  // or some would resume while others broadcast fresh weights (a hang).
  const std::vector<fs::path> found = checkpoints_in(ckpt_dir_);
  const std::string newest = from_root(found.empty() ? std::string() : found.back().string());
  if (auto_resume) {
    resume = !newest.empty();
    if (root_)
      std::printf("--auto-resume: %s\n",
                  resume ? "a checkpoint exists, continuing the run" : "no checkpoint yet, starting the run");
  }
  resume_ = resume;
  if (resume) {
    BYOL_CHECK(!newest.empty(), "--resume: no checkpoint in ", ckpt_dir_.string());
    const std::string ckpt = resume_checkpoint.empty() ? newest : resume_checkpoint.string();
    const auto meta = load_checkpoint(ckpt, *learner_);
    BYOL_CHECK(metadata_int(meta, "run.batch_size", ckpt) == cfg_.batch_size &&
                   metadata_uint(meta, "run.seed", ckpt) == cfg_.seed &&
                   metadata_int(meta, "run.total_steps", ckpt) == total_steps_,
               "--resume: ", ckpt, " was written with another batch size, seed or length (",
               meta.at("run.batch_size"), ", ", meta.at("run.seed"), ", ", meta.at("run.total_steps"),
               " steps); resuming would not continue the same run");
    if (root_) {
      // Keep what the run had logged when it wrote the checkpoint: every line up to its step (step S's
      // log line and kNN evaluation come before checkpoint S), except the final kNN evaluation, which
      // follows the last checkpoint and is run again. Later lines are logged again by this run.
      const int64_t resumed = learner_->steps_done();
      std::ifstream in(metrics_path_);
      for (std::string line; std::getline(in, line);) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
          continue;
        const int64_t s = j["step"].get<int64_t>();
        if (s < resumed || (s == resumed && !(resumed == total_steps_ && j.contains("knn_top1"))))
          history_.push_back(j);
      }
      std::printf("resumed from %s at step %lld\n", ckpt.c_str(),
                  static_cast<long long>(learner_->steps_done()));
    }
  } else {
    BYOL_CHECK(newest.empty(), "run.out ", out_.string(),
               " already holds checkpoints: pass --resume (or --auto-resume) to continue that run, or choose "
               "another run.out");
    dp_->broadcast_from_root();
  }
  if (root_) {
    {  // atomically: a resume reads it back (--resume RUN_FOLDER, --auto-resume)
      const fs::path tmp = out_ / "config.toml.tmp";
      std::ofstream(tmp, std::ios::trunc) << apps::to_toml(cfg_);
      fs::rename(tmp, out_ / "config.toml");
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
      inv["argv"] = argv;
      inv["resume"] = resume;
      inv["step"] = learner_->steps_done();
      inv["ranks"] = world_;
      std::ofstream(out_ / "invocations.jsonl", std::ios::app) << inv.dump() << "\n";
    }
    metrics_.open(metrics_path_, std::ios::trunc);
    for (const auto& j : history_) metrics_ << j.dump() << "\n";
    metrics_.flush();
    // One event file per run folder, rewritten from the history on every start (a resume drops the steps
    // after its checkpoint, as metrics.jsonl does), then appended to at every log point.
    for (const auto& entry : fs::directory_iterator(out_))
      if (entry.path().filename().string().starts_with("events.out.tfevents.")) fs::remove(entry.path());
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    const double now = unix_time();
    events_ = std::make_unique<apps::EventFile>(
        (out_ / cat("events.out.tfevents.", static_cast<long long>(now), ".", host)).string(), now);
    for (const auto& j : history_) to_events(j);
    events_->flush();
    print_banner();
  }
  loss_watch_ = Tensor::zeros({}, DType::f32, device_);
  watch_first_ = learner_->steps_done();
}

void PretrainRun::print_banner() {
  std::printf(
      "byol-pretrain: %s\n  %d rank(s) x %lld images per step (global batch %lld) on %s (%s), %lld steps "
      "per epoch, %lld steps, %d threads per rank, precision %s\n  ResNet-%d x%d (%s stem, base %lld), %lld "
      "parameters; "
      "lr %.4g "
      "(base %.4g x %lld/256), tau_base %.4g, weight decay %.3g\n",
      dataset_->describe().c_str(), world_, static_cast<long long>(lopt_.batch_size),
      static_cast<long long>(cfg_.batch_size), device_name(device_).c_str(), comm_->backend(),
      static_cast<long long>(per_epoch_), static_cast<long long>(total_steps_), omp_get_max_threads(),
      precision_text().c_str(), cfg_.depth, cfg_.width, cfg_.stem.c_str(),
      static_cast<long long>(cfg_.base_channels), static_cast<long long>(learner_->nets.online.param_count()),
      scaled_learning_rate(cfg_.base_lr, cfg_.batch_size), cfg_.base_lr,
      static_cast<long long>(cfg_.batch_size), cfg_.tau_base, cfg_.weight_decay);
  if (lopt_.raw)
    std::printf(
        "  data.augment_on: gpu (the loader decodes and draws each view's parameters; the CUDA kernel "
        "makes the views from the uploaded images)\n");
  if (cfg_.cuda_graph)
    std::printf("  train.cuda_graph: the step runs eagerly %lld times, then as one captured CUDA graph\n",
                static_cast<long long>(kGraphWarmupSteps));
  std::fflush(stdout);
}

// The training loop: one screen. Everything a step does beyond Learner::step happens at log points
// (log_point), kNN evaluations (run_knn), signals (agreed_signal) and checkpoints (save).
int PretrainRun::train() {
  // The kNN accuracy of the randomly initialised encoder: the baseline at the start of the curve.
  if (!resume_ && learner_->steps_done() == 0) run_knn(0);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  // SIGUSR1 as SIGTERM: mpirun forwards it to every rank as it is, and batch schedulers send it ahead of a
  // time limit (Slurm's --signal=USR1@120), where SIGTERM may come with a SIGKILL close behind.
  std::signal(SIGUSR1, on_signal);
  stop_at_ = cfg_.max_steps > 0 ? std::min(cfg_.max_steps, total_steps_) : total_steps_;
  t_start_ = t_window_ = std::chrono::steady_clock::now();
  step_ = learner_->steps_done();
  uploader_ = std::make_unique<BatchUploader>();
  while (step_ < stop_at_) {
    const int64_t epoch = step_ / per_epoch_;
    loader_->start_epoch(epoch, step_ % per_epoch_);
    skips_reported_ = 0;
    while (step_ < stop_at_) {
      std::optional<data::Batch> batch = loader_->next();
      if (!batch) break;
      const std::vector<Tensor> in = upload_views(*batch);
      const StepMetrics m = learner_->step(in[0], in[1], in[2]);
      watch(m);
      step_ = learner_->steps_done();
      window_images_ += cfg_.batch_size;
      if (is_log_point()) log_point(m);
      if (cfg_.knn_every > 0 && step_ % cfg_.knn_every == 0 && step_ < total_steps_) run_knn(step_);
      if (const int sig = agreed_signal(); sig != 0) return stop_on_signal(sig, epoch);
      if (step_ % cfg_.checkpoint_every == 0 && step_ < stop_at_) save(step_);
    }
    report_skips(epoch);
  }
  return 0;
}

int PretrainRun::finish() {
  if (root_) std::fputs(apps::progress_break(style_), stdout);
  save(step_);
  if (step_ < total_steps_) {
    if (root_)
      std::printf("stopped at step %lld of %lld (run.max_steps); continue with --resume\n",
                  static_cast<long long>(step_), static_cast<long long>(total_steps_));
    return 0;
  }
  run_knn(step_);
  if (root_) {
    export_encoder((out_ / "encoder.safetensors").string(), learner_->nets.online, "encoder.",
                   &learner_->nets.config().encoder);
    write_reports();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start_).count();
    std::printf("done: %lld steps in %s; encoder: %s, curves: %s, metrics: %s\n",
                static_cast<long long>(step_), format_duration(secs).c_str(),
                (out_ / "encoder.safetensors").string().c_str(), (out_ / "curves.svg").string().c_str(),
                metrics_path_.string().c_str());
  }
  return 0;
}

void PretrainRun::to_events(const nlohmann::json& j) {
  std::vector<std::pair<std::string, float>> values;
  for (const auto& [key, value] : j.items())
    if (value.is_number() && key != "step" && key != "time")
      values.emplace_back(tensorboard_tag(key), value.get<float>());
  const double when = j.contains("time") && j["time"].is_number() ? j["time"].get<double>() : unix_time();
  events_->scalars(j["step"].get<int64_t>(), when, values);
}

void PretrainRun::log(nlohmann::json j) {
  if (!root_) return;
  j["time"] = unix_time();  // seconds since 1970: TensorBoard's wall-time axis
  history_.push_back(j);
  metrics_ << j.dump() << "\n";
  metrics_.flush();
  to_events(j);
  events_->flush();
}

void PretrainRun::watch(const StepMetrics& m) {
  Tensor loss = m.value(StepMetrics::kLoss);
  if (m.step == nan_at_step_) loss = Tensor::full({}, std::nan(""), DType::f32, device_);  // fault injection
  loss_watch_ = ops::add(loss_watch_, loss);
  watch_last_ = m.step;
  watch_lr_ = m.lr;
}

void PretrainRun::check_finite() {
  if (watch_last_ < watch_first_) return;
  const double sum = dp_->sum_over_ranks(loss_watch_);
  if (!std::isfinite(sum)) {
    const auto found = checkpoints_in(ckpt_dir_);
    const std::string when = watch_first_ == watch_last_
                                 ? cat("at step ", watch_last_)
                                 : cat("between steps ", watch_first_, " and ", watch_last_);
    BYOL_FAIL("the loss became ", sum, " ", when, " (lr ", watch_lr_, "); stopping. ",
              found.empty() ? std::string("No checkpoint was written yet")
                            : "The last good checkpoint is " + found.back().string(),
              ". Lower train.base_lr or check the data.");
  }
  loss_watch_.zero_();
  watch_first_ = watch_last_ + 1;
}

// A log point: the NaN/Inf check, this step's metrics (the log point's one read of the device), the
// throughput, the collapse monitor, a line in metrics.jsonl and the progress line.
void PretrainRun::log_point(const StepMetrics& m) {
  check_finite();
  const StepValues v = dp_->mean_over_ranks(m);
  const double loss = v.loss, probe = v.probe_accuracy;
  const auto now = std::chrono::steady_clock::now();
  last_ips_ = window_images_ / std::max(1e-9, std::chrono::duration<double>(now - t_window_).count());
  t_window_ = now;
  window_images_ = 0;
  // The collapse monitor (docs/byol.md, section 7): the spread of this step's online projections (view
  // 1 of rank 0's batch, batch norm in training mode), and the mean online-target cosine: each of the
  // loss's two terms is 2 - 2 cos, so it is 1 - loss / 4.
  // At most 256 rows of view 1: a small copy to the host and a 256 x d Gram matrix, whatever the batch.
  const Tensor& z = learner_->last_projections();
  const eval::CollapseStats cs =
      root_ ? eval::collapse_stats(ops::slice(z, 0, std::min<int64_t>({z.size(0), lopt_.batch_size, 256})))
            : eval::CollapseStats{};
  log({{"step", step_},
       {"epoch", static_cast<double>(step_) / per_epoch_},
       {"loss", loss},
       {"lr", m.lr},
       {"tau", m.tau},
       {"probe_loss", v.probe_loss},
       {"probe_top1", probe},
       {"images_per_s", last_ips_},
       {"train_projection_std", cs.normalized_std},
       {"train_projection_rank", cs.effective_rank},
       {"online_target_cos", 1 - v.regression_loss / 4}});
  if (!root_) return;
  watch_collapse(step_, cs.normalized_std);
  const double eta = (stop_at_ - step_) * cfg_.batch_size / std::max(last_ips_, 1e-9);
  const std::string line = cat("epoch ", fixed(static_cast<double>(step_) / per_epoch_, 2), "  step ", step_,
                               "/", total_steps_, "  loss ", fixed(loss, 4), "  lr ", fixed(m.lr, 4),
                               "  tau ", fixed(m.tau, 5), "  probe ", fixed(100 * probe, 1), "%  std ",
                               fixed(cs.normalized_std, 4), "  cos ", fixed(1 - v.regression_loss / 4, 3),
                               "  ", fixed(last_ips_, 0), " img/s  ETA ", format_duration(eta));
  std::fputs(apps::progress_text(style_, line).c_str(), stdout);
  std::fflush(stdout);
}

void PretrainRun::watch_collapse(int64_t step, double projection_std) {
  if (step <= train_.warmup_steps || !(projection_std < 0.3 * healthy_std_)) {
    low_since_ = -1, low_points_ = 0;
    return;
  }
  if (low_since_ < 0) low_since_ = step;
  if (++low_points_ < 3 || collapse_reported_) return;
  collapse_reported_ = true;
  std::fprintf(stderr,
               "%swarning: the representation is collapsing: since step %lld the normalised projections' "
               "standard deviation per dimension is %.2g, against about %.3f (1/sqrt(%lld)) when healthy; "
               "the online and target outputs agree whatever the image (online-target cosine near 1)\n",
               apps::progress_break(style_), static_cast<long long>(low_since_), projection_std, healthy_std_,
               static_cast<long long>(learner_->nets.config().projection_dim));
  log({{"step", step},
       {"collapse_warning", {{"since_step", low_since_}, {"projection_std", projection_std}}}});
}

void PretrainRun::run_knn(int64_t step) {
  if (cfg_.knn_train.empty()) return;
  if (knn_) {  // the root evaluates
    const auto t0 = std::chrono::steady_clock::now();
    const KnnMonitor::Result r = knn_->evaluate(*learner_);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log({{"step", step},
         {"knn_top1", r.top1},
         {"feature_rank", r.features.effective_rank},
         {"projection_rank", r.projections.effective_rank},
         {"projection_std", r.projections.normalized_std}});
    std::printf(
        "%sstep %lld: kNN top-1 %.2f%% (%lld train / %lld test images, %.1f s); effective rank of the "
        "features %.1f / %lld, of the projections %.1f / %lld; normalised projection std %.4f\n",
        apps::progress_break(style_), static_cast<long long>(step), 100 * r.top1,
        static_cast<long long>(knn_->train->size()), static_cast<long long>(knn_->test->size()), secs,
        r.features.effective_rank, static_cast<long long>(learner_->nets.embedding_dim()),
        r.projections.effective_rank, static_cast<long long>(learner_->nets.config().projection_dim),
        r.projections.normalized_std);
    std::fflush(stdout);
  }
  // The other ranks wait for it here, in an untimed barrier, rather than in their next collective: an
  // evaluation longer than the NCCL deadline (BYOL_NCCL_TIMEOUT) would have them give up on a live root.
  if (world_ > 1) comm_->barrier();
}

// `text` as the root has it, on every rank (a collective, through the training device's communicator).
std::string PretrainRun::from_root(const std::string& text) {
  if (world_ == 1) return text;
  constexpr size_t kMax = 4096;  // bytes of text, then one byte: 1 where the root's text did not fit
  Tensor bytes = Tensor::empty({static_cast<int64_t>(kMax + 1)}, DType::u8);
  std::memset(bytes.raw_data(), 0, kMax + 1);
  if (root_) {
    std::memcpy(bytes.raw_data(), text.data(), std::min(text.size(), kMax - 1));
    static_cast<char*>(bytes.raw_data())[kMax] = text.size() >= kMax ? 1 : 0;
  }
  const Tensor shared = bytes.to(device_);
  comm_->broadcast(shared, 0);
  const Tensor back = shared.to(Device::cpu());
  const char* p = static_cast<const char*>(back.raw_data());
  BYOL_CHECK(p[kMax] == 0, "a path in run.out of ", kMax,
             " bytes or more cannot be shared with the other ranks: ", std::string(p, strnlen(p, kMax)),
             "...");  // every rank fails alike
  return std::string(p, strnlen(p, kMax));
}

// The signal to stop on after this step, 0 if none. Ranks see a signal at different steps. Acting on it
// alone, a rank would enter save()'s collectives while the others wait in the next step's: a hang. So
// with several ranks they agree at log points (the same steps everywhere), and a rank the signal missed
// stops as if SIGTERM had come.
int PretrainRun::agreed_signal() {
  const int sig = g_signal.load();
  if (world_ == 1) return sig;
  if (!is_log_point()) return 0;
  // One sum counts the ranks that saw each signal (SIGINT, SIGTERM, SIGUSR1 in base world + 1 digits), so
  // every rank stops on the same one, with the same message and exit status: SIGUSR1 if any rank saw it
  // (a scheduler's warning, forwarded by mpirun, may not have reached every rank yet), else SIGTERM, else
  // SIGINT.
  const long long b = world_ + 1;
  const long long mine = sig == SIGINT ? 1 : sig == SIGTERM ? b : sig == SIGUSR1 ? b * b : 0;
  const long long total =
      std::llround(dp_->sum_over_ranks(Tensor::full({}, static_cast<double>(mine), DType::f64, device_)));
  if (total / (b * b) > 0) return SIGUSR1;
  if (total / b % b > 0) return SIGTERM;
  if (total % b > 0) return SIGINT;
  return 0;
}

int PretrainRun::stop_on_signal(int sig, int64_t epoch) {
  report_skips(epoch);
  save(step_);
  if (root_)
    std::printf("\n%s at step %lld: checkpoint written to %s; continue with --resume\n",
                sig == SIGINT ? "interrupted" : (sig == SIGUSR1 ? "stopped by SIGUSR1" : "terminated"),
                static_cast<long long>(step_), (ckpt_dir_ / checkpoint_name(step_)).string().c_str());
  return 128 + sig;
}

void PretrainRun::report_skips(int64_t epoch) {
  const std::vector<data::SkippedImage> skipped = loader_->skipped();
  if (skipped.size() <= skips_reported_) return;
  std::fprintf(stderr, "%sbyol-pretrain: rank %d skipped %zu corrupt image(s) in epoch %lld; first: %s\n",
               root_ ? apps::progress_break(style_) : "", comm_->rank(), skipped.size() - skips_reported_,
               static_cast<long long>(epoch), skipped[skips_reported_].error.c_str());
  for (size_t i = skips_reported_; i < skipped.size(); ++i)
    log({{"step", step_},
         {"epoch", epoch},
         {"skipped_image",
          {{"index", skipped[i].index}, {"name", skipped[i].name}, {"error", skipped[i].error}}}});
  skips_reported_ = skipped.size();
}

// curves.svg and metrics.csv from what the run has logged: at every checkpoint, on interruption and at
// the end, so a long run can be looked at (and a crashed one keeps its picture). Root only.
void PretrainRun::write_reports() {
  if (!root_) return;
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
  for (const auto& j : history_) {
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
  apps::write_svg_chart((out_ / "curves.svg").string(), heading_, panels);
  const fs::path tmp = out_ / "metrics.csv.tmp";
  std::ofstream(tmp, std::ios::trunc) << csv;
  fs::rename(tmp, out_ / "metrics.csv");
}

void PretrainRun::save(int64_t step) {
  check_finite();  // never write a checkpoint after a non-finite loss
  write_reports();
  if (root_) {
    save_checkpoint((ckpt_dir_ / checkpoint_name(step)).string(), *learner_,
                    {{"run.batch_size", std::to_string(cfg_.batch_size)},
                     {"run.seed", std::to_string(cfg_.seed)},
                     {"run.total_steps", std::to_string(total_steps_)},
                     {"run.world_size", std::to_string(world_)},
                     {"run.config_toml", apps::to_toml(cfg_)}});
    const auto all = checkpoints_in(ckpt_dir_);
    for (size_t i = 0; i + cfg_.keep_checkpoints < all.size(); ++i) fs::remove(all[i]);
  }
  comm_->barrier();
}

int run(int argc, char** argv) {
  CommandLine cl;
  if (const std::optional<int> rc = parse_command_line(argc, argv, cl)) return *rc;
  fs::path resume_checkpoint;  // --resume FILE: this checkpoint, not the newest
  const PretrainConfig cfg = resolve_config(cl, resume_checkpoint);
  if (cl.print_config) {
    std::fputs(apps::to_toml(cfg).c_str(), stdout);
    return 0;
  }
  PretrainRun pretrain(cfg);
  if (cl.dry_run) return pretrain.dry_run();
  pretrain.open_outputs(cl.resume, cl.auto_resume, resume_checkpoint,
                        std::vector<std::string>(argv, argv + argc));
  if (const int rc = pretrain.train(); rc != 0) return rc;
  return pretrain.finish();
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
