// Evaluating a frozen or fine-tuned encoder: features, the kNN monitor, the linear-evaluation
// protocol, fine-tuning on a balanced fraction of the labels, and loading an encoder from any of the
// files byol.cpp reads. docs/evaluation.md states each protocol with its constants.
//
//   kNN (InstDisc, Wu et al. 2018, as the BYOL/SimCLR code bases monitor it): features L2-normalised;
//     for each test row the k = 200 training rows of highest cosine similarity (ties: lower training
//     index first; k > n takes all n) vote for their class with weight exp(sim / T), T = 0.1; classes are
//     ranked by summed weight (ties: lower class index first); top-1 / top-5 = the label is among the
//     first 1 / 5 classes. Similarities are computed in chunks of test rows, so memory stays
//     O(chunk x n_train) (256 x 60k floats = 61 MB).
//   Linear evaluation (paper sec. 4.1 / appendix C.1): frozen encoder (BN in evaluation mode), features
//     standardised per dimension with the training features' mean and standard deviation (an affine-free
//     BatchNorm before the classifier, as MoCo v3 / MAE do, so one lr grid suits every encoder); a
//     Linear(D, classes) trained with cross-entropy, SGD Nesterov momentum 0.9, cosine lr to 0 over all
//     steps, no warmup; each lr of the grid is trained on a seeded 90 % of the training set and scored
//     (top-1) on the held-out 10 %; the best (ties: the smaller lr) is retrained on the whole training
//     set and reported on the test set. Two modes: features extracted once with the centre-crop
//     transform, or training features recomputed each epoch from random-resized-crop + flip views.
//   Fine-tuning: the whole encoder + Linear(D, classes) on a balanced fraction of the labels (the same
//     number of images per class, seeded), SGD Nesterov 0.9, cosine, crop + flip, BN in training mode
//     while training and in evaluation mode for the test set.
//
// Conventions: features are f32 [N, D] CPU tensors in dataset order, labels i64 [N]. Every random draw
// (splits, batch order, classifier initialisation, augmentation) comes from the options' seed. Progress
// lines go to the optional ProgressFn (the apps print them to stderr); the library prints nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"
#include "models/resnet.h"

namespace byol::eval {

using ProgressFn = std::function<void(const std::string& line)>;

// --- features --------------------------------------------------------------------------------------------
struct Features {
  Tensor x;       // f32 [N, D], row i = dataset image i
  Tensor labels;  // i64 [N], -1 for an unlabeled dataset
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
};

struct ExtractOptions {
  int64_t batch_size = 256;
  int workers = 2;      // loader threads (0: decode on the calling thread)
  uint64_t seed = 0;    // augmentation seed (only random transforms use it)
  int64_t epoch = 0;    // augmentation epoch: a new epoch draws new crops
  ProgressFn progress;  // one line per ~10 % of the images
  // byol-eval --precision bf16: the encoder's convolutions with bf16 products (on a GPU with bf16
  // activations: models::bf16_activations_by_default)
  bool bf16 = false;
};

// The encoder's features of every image of `dataset`, in dataset order (no shuffle, no dropped
// images), under no-grad with batch norm in evaluation mode (running statistics are not touched).
// The images go to the encoder's device (a GPU encoder embeds there); the features are host tensors.
Features extract_features(const models::ResNet& encoder, const data::Dataset& dataset,
                          const data::AugmentOptions& transform, const ExtractOptions& options);
Features extract_features(const models::ResNet& encoder, const data::Dataset& dataset,
                          const data::AugmentOptions& eval_transform, int64_t batch_size, int workers);

// --- kNN ---------------------------------------------------------------------------------------------------
struct KnnOptions {
  int k = 200;
  double temperature = 0.1;
  int64_t chunk_rows = 256;  // test rows per similarity block
  int num_classes = 0;       // 0: 1 + the largest label seen
};

struct ClassifyResult {
  double top1 = 0, top5 = 0;  // fractions in [0, 1]
  int64_t correct1 = 0, correct5 = 0, count = 0;
  std::vector<int64_t> predictions;  // top-1 class per test row
};

ClassifyResult knn_classify(const Features& train, const Features& test, const KnnOptions& options = {});

// --- collapse monitor --------------------------------------------------------------------------------------
// Two signs of a (partial) collapse of a representation X [N, D] (rows are images), both cheap enough to
// watch during training (byol-pretrain logs them at every kNN point):
//   normalized_std  mean over dimensions of the standard deviation, over rows, of the L2-normalised rows:
//                   about 1/sqrt(D) for directions spread over the sphere, 0 when every row is the same
//                   (the BYOL paper's and SimSiam's collapse measure)
//   effective_rank  exp of the entropy of the normalised singular values of the centred X (Roy & Vetterli
//                   2007): D for isotropic features, 1 when all the variance lies along one direction
struct CollapseStats {
  double normalized_std = 0;
  double effective_rank = 0;
};
CollapseStats collapse_stats(const Tensor& x);

// --- linear evaluation -------------------------------------------------------------------------------------
struct LinearEvalOptions {
  std::vector<double> lr_grid{0.01, 0.03, 0.1, 0.3, 1.0};
  int epochs = 100;
  int64_t batch_size = 256;
  double momentum = 0.9;  // Nesterov
  double weight_decay = 0.0;
  double val_fraction = 0.1;  // held-out part of the training set for choosing the lr
  uint64_t seed = 0;
  ProgressFn progress;  // a line per lr and per ~10 % of epochs
};

struct LrTrial {
  double lr = 0;
  double val_top1 = 0;  // on the held-out split
};

struct LinearEvalResult {
  ClassifyResult test;
  double best_lr = 0;
  std::vector<LrTrial> sweep;  // one per grid entry, in grid order
  int64_t train_images = 0, test_images = 0, feature_dim = 0, classes = 0;
};

// Per-dimension standardisation of features: (x - mean) / sqrt(var + 1e-5), statistics of `fit`.
struct Standardizer {
  std::vector<float> mean, inv_std;
  static Standardizer fit(const Tensor& x);
  Tensor apply(const Tensor& x) const;
};

// H linear classifiers Linear(D, C) trained side by side on the same batches, each with its own lr: one
// matrix product serves all heads (the lr sweep costs little more than one run). Softmax cross-entropy
// (mean over the batch), gradients in closed form ((softmax - onehot) / B), then SGD as
// torch.optim.SGD(nesterov=True) (math::sgd_update), weight decay on weights and biases. Every head
// starts from the same seeded initialisation, PyTorch's nn.Linear: U(-1/sqrt(D), 1/sqrt(D)).
class LinearHeads {
 public:
  LinearHeads(int64_t dim, int classes, int heads, const LinearEvalOptions& options);
  // One step on x f32 [B, D] and labels i64 [B] (engine ops: linear, softmax cross-entropy, autograd,
  // sgd_step_); lrs[h] is head h's learning rate for this step.
  void step(const Tensor& x, const Tensor& labels, const std::vector<double>& lrs);
  Tensor logits(int head, const Tensor& x) const;  // f32 [N, C]
  Tensor weight(int head) const { return rows(weight_, head); }
  Tensor bias(int head) const { return rows(bias_, head); }
  int heads() const { return heads_; }

 private:
  Tensor rows(const Tensor& buffer, int head) const;  // rows [h C, (h + 1) C)
  int64_t dim_;
  int classes_, heads_;
  double momentum_, weight_decay_;
  Tensor weight_, bias_;                         // [H * C, D], [H * C]: head h owns rows [h C, (h + 1) C)
  Tensor weight_m_, bias_m_;                     // momentum buffers
  Tensor weight_grad_, bias_grad_;               // gradient buffers
  std::vector<Tensor> head_weight_, head_bias_;  // the heads' leaves (windows of weight_ and bias_)
};

// The linear classifier alone: trains on (train.x, train.labels) with `lr` for options.epochs and
// returns its logits on `eval_x`. Features are used as given (no standardisation). For tests and for
// callers that manage their own features.
Tensor train_linear_classifier(const Features& train, int classes, double lr,
                               const LinearEvalOptions& options, const Tensor& eval_x);

// Top-1/top-5 of logits [N, C] against labels i64 [N] (ties: lower class index first).
ClassifyResult score_logits(const Tensor& logits, const Tensor& labels);

// Protocol (a): features extracted once.
LinearEvalResult linear_eval_features(const Features& train, const Features& test,
                                      const LinearEvalOptions& options);

// Protocol (b): training features recomputed each epoch from crop + flip views (`train_transform`,
// seeded per epoch); `test_transform` (centre crop) for the held-out split and the test set.
LinearEvalResult linear_eval_augmented(const models::ResNet& encoder,
                                       std::shared_ptr<const data::Dataset> train,
                                       std::shared_ptr<const data::Dataset> test,
                                       const data::AugmentOptions& train_transform,
                                       const data::AugmentOptions& test_transform,
                                       const LinearEvalOptions& options, const ExtractOptions& extract);

// --- fine-tuning
// -------------------------------------------------------------------------------------------- `per_class` =
// max(1, round(fraction * size / classes)) indices of every class, drawn by a seeded shuffle of that class's
// indices; sorted. A class with fewer images than that is an error naming it.
std::vector<int64_t> balanced_subset(const data::Dataset& dataset, double fraction, uint64_t seed);

struct FinetuneOptions {
  double fraction = 0.01;
  double lr = 0.05;
  int epochs = 30;
  int64_t batch_size = 256;
  double momentum = 0.9;  // Nesterov
  double weight_decay = 0.0;
  uint64_t seed = 0;
  ProgressFn progress;
};

struct FinetuneResult {
  ClassifyResult test;
  int64_t train_images = 0, test_images = 0, classes = 0, steps = 0;
  std::vector<double> epoch_loss;  // mean training loss of each epoch
};

// Fine-tunes a copy of `encoder` (the argument is left unchanged) with a new linear head.
FinetuneResult finetune(const models::ResNet& encoder, const models::ParamRegistry& encoder_registry,
                        std::shared_ptr<const data::Dataset> train, std::shared_ptr<const data::Dataset> test,
                        const data::AugmentOptions& train_transform,
                        const data::AugmentOptions& test_transform, const FinetuneOptions& options,
                        const ExtractOptions& extract);

// --- loading an encoder
// --------------------------------------------------------------------------------------- What load_encoder
// reads. With `path` empty the encoder is randomly initialised (torchvision's init, from `seed`) with
// `config`. Otherwise the kind of file is detected from its contents:
//   checkpoint   metadata format "byol.cpp checkpoint v1": config from its "config" metadata,
//                tensors "online/encoder.*" and "online_stats/encoder.*" (our KRSC layout)
//   exported     metadata "encoder_config" (export_encoder): torchvision names, OIHW
//   torchvision  a tensor "conv1.weight" and neither of the above: the shape comes from `config`
// An explicitly given `config` must agree with what a checkpoint or exported file says.
// Which fields of an EncoderSource's config were given (byol-eval: the flags on the command line; the
// others hold defaults): a file's stored configuration is checked against these only.
struct EncoderFieldsGiven {
  bool depth = true, width = true, stem = true, base_channels = true;
};

struct EncoderSource {
  using Given = EncoderFieldsGiven;
  EncoderSource(std::string path_ = {}, std::optional<models::ResNetConfig> config_ = std::nullopt,
                uint64_t seed_ = 0, Given given_ = {})
      : path(std::move(path_)), config(std::move(config_)), seed(seed_), given(given_) {}

  std::string path;
  std::optional<models::ResNetConfig> config;  // explicit shape (needed for random init and torchvision)
  uint64_t seed = 0;                           // random init
  Given given;
};

struct LoadedEncoder {
  std::unique_ptr<models::ParamRegistry> registry;  // names without a prefix: "conv1.weight", ...
  std::unique_ptr<models::ResNet> encoder;
  std::string kind;  // "checkpoint", "exported", "torchvision" or "random-init"
  std::string path;
  int loaded = 0;                    // tensors read from the file
  std::vector<std::string> ignored;  // tensors in the file that the encoder does not use (fc.*, ...)
};

LoadedEncoder load_encoder(const EncoderSource& source);

}  // namespace byol::eval
