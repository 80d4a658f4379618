// The loader: a pool of worker threads that read, decode and augment images into reusable batch
// buffers, a configurable number of batches ahead of the consumer.
//
//   Loader loader(dataset, AugmentOptions::byol(32, Normalization::cifar10()), {.batch_size = 256});
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.start_epoch(epoch);
//     while (std::optional<Batch> b = loader.next()) learner.step(b->views[0], b->views[1]);
//   }
//
// Conventions:
//  - Each batch holds one f32 [N, H, W, 3] (NHWC) tensor per view and, for a labeled dataset, i64 [N]
//    labels. Its tensors view a reusable buffer that returns to the loader when the last copy of the
//    Batch is destroyed: keep the Batch (not just its tensors) while you use them, or clone() them.
//  - Order: each epoch the dataset's indices are shuffled from (seed, epoch), truncated to a multiple
//    of world_size, and rank r takes every world_size-th from position r, so the ranks see disjoint
//    parts of equal size. drop_last drops the rank's final partial batch.
//  - Determinism: every image's views come from its own generator, image_generator(seed, epoch, index),
//    so batches are bit-identical for a given seed whatever the number of workers or the timing.
//  - Errors: a failing image makes next() throw its error (naming the file) for the batch it is in,
//    unless skip_corrupt is set: then the image is replaced by the next decodable one in this rank's
//    order, and the skipped images are counted, listed by skipped() and reported on stderr at the
//    end of the epoch.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"
#include "engine/tensor.h"

namespace byol::data {

struct LoaderOptions {
  int64_t batch_size = 256;
  int workers = 2;   // threads; 0 loads each batch on the calling thread inside next()
  int prefetch = 2;  // batches scheduled ahead of the consumer (>= 1)
  uint64_t seed = 0;
  bool shuffle = true;
  bool drop_last = true;
  int rank = 0, world_size = 1;
  bool skip_corrupt = false;
  bool report_skipped = true;  // print the end-of-epoch line about skipped images to stderr
  int decode_min_side = -1;    // -1: decode_min_side(augment options); 0: always full resolution
  int chunk = 8;               // images per work item
  // Deliver each image decoded (uint8, packed into Batch::pixels) with its views' AugmentParams instead of
  // augmented views, for the GPU augmentation kernel (upload_and_augment, engine/upload.h). The params are
  // the ones the CPU path draws, so the GPU's views are the CPU's (within float rounding).
  bool raw = false;
  // Allocates batch buffers (e.g. pinned host memory for asynchronous copies to a GPU); default
  // Tensor::empty on the CPU. Buffers are allocated once per slot and reused.
  std::function<Tensor(const Shape&, DType)> allocate = {};
};

struct Batch {
  std::vector<Tensor> views;     // one f32 [n, H, W, 3] per view
  Tensor labels;                 // i64 [n]; undefined for an unlabeled dataset
  std::vector<int64_t> indices;  // dataset index of each row
  int64_t epoch = 0, number = 0;
  std::shared_ptr<void> lease;  // keeps the buffers from being reused
  // LoaderOptions::raw (views is then empty): the rows' decoded images back to back in u8 `pixels`, where
  // each starts (sources[row]), and view v of row i's parameters in params[v][i].
  Tensor pixels;
  std::vector<math::AugmentSource> sources;
  std::vector<std::vector<math::AugmentParams>> params;
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

struct SkippedImage {
  int64_t index;
  std::string name, error;
};

class Loader {
 public:
  Loader(std::shared_ptr<const Dataset> dataset, AugmentOptions augment, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Starts (or restarts) an epoch; batches of a previous epoch still being loaded are discarded.
  // first_batch > 0 starts inside the epoch (a resumed run): the batches before it are not loaded,
  // and the ones after it are exactly those an uninterrupted epoch would have produced.
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the epoch in order, or nullopt after the last one.
  std::optional<Batch> next();

  int64_t samples_per_epoch() const;  // this rank's
  int64_t batches_per_epoch() const;
  // This rank's dataset indices for an epoch, in the order the batches take them.
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // Images skipped in the current epoch so far.
  std::vector<SkippedImage> skipped() const;
  const Dataset& dataset() const;
  const AugmentOptions& augment_options() const;
  const LoaderOptions& options() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace byol::data
