// byol-eval: evaluates an encoder (ours, exported, torchvision, or random) by kNN, linear evaluation or
// fine-tuning; the protocols and their constants are in byol/evaluation.h and docs/evaluation.md.
//
//   byol-eval knn      --encoder run/encoder.safetensors --train fashion-mnist:train --test
//   fashion-mnist:test
//                      --side 32 --normalization fashion-mnist
//   byol-eval linear   --encoder run/checkpoint.safetensors --train cifar10:data/cifar-10-batches-bin:train
//                      --test cifar10:data/cifar-10-batches-bin:test --epochs 100 [--augment] --json out.json
//   byol-eval finetune --random-init --depth 18 --stem cifar --train ... --test ... --fraction 0.01
//
// Prints a short table on stdout (and, with --json, writes a JSON result atomically); progress goes to
// stderr. Any error prints one line "error: ..." on stderr and exits with status 1. --dry-run loads the
// encoder (checking the shape flags against it) and opens both datasets, then exits without evaluating.
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "apps/device_arg.h"
#include "apps/version.h"
#include "byol/checkpoint.h"
#include "byol/evaluation.h"
#include "engine/cpu/cpu_backend.h"  // bf16_measured_faster
#include "engine/device_memory.h"

namespace {

using namespace byol;
using nlohmann::json;

struct Args {
  std::string mode;
  std::string encoder;
  bool random_init = false;
  int depth = 18, width = 1;
  std::string stem = "cifar";
  int64_t base_channels = 64;
  bool zero_init_residual = false;
  bool shape_given = false;           // any of the shape flags was on the command line
  std::set<std::string> shape_flags;  // which ones (--depth, --width, --stem, --base-channels, ...)
  std::string train, test;
  int side = 32;
  std::string normalization = "imagenet";
  double center_fraction = 0.875;
  int64_t batch_size = 256;
  int workers = 2, threads = 0;
  std::string device = "auto";  // where the encoder runs (knn, linear: feature extraction)
  bool tf32 = true;
  // The encoder's convolutions: fp32, bf16 products, or auto (bf16 where it measured faster: CPUs with AMX).
  std::string precision = "fp32";
  uint64_t seed = 0;
  std::string json_path;
  // knn
  int k = 200;
  double temperature = 0.1;
  // linear
  int linear_epochs = 100;
  std::vector<double> lr_grid{0.01, 0.03, 0.1, 0.3, 1.0};
  double val_fraction = 0.1;
  bool augment = false;
  bool dry_run = false;
  // linear and finetune
  double weight_decay = 0.0;
  // finetune
  int finetune_epochs = 30;
  double fraction = 0.01;
  double lr = 0.05;
};

data::Normalization normalization_named(const std::string& name) {
  const std::optional<data::Normalization> n = data::Normalization::named(name);
  BYOL_CHECK(n.has_value(), "--normalization: expected ", data::Normalization::kNames, ", got '", name, "'");
  return *n;
}

void progress(const std::string& line) {
  std::fprintf(stderr, "byol-eval: %s\n", line.c_str());
}

std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %%", 100.0 * fraction);
  return buf;
}

// Writes `text` to `path` through a temporary file in the same folder and a rename.
void write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    BYOL_CHECK(out, "--json: cannot write '", tmp, "'");
    out << text;
    out.flush();
    BYOL_CHECK(out, "--json: writing '", tmp, "' failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    BYOL_FAIL("--json: cannot rename '", tmp, "' to '", path, "': ", ec.message());
  }
}

void print_table(const std::vector<std::string>& header, const std::vector<std::string>& row) {
  std::string top, bottom;
  for (size_t i = 0; i < header.size(); ++i) {
    const size_t w = std::max(header[i].size(), row[i].size());
    auto pad = [&](const std::string& s) { return s + std::string(w - s.size() + 2, ' '); };
    top += pad(header[i]);
    bottom += pad(row[i]);
  }
  std::printf("%s\n%s\n", top.c_str(), bottom.c_str());
}

int run(const Args& a) {
  const auto start = std::chrono::steady_clock::now();
  if (a.threads > 0) omp_set_num_threads(a.threads);
  BYOL_CHECK(a.side > 0, "--side must be positive, got ", a.side);
  BYOL_CHECK(a.batch_size > 0, "--batch-size must be positive, got ", a.batch_size);
  BYOL_CHECK(a.center_fraction > 0 && a.center_fraction <= 1, "--center-fraction must be in (0, 1], got ",
             a.center_fraction);
  const data::Normalization norm = normalization_named(a.normalization);

  eval::EncoderSource source;
  source.path = a.encoder;
  source.seed = a.seed;
  if (a.random_init || a.shape_given) {
    models::ResNetConfig cfg;
    cfg.depth = a.depth;
    cfg.width = a.width;
    BYOL_CHECK(a.stem == "cifar" || a.stem == "imagenet", "--stem: expected cifar or imagenet, got '", a.stem,
               "'");
    cfg.stem = a.stem == "cifar" ? models::Stem::cifar : models::Stem::imagenet;
    cfg.base_channels = a.base_channels;
    cfg.zero_init_residual = a.zero_init_residual;
    source.config = cfg;
    // Next to a file, only the flags given are compared with its stored shape (the others are defaults).
    source.given = {a.shape_flags.count("--depth") > 0, a.shape_flags.count("--width") > 0,
                    a.shape_flags.count("--stem") > 0, a.shape_flags.count("--base-channels") > 0};
  }
  const eval::LoadedEncoder enc = eval::load_encoder(source);
  // The encoder runs on the device (feature extraction); the kNN vote and the linear classifier work on
  // the extracted features on the CPU. Fine-tuning trains on the CPU only.
  Device device = apps::resolve_device(a.device, 0, 1, "--device");
  if (a.mode == "finetune" && !device.is_cpu()) {
    BYOL_CHECK(a.device == "auto", "--device ", a.device, ": byol-eval finetune trains on the CPU only");
    device = Device::cpu();
  }
  cuda_set_tf32(a.tf32);
  if (!device.is_cpu()) enc.registry->to(device);
  const std::string encoder_name = enc.kind + (enc.path.empty() ? "" : ":" + enc.path);
  progress(cat("encoder: ", encoder_name, " ", encoder_config_json(enc.encoder->config()), ", ",
               enc.encoder->out_features(), " features",
               enc.loaded ? cat(", ", enc.loaded, " tensors") : ""));
  if (!enc.ignored.empty()) {
    std::string names;
    for (size_t i = 0; i < enc.ignored.size(); ++i) names += (i ? ", " : "") + enc.ignored[i];
    progress(cat("ignored ", enc.ignored.size(), " tensors of ", enc.path, ": ", names));
  }

  std::shared_ptr<data::Dataset> train = data::open_dataset(a.train), test = data::open_dataset(a.test);
  BYOL_CHECK(train->has_labels(), "--train: ", train->describe(), " has no labels");
  BYOL_CHECK(test->has_labels(), "--test: ", test->describe(), " has no labels");
  if (const std::string w = data::test_overlap_warning(a.train, a.test); !w.empty())
    std::fprintf(stderr, "warning: --train / --test: %s\n", w.c_str());
  progress(cat("train: ", train->describe()));
  progress(cat("test: ", test->describe()));
  const int classes = std::max(train->num_classes(), test->num_classes());
  if (a.dry_run) {
    std::printf(
        "byol-eval %s --dry-run: encoder %s (%lld features) on %s; %lld train / %lld test images, %d "
        "classes, %d px; nothing evaluated\n",
        a.mode.c_str(), encoder_name.c_str(), static_cast<long long>(enc.encoder->out_features()),
        device_name(device).c_str(), static_cast<long long>(train->size()),
        static_cast<long long>(test->size()), classes, a.side);
    return 0;
  }
  const data::AugmentOptions test_transform = data::AugmentOptions::eval(a.side, norm, a.center_fraction);
  const data::AugmentOptions train_transform = data::AugmentOptions::crop_flip(a.side, norm);
  eval::ExtractOptions extract;
  extract.batch_size = a.batch_size;
  extract.workers = a.workers;
  extract.progress = progress;
  extract.bf16 =
      a.precision == "bf16" || (a.precision == "auto" && device.is_cpu() && cpu::bf16_measured_faster());
  const std::string precision =
      std::string(extract.bf16 ? "bf16" : "fp32") + (a.precision == "auto" ? " (auto)" : "");

  json result = {
      {"mode", a.mode},
      {"device", device_name(device)},
      {"precision", precision},
      {"encoder",
       {{"kind", enc.kind},
        {"path", enc.path.empty() ? json(nullptr) : json(enc.path)},
        {"config", json::parse(encoder_config_json(enc.encoder->config()))},
        {"features", enc.encoder->out_features()},
        {"loaded_tensors", enc.loaded},
        {"ignored_tensors", enc.ignored}}},
      {"train", {{"spec", a.train}, {"images", train->size()}, {"classes", train->num_classes()}}},
      {"test", {{"spec", a.test}, {"images", test->size()}, {"classes", test->num_classes()}}},
      {"transform",
       {{"side", a.side}, {"normalization", a.normalization}, {"center_fraction", a.center_fraction}}},
      {"seed", a.seed}};
  eval::ClassifyResult scores;
  std::string lr_column = "-";
  int64_t train_images = train->size();
  if (a.mode == "knn") {
    progress("extracting training features");
    const eval::Features tr = eval::extract_features(*enc.encoder, *train, test_transform, extract);
    progress("extracting test features");
    const eval::Features te = eval::extract_features(*enc.encoder, *test, test_transform, extract);
    eval::KnnOptions o;
    o.k = a.k;
    o.temperature = a.temperature;
    o.num_classes = classes;
    scores = eval::knn_classify(tr, te, o);
    result["knn"] = {{"k", a.k}, {"temperature", a.temperature}};
  } else if (a.mode == "linear") {
    eval::LinearEvalOptions o;
    o.lr_grid = a.lr_grid;
    o.epochs = a.linear_epochs;
    o.batch_size = a.batch_size;
    o.weight_decay = a.weight_decay;
    o.val_fraction = a.val_fraction;
    o.seed = a.seed;
    o.progress = progress;
    eval::LinearEvalResult r;
    if (a.augment) {
      r = eval::linear_eval_augmented(*enc.encoder, train, test, train_transform, test_transform, o, extract);
    } else {
      progress("extracting training features");
      const eval::Features tr = eval::extract_features(*enc.encoder, *train, test_transform, extract);
      progress("extracting test features");
      const eval::Features te = eval::extract_features(*enc.encoder, *test, test_transform, extract);
      r = eval::linear_eval_features(tr, te, o);
    }
    scores = r.test;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", r.best_lr);
    lr_column = buf;
    json sweep = json::array();
    for (const eval::LrTrial& t : r.sweep) sweep.push_back({{"lr", t.lr}, {"val_top1", t.val_top1}});
    result["linear"] = {{"augment", a.augment},       {"epochs", a.linear_epochs},
                        {"batch_size", a.batch_size}, {"momentum", o.momentum},
                        {"nesterov", true},           {"weight_decay", a.weight_decay},
                        {"lr_grid", a.lr_grid},       {"val_fraction", a.val_fraction},
                        {"best_lr", r.best_lr},       {"sweep", sweep}};
  } else {
    eval::FinetuneOptions o;
    o.fraction = a.fraction;
    o.lr = a.lr;
    o.epochs = a.finetune_epochs;
    o.batch_size = a.batch_size;
    o.weight_decay = a.weight_decay;
    o.seed = a.seed;
    o.progress = progress;
    const eval::FinetuneResult r =
        eval::finetune(*enc.encoder, *enc.registry, train, test, train_transform, test_transform, o, extract);
    scores = r.test;
    train_images = r.train_images;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", a.lr);
    lr_column = buf;
    result["finetune"] = {{"fraction", a.fraction},
                          {"images", r.train_images},
                          {"epochs", a.finetune_epochs},
                          {"batch_size", a.batch_size},
                          {"lr", a.lr},
                          {"momentum", o.momentum},
                          {"nesterov", true},
                          {"weight_decay", a.weight_decay},
                          {"steps", r.steps},
                          {"epoch_loss", r.epoch_loss}};
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result["top1"] = scores.top1;
  result["top5"] = scores.top5;
  result["correct1"] = scores.correct1;
  result["correct5"] = scores.correct5;
  result["test_images"] = scores.count;
  result["seconds"] = seconds;

  char secs[32];
  std::snprintf(secs, sizeof secs, "%.1f", seconds);
  print_table({"mode", "encoder", "top-1", "top-5", "lr", "images (train/test)", "seconds"},
              {a.mode, encoder_name, percent(scores.top1), percent(scores.top5), lr_column,
               cat(train_images, " / ", scores.count), secs});
  if (!a.json_path.empty()) write_atomically(a.json_path, result.dump(2) + "\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"byol-eval: kNN, linear evaluation and fine-tuning of an encoder"};
  app.set_version_flag("--version", byol::apps::version_line("byol-eval"));
  bool verbose_flag = false;  // read by main() through apps::verbose_errors, before and after parsing
  app.add_flag("--verbose", verbose_flag,
               "errors name the source location that raised them (also BYOL_VERBOSE=1)");
  app.require_subcommand(1, 1);
  CLI::App* knn = app.add_subcommand("knn", "weighted kNN (k = 200, cosine, T = 0.1) on frozen features");
  CLI::App* linear =
      app.add_subcommand("linear", "linear evaluation of the frozen encoder, lr swept on a held-out split");
  CLI::App* finetune =
      app.add_subcommand("finetune", "fine-tune encoder + linear head on a balanced label fraction");
  std::vector<CLI::Option*> shape_options;
  for (CLI::App* sub : {knn, linear, finetune}) {
    auto* enc = sub->add_option("--encoder", a.encoder,
                                "checkpoint, exported encoder or torchvision ResNet (.safetensors)");
    auto* rnd =
        sub->add_flag("--random-init", a.random_init, "a randomly initialised encoder (the baseline)");
    enc->excludes(rnd);
    rnd->excludes(enc);
    shape_options.push_back(sub->add_option("--depth", a.depth, "ResNet depth (18, 34, 50, 101, 152, 200)")
                                ->capture_default_str());
    shape_options.push_back(sub->add_option("--width", a.width, "width multiplier")->capture_default_str());
    shape_options.push_back(sub->add_option("--stem", a.stem, "cifar (3x3, no max pool) or imagenet")
                                ->check(CLI::IsMember({"cifar", "imagenet"})));
    shape_options.push_back(
        sub->add_option("--base-channels", a.base_channels, "first stage's channels")->capture_default_str());
    shape_options.push_back(
        sub->add_flag("--zero-init-residual", a.zero_init_residual, "random init: zero last BN scale"));
    sub->add_option("--train", a.train, "training dataset spec (see data/dataset.h)")->required();
    sub->add_option("--test", a.test, "test dataset spec")->required();
    sub->add_option("--device", a.device, "auto, cpu, cuda or cuda:N: where the encoder runs (finetune: cpu)")
        ->capture_default_str();
    sub->add_option(
           "--precision", a.precision,
           "the encoder's convolutions: fp32; bf16 products (operands rounded to bf16, sums in fp32; "
           "on a GPU with bf16 activations); auto: bf16 on a CPU where it measured faster (AMX), "
           "else fp32")
        ->check(CLI::IsMember({"fp32", "bf16", "auto"}))
        ->capture_default_str();
    sub->add_option("--tf32", a.tf32, "TF32 for float32 convolutions and GEMMs on a GPU (true/false)")
        ->capture_default_str();
    sub->add_option("--side", a.side, "image side fed to the encoder")->capture_default_str();
    sub->add_option("--normalization", a.normalization,
                    "cifar10, cifar100, imagenet, fashion-mnist, stl10 or none")
        ->capture_default_str();
    sub->add_option("--center-fraction", a.center_fraction,
                    "evaluation centre crop: crop side / shorter side")
        ->capture_default_str();
    sub->add_option("--batch-size", a.batch_size, "batch size")->capture_default_str();
    sub->add_option("--workers", a.workers, "loader threads")->capture_default_str();
    sub->add_option("--threads", a.threads, "OpenMP threads (0: the default)");
    sub->add_option("--seed", a.seed, "seed of splits, batch order, initialisations, augmentation")
        ->capture_default_str();
    sub->add_option("--json", a.json_path, "write the result as JSON to this file");
    sub->add_flag("--dry-run", a.dry_run,
                  "load the encoder and open the datasets, then exit without evaluating");
  }
  knn->add_option("--k", a.k, "neighbours")->capture_default_str();
  knn->add_option("--temperature", a.temperature, "vote weight exp(sim / T)")->capture_default_str();
  linear->add_option("--epochs", a.linear_epochs, "epochs")->capture_default_str();
  linear->add_option("--lr-grid", a.lr_grid, "learning rates to sweep (comma separated)")->delimiter(',');
  linear->add_option("--val-fraction", a.val_fraction, "held-out fraction of the training set")
      ->capture_default_str();
  linear->add_flag("--augment", a.augment, "crop + flip training features, recomputed every epoch");
  linear->add_option("--weight-decay", a.weight_decay, "SGD weight decay")->capture_default_str();
  finetune->add_option("--epochs", a.finetune_epochs, "epochs")->capture_default_str();
  finetune->add_option("--fraction", a.fraction, "fraction of the labels (balanced per class)")
      ->capture_default_str();
  finetune->add_option("--lr", a.lr, "learning rate (cosine to 0)")->capture_default_str();
  finetune->add_option("--weight-decay", a.weight_decay, "SGD weight decay")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;  // a usage error (as byol-pretrain and byol-pack); 1 is an error while running
  }
  for (CLI::App* sub : {knn, linear, finetune})
    if (sub->parsed()) a.mode = sub->get_name();
  for (const CLI::Option* o : shape_options)
    if (o->count() > 0) {
      a.shape_given = true;
      a.shape_flags.insert(o->get_name());
    }
  try {
    if (!a.random_init && a.encoder.empty()) BYOL_FAIL("give --encoder PATH or --random-init");
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", byol::error_text(e, byol::apps::verbose_errors(argc, argv)).c_str());
    return 1;
  }
}
