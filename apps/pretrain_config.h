// byol-pretrain's configuration: a TOML file (configs/*.toml) plus command-line overrides
// (--set section.key=value). Every key is known: an unknown one, a wrong type or an out-of-range value
// is an error naming the key (and the file). See configs/README.md for every key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace byol::apps {

struct PretrainConfig {
  // [data]
  std::string train = "fashion-mnist:train";  // dataset spec (data/dataset.h: open_dataset)
  std::string knn_train = "";                 // labeled sets for the kNN monitor ("" = off)
  std::string knn_test = "";
  int64_t knn_train_images = 10000;  // subsets for the periodic monitor (0 = all)
  int64_t knn_test_images = 2000;
  int side = 28;  // view size (pixels)
  std::string normalization = "fashion-mnist";
  int workers = 1;
  bool skip_corrupt = false;
  // Where the views are augmented: "cpu" (the loader's workers) or "gpu" (the workers decode, the CUDA
  // kernel augments: engine/cuda/augment.cuh; needs run.device on a GPU).
  std::string augment_on = "cpu";
  // [augment] (the paper's recipe by default; both views unless named per view)
  double crop_area_min = 0.08;         // random resized crop: smallest fraction of the image area
  double jitter_p = 0.8;               // colour jitter probability
  double jitter_strength = 1.0;        // scales brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1
  std::string jitter = "torchvision";  // brightness/contrast convention: "torchvision" or "official"
  double grayscale_p = 0.2;
  double blur_p_view1 = 1.0, blur_p_view2 = 0.1;
  double solarize_p_view1 = 0.0, solarize_p_view2 = 0.2;
  // [model]
  int depth = 18;
  int width = 1;
  std::string stem = "imagenet";
  int64_t base_channels = 64;
  int64_t projector_hidden = 4096;
  int64_t projection_dim = 256;
  int projector_depth = 2;  // linear layers of the projector (models/mlp.h)
  int predictor_depth = 2;  // and of the predictor
  int64_t predictor_hidden = 4096;
  // [train]
  double epochs = 100;
  int64_t batch_size = 256;  // global, over all ranks
  int preset = 0;  // 40, 100, 300, 1000: base_lr, weight_decay, tau_base from the paper, where not given
  double base_lr = 0.45;
  double weight_decay = 1e-6;
  double tau_base = 0.99;
  double warmup_epochs = 10;
  double probe_lr = 1e-3;
  uint64_t seed = 0;
  // The target network at step 0: "copy" of the online network (as PyTorch implementations do; learns more
  // in short runs, docs/results.md) or "random", its own draw from the initialisers.
  std::string target_init = "copy";
  // The paper's ablations (byol/learner.h, TrainConfig): no predictor (p = z); no target network (the
  // targets are the online projections under stop-gradient). Off both, BYOL collapses.
  bool predictor = true;
  bool target_network = true;
  // Without a target network: stop-gradient on the online projections used as targets (false: SimCLR).
  bool stop_gradient = true;
  // The unified objective (byol/objective.h): weight of the InfoNCE term (0: BYOL, 1: contrastive) and its
  // temperature alpha.
  double beta = 0;
  double temperature = 0.1;
  // Micro-batches per step (gradient accumulation, byol/learner.h): for batches beyond memory; each
  // micro-batch has its own batch-norm statistics, so it is not the same run as the large batch.
  int64_t accumulation_steps = 1;
  // "fp32", "bf16" (bf16 products in the convolutions; on a GPU with bf16 activations) or "auto": bf16 on a
  // CPU where it measured faster (cpu::bf16_measured_faster: AMX), fp32 elsewhere (GPUs until timed).
  std::string precision = "auto";
  // With precision bf16 on the CPU: the encoder's activations stored as bf16 too, as on a GPU
  // (TrainConfig::bf16_activations): faster than bf16 products for large networks (ResNet-18 at base 64:
  // 1.17x), slower for small ones (the Fashion-MNIST recipe: about 0.9x); the GPU's form where no GPU is.
  bool cpu_bf16_activations = false;
  // On a GPU: capture the step as one CUDA graph after two eager steps and replay it (byol/learner.h,
  // TrainConfig::cuda_graph). One rank only so far.
  bool cuda_graph = false;
  std::string tau_schedule = "cosine";  // or "constant" (tau = tau_base throughout: the tau ablation)
  int threads = 0;                      // OpenMP threads (0: all cores)
  bool sync_bn = true;
  // [run]
  std::string out = "runs/byol";
  int64_t log_every = 10;
  int64_t knn_every = 0;  // steps between kNN evaluations (0: only at the end)
  int64_t checkpoint_every = 500;
  int keep_checkpoints = 3;
  int64_t max_steps = 0;        // stop (with a checkpoint) after this many steps in total (0: run to the end)
  std::string device = "auto";  // auto (a GPU when the build has CUDA and one is visible), cpu, cuda, cuda:N
  bool tf32 = true;             // TF32 for float32 convolutions and GEMMs on a GPU (ignored on the CPU)
};

// Applies `path` (if not empty) and then each "section.key=value" override to `cfg`.
void load_config(PretrainConfig& cfg, const std::string& path, const std::vector<std::string>& overrides);
// Checks ranges and consistency; throws naming the key.
void validate(const PretrainConfig& cfg);
// The effective configuration as TOML text (written next to the run's outputs).
std::string to_toml(const PretrainConfig& cfg);

}  // namespace byol::apps
