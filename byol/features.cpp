// Feature extraction: the frozen encoder over a dataset (byol/evaluation.h).
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

// --- features --------------------------------------------------------------------------------------------

Features extract_features(const models::ResNet& encoder, const data::Dataset& dataset,
                          const data::AugmentOptions& transform, const ExtractOptions& options) {
  BYOL_CHECK(transform.views.size() == 1, "extract_features: the transform must produce one view, got ",
             transform.views.size());
  BYOL_CHECK(options.batch_size > 0, "extract_features: batch_size must be positive, got ",
             options.batch_size);
  const int64_t n = dataset.size(), d = encoder.out_features();
  BYOL_CHECK(n > 0, "extract_features: dataset ", dataset.describe(), " is empty");
  data::LoaderOptions lo;
  lo.batch_size = options.batch_size;
  lo.workers = options.workers;
  lo.seed = options.seed;
  lo.shuffle = false;
  lo.drop_last = false;
  // The loader is destroyed before this function returns, so it may borrow the caller's dataset.
  data::Loader loader(borrow(dataset), transform, lo);
  loader.start_epoch(options.epoch);

  Features f{Tensor::empty({n, d}), Tensor::empty({n}, DType::i64)};
  float* fx = f.x.data<float>();
  int64_t* fy = f.labels.data<int64_t>();
  NoGradGuard no_grad;
  const Device device = encoder.device();
  const models::ForwardContext eval_mode{
      false, {}, 1, options.bf16, options.bf16 && models::bf16_activations_by_default(device)};
  int64_t done = 0, next_report = n / 10;
  while (std::optional<data::Batch> b = loader.next()) {
    // An encoder on a GPU embeds there; its features come back to the host (features are host tensors).
    const Tensor y = encoder.forward(b->views[0].to(device), eval_mode).to(Device::cpu()).contiguous();
    const float* py = y.data<float>();
    const int64_t* labels = b->labels.defined() ? b->labels.data<int64_t>() : nullptr;
    for (int64_t r = 0; r < b->size(); ++r) {
      const int64_t i = b->indices[r];
      std::memcpy(fx + i * d, py + r * d, sizeof(float) * d);
      fy[i] = labels ? labels[r] : -1;
    }
    done += b->size();
    if (options.progress && done >= next_report && done < n) {
      options.progress(cat("features: ", done, " / ", n, " images"));
      next_report += n / 10;
    }
  }
  BYOL_CHECK(done == n, "extract_features: the loader delivered ", done, " of ", n, " images");
  return f;
}

Features extract_features(const models::ResNet& encoder, const data::Dataset& dataset,
                          const data::AugmentOptions& eval_transform, int64_t batch_size, int workers) {
  ExtractOptions o;
  o.batch_size = batch_size;
  o.workers = workers;
  return extract_features(encoder, dataset, eval_transform, o);
}

}  // namespace byol::eval
