#include "byol/distributed.h"

#include <exception>

namespace byol {

DataParallel::DataParallel(Learner& learner, comm::Communicator& comm, DataParallelOptions opt)
    : learner_(learner), comm_(comm), opt_(opt) {
  BYOL_CHECK(opt.bucket_bytes > 0, "DataParallel: bucket_bytes must be positive");
  const auto& entries = learner.nets.online.param_entries();
  // Reverse registration order: the predictor's gradients are complete first, the stem's last.
  for (size_t i = entries.size(); i-- > 0;) {
    const models::ParamEntry& e = entries[i];
    if (buckets_.empty() ||
        static_cast<size_t>(buckets_.back().end - buckets_.back().begin) * sizeof(float) >=
            opt.bucket_bytes) {
      buckets_.emplace_back();
      buckets_.back().end = e.offset + e.numel();
    }
    Bucket& b = buckets_.back();
    b.begin = e.offset;
    ++b.params;
    bucket_of_[e.slot->impl()] = buckets_.size() - 1;
  }
  // The last bucket extends to the buffer's start, the first to its end (alignment gaps included).
  if (!buckets_.empty()) {
    buckets_.front().end = learner.nets.online.grads().numel();
    buckets_.back().begin = 0;
  }
  if (comm.world_size() > 1) {
    // [byol:sync-bn]
    if (opt.sync_bn) learner.bn_all_reduce = [&comm](Tensor& sums) { comm.all_reduce_sum(sums); };
    learner.grad_sync = this;
    learner.candidates = {comm.rank(), comm.world_size(),
                          [&comm](Tensor& rows) { comm.all_reduce_sum(rows); }};
  }
}

DataParallel::~DataParallel() {
  if (active_) deactivate();  // the hook refers to this object
  if (learner_.grad_sync == this) learner_.grad_sync = nullptr;
  learner_.candidates = {};
}

void DataParallel::broadcast_from_root() {
  if (comm_.world_size() == 1) return;
  ByolNetworks& nets = learner_.nets;
  for (const Tensor* t :
       {&nets.online.params(), &nets.online.stats(), &nets.target.params(), &nets.target.stats()})
    comm_.broadcast(*t, 0);
  if (learner_.probe) comm_.broadcast(learner_.probe_params.params(), 0);
}

StepValues DataParallel::mean_over_ranks(const StepMetrics& m) {
  if (comm_.world_size() == 1) return m.read();
  StepMetrics total = m;
  total.values = m.values.to(DType::f64);  // a new tensor: the step's own values stay as they were
  comm_.all_reduce_sum(total.values);
  comm_.wait_host();  // with NCCL: a timed wait, so a dead rank ends the job instead of hanging it here
  const std::vector<double> v = total.values.to_vector<double>();
  const double world = comm_.world_size();
  StepValues out;
  out.loss = v[StepMetrics::kLoss] / world;
  out.probe_loss = v[StepMetrics::kProbeLoss] / world;
  out.probe_accuracy =
      m.probe_rows > 0 ? v[StepMetrics::kProbeCorrect] / world / static_cast<double>(m.probe_rows) : 0.0;
  out.regression_loss = v[StepMetrics::kRegressionLoss] / world;
  return out;
}

double DataParallel::sum_over_ranks(const Tensor& value) {
  BYOL_CHECK(value.defined() && value.numel() == 1,
             "DataParallel::sum_over_ranks: expected a one-element tensor, got ",
             value.defined() ? value.describe() : std::string("an undefined tensor"));
  Tensor t = value.to(DType::f64).contiguous();
  if (t.impl() == value.impl()) t = t.clone();  // never reduce the caller's tensor in place
  if (comm_.world_size() > 1) {
    comm_.all_reduce_sum(t);
    comm_.wait_host();
  }
  return t.item();
}

void DataParallel::launch(Bucket& b) {
  b.request = comm_.all_reduce_sum_async(learner_.nets.online.grads().slice_rows(b.begin, b.end));
}

void DataParallel::begin() {
  if (active_) abandon();  // a step that threw before finish(): its hook and requests go first
  for (Bucket& b : buckets_) {
    b.remaining = b.params;
    b.request.reset();
  }
  active_ = true;
  // [byol:allreduce]
  previous_hook_ = set_leaf_ready_hook([this](const TensorImpl& leaf) {
    auto it = bucket_of_.find(&leaf);
    if (it == bucket_of_.end()) return;
    Bucket& b = buckets_[it->second];
    if (--b.remaining == 0) launch(b);
  });
}

void DataParallel::finish() {
  // Parameters that received no gradient this step leave their bucket unlaunched: launch those now,
  // in bucket order (the same on every rank), then wait for everything. (Still active until the waits are
  // done: if one throws, abandon() finds the hook and the requests as begin() left them.)
  for (Bucket& b : buckets_)
    if (!b.request) launch(b);
  for (Bucket& b : buckets_) b.request->wait();
  deactivate();
  const Tensor g = learner_.nets.online.grads();
  g.copy_(ops::scale(g, 1.0 / comm_.world_size()));
}

void DataParallel::deactivate() {
  set_leaf_ready_hook(std::move(previous_hook_));
  previous_hook_ = nullptr;
  active_ = false;
}

void DataParallel::abandon() {
  if (!active_) return;
  deactivate();
  // Every request is discarded, even after one throws (the rest could otherwise be waited for later, outside
  // the capture they were recorded in); the first error is then rethrown.
  std::exception_ptr first;
  for (Bucket& b : buckets_) {
    try {
      if (b.request) b.request->discard();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
    b.request.reset();
  }
  if (first) std::rethrow_exception(first);
}

bool DataParallel::on_every_rank(bool mine) {
  return sum_over_ranks(Tensor::full({1}, mine ? 0.0 : 1.0, DType::f32, learner_.device())) == 0.0;
}

void DataParallel::average(const Tensor& t) {
  comm_.all_reduce_sum(t);
  t.copy_(ops::scale(t, 1.0 / comm_.world_size()));
}

}  // namespace byol
