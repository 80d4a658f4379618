// Data-parallel BYOL over a Communicator (engine/comm/communicator.h).
//
// Each rank takes batch/world_size images of the global batch. DataParallel wires a Learner to the
// communicator:
//  - broadcast_from_root(): online, predictor, target, BN statistics and probe start identical on
//    every rank (rank 0's values), however each rank was seeded;
//  - devices: the learner's buffers must be where the communicator works — host tensors for MPI, the
//    rank's GPU for NCCL (move the learner with Learner::to before building DataParallel); the synced-BN
//    hook then all-reduces the f64 partial sums on that device;
//  - synced batch norm (default): every BN layer all-reduces its per-channel partial sums between the
//    reduce and normalise phases (forward) and its two reductions (backward), so the statistics are
//    those of the global batch (per view: both views share one message per layer and pass); with
//    sync_bn = false each rank normalises by its own batch;
//  - gradients: the online gradient buffer is cut into buckets of about bucket_bytes, in reverse
//    registration order (the order backward produces them); a bucket's all-reduce starts as soon as
//    backward has finished every parameter in it, while backward goes on; finish() waits for all
//    buckets and divides by the world size. Every rank launches the buckets in the same order (the
//    graph is the same), which the collectives require.
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include "byol/learner.h"
#include "engine/comm/communicator.h"

namespace byol {

struct DataParallelOptions {
  size_t bucket_bytes = size_t(25) << 20;
  bool sync_bn = true;
};

class DataParallel final : public GradientSync {
 public:
  DataParallel(Learner& learner, comm::Communicator& comm, DataParallelOptions opt = {});
  ~DataParallel() override;
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  void broadcast_from_root();
  // A step's metrics averaged over the ranks: one all-reduce of the step's device values (in f64), then
  // one read to the host. Blocking, and a collective: every rank calls it at the same step.
  StepValues mean_over_ranks(const StepMetrics& m);
  // A one-element tensor (any device, any floating dtype) summed over the ranks in f64 and read to the
  // host. Blocking, and a collective.
  double sum_over_ranks(const Tensor& value);
  size_t bucket_count() const { return buckets_.size(); }

  void begin() override;
  void finish() override;
  void average(const Tensor& t) override;
  // One all-reduce of a failure count on the learner's device, read to the host. Blocking, and a collective.
  bool on_every_rank(bool mine) override;
  void abandon() override;

 private:
  struct Bucket {
    int64_t begin = 0, end = 0;  // element range of the flat gradient buffer
    int params = 0;
    int remaining = 0;
    std::unique_ptr<comm::Request> request;
  };
  void launch(Bucket& b);
  void deactivate();  // puts back the backward hook begin() replaced; no longer active

  Learner& learner_;
  comm::Communicator& comm_;
  DataParallelOptions opt_;
  std::vector<Bucket> buckets_;
  std::unordered_map<const TensorImpl*, size_t> bucket_of_;
  LeafReadyHook previous_hook_;
  bool active_ = false;  // between begin() and finish() (or abandon())
};

}  // namespace byol
