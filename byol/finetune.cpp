// Fine-tuning on a balanced label subset (byol/evaluation.h).
#include <omp.h>

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "byol/checkpoint.h"
#include "byol/eval_detail.h"
#include "byol/evaluation.h"
#include "byol/optimizers.h"
#include "byol/schedules.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/math/optimizers.h"

namespace byol::eval {
using namespace detail;

// --- fine-tuning
// --------------------------------------------------------------------------------------------

std::vector<int64_t> balanced_subset(const data::Dataset& dataset, double fraction, uint64_t seed) {
  BYOL_CHECK(dataset.has_labels(), "balanced_subset: ", dataset.describe(), " has no labels");
  BYOL_CHECK(fraction > 0 && fraction <= 1, "balanced_subset: fraction must be in (0, 1], got ", fraction);
  const int classes = dataset.num_classes();
  std::vector<std::vector<int64_t>> by_class(classes);
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const int64_t y = dataset.label(i);
    BYOL_CHECK(y >= 0 && y < classes, "balanced_subset: image ", i, " has label ", y, " outside [0, ",
               classes, ")");
    by_class[y].push_back(i);
  }
  const int64_t per_class =
      std::max<int64_t>(1, std::llround(fraction * double(dataset.size()) / double(classes)));
  std::vector<int64_t> out;
  for (int c = 0; c < classes; ++c) {
    std::vector<int64_t>& idx = by_class[c];
    BYOL_CHECK(int64_t(idx.size()) >= per_class, "balanced_subset: class ", c, " of ", dataset.describe(),
               " has ", idx.size(), " images, fewer than the ", per_class, " per class that fraction ",
               fraction, " asks for");
    std::mt19937_64 gen(data::mix_seed(data::mix_seed(seed, 0x62616c616e6365ull), uint64_t(c)));
    for (int64_t i = int64_t(idx.size()) - 1; i > 0; --i)
      std::swap(idx[i], idx[std::min<int64_t>(i, int64_t(data::uniform01(gen) * double(i + 1)))]);
    out.insert(out.end(), idx.begin(), idx.begin() + per_class);
  }
  std::sort(out.begin(), out.end());
  return out;
}

FinetuneResult finetune(const models::ResNet& encoder, const models::ParamRegistry& encoder_registry,
                        std::shared_ptr<const data::Dataset> train, std::shared_ptr<const data::Dataset> test,
                        const data::AugmentOptions& train_transform,
                        const data::AugmentOptions& test_transform, const FinetuneOptions& o,
                        const ExtractOptions& extract) {
  BYOL_CHECK(o.epochs >= 1 && o.batch_size >= 1 && o.lr > 0,
             "finetune: expected epochs >= 1, batch size >= 1 and lr > 0, got ", o.epochs, ", ", o.batch_size,
             ", ", o.lr);
  BYOL_CHECK(test->has_labels(), "finetune: ", test->describe(), " has no labels");
  const int classes = std::max(train->num_classes(), test->num_classes());
  auto subset = std::make_shared<data::Subset>(train, balanced_subset(*train, o.fraction, o.seed));

  // A trainable copy of the encoder and a new head in one registry (one optimizer over both).
  models::ParamRegistry reg;
  models::ResNet net(reg, "", encoder.config());
  models::Linear head(reg, "fc", net.out_features(), classes, true);
  reg.finalize(true);
  std::mt19937_64 gen(data::mix_seed(o.seed, 0x66696e65ull));
  reg.initialize(gen);  // the head's initialisation; the encoder's is overwritten next
  for (const models::ParamEntry& e : encoder_registry.param_entries()) reg.find(e.name).copy_(*e.slot);
  for (const models::StatEntry& e : encoder_registry.stat_entries()) reg.find(e.name).copy_(*e.slot);
  Sgd sgd(reg, SgdOptions{o.momentum, o.weight_decay, true});

  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.workers = extract.workers;
  lo.seed = o.seed;
  lo.shuffle = true;
  lo.drop_last =
      subset->size() > o.batch_size;  // no tiny last batch for batch norm, unless it is the only one
  data::Loader loader(subset, train_transform, lo);
  const int64_t total = o.epochs * loader.batches_per_epoch();
  const models::ForwardContext train_mode{
      true, {}, 1, extract.bf16, extract.bf16 && models::bf16_activations_by_default(reg.device())};
  FinetuneResult r;
  for (int64_t e = 0; e < o.epochs; ++e) {
    loader.start_epoch(e);
    double loss_sum = 0;
    int64_t batches = 0;
    while (std::optional<data::Batch> b = loader.next()) {
      reg.grads().zero_();
      Tensor loss = ops::softmax_cross_entropy(head.forward(net.forward(b->views[0], train_mode)), b->labels);
      loss.backward();
      sgd.step(lr_at(r.steps, total, 0, o.lr));
      loss_sum += loss.item();
      ++batches;
      ++r.steps;
    }
    r.epoch_loss.push_back(loss_sum / double(std::max<int64_t>(batches, 1)));
    if (o.progress)
      o.progress(cat("finetune: epoch ", e + 1, " / ", o.epochs, ", loss ", r.epoch_loss.back()));
  }
  const Features t = extract_features(net, *test, test_transform, extract);
  NoGradGuard no_grad;
  r.test = score_logits(head.forward(t.x), t.labels);
  r.train_images = subset->size();
  r.test_images = t.size();
  r.classes = classes;
  return r;
}

}  // namespace byol::eval
