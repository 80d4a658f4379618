// The loader's scheduling: batches are scheduled in order, up to `prefetch` ahead of the consumer, each
// into a free buffer slot; workers claim chunks of `chunk` images from the oldest unfinished batch;
// next() waits for the oldest batch to complete and hands it out with a lease that returns the slot.
// One mutex guards all scheduling state; images are loaded and augmented outside it.
#include "data/loader.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <set>
#include <thread>

#include "engine/common.h"

namespace byol::data {

namespace {

struct Slot {
  std::vector<Tensor> views;
  Tensor labels;
  std::vector<int64_t> indices;
  // LoaderOptions::raw: each row's decoded image and shape, and its views' parameters [view][row].
  std::vector<std::vector<uint8_t>> images;
  std::vector<math::AugmentSource> shapes;
  std::vector<std::vector<math::AugmentParams>> params;
};

struct Job {
  int64_t number = 0;  // batch number in the epoch
  Slot* slot = nullptr;
  int64_t size = 0;
  int64_t next_item = 0;  // first unclaimed item
  int64_t done = 0;
  std::exception_ptr error;
};

struct WorkerContext {
  std::vector<uint8_t> scratch;
  AugmentWorkspace ws;
};

}  // namespace

struct Loader::State {
  std::shared_ptr<const Dataset> dataset;
  AugmentOptions aug;
  LoaderOptions opt;
  DecodeHint hint;

  std::mutex mu;
  std::condition_variable work_cv;   // workers: work may be available, or stop
  std::condition_variable ready_cv;  // consumer: a batch completed, or workers went idle
  bool stop = false;
  int64_t epoch = -1;
  std::vector<int64_t> order;  // this rank's indices for the epoch
  int64_t num_batches = 0;
  int64_t next_schedule = 0, next_deliver = 0;
  bool reported = false;
  std::deque<std::unique_ptr<Job>> jobs;  // scheduled, not yet delivered, by number
  int active = 0;                         // chunks being processed outside the lock
  std::vector<std::unique_ptr<Slot>> slots;
  std::vector<Slot*> free_slots;
  std::vector<SkippedImage> skipped;
  std::set<int64_t> skipped_set;
  WorkerContext consumer_ctx;  // workers == 0
  std::vector<std::thread> threads;

  Slot* take_slot() {
    if (!free_slots.empty()) {
      Slot* s = free_slots.back();
      free_slots.pop_back();
      return s;
    }
    auto slot = std::make_unique<Slot>();
    const int64_t b = opt.batch_size;
    if (opt.raw) {
      slot->images.resize(b);
      slot->shapes.resize(b);
      slot->params.assign(aug.views.size(), std::vector<math::AugmentParams>(b));
    } else {
      for (size_t v = 0; v < aug.views.size(); ++v)
        slot->views.push_back(opt.allocate({b, aug.height, aug.width, 3}, DType::f32));
    }
    if (dataset->has_labels()) slot->labels = opt.allocate({b}, DType::i64);
    slot->indices.resize(b);
    slots.push_back(std::move(slot));
    return slots.back().get();
  }

  bool try_schedule() {
    if (next_schedule >= num_batches || next_schedule >= next_deliver + opt.prefetch) return false;
    auto job = std::make_unique<Job>();
    job->number = next_schedule;
    job->slot = take_slot();
    job->size = std::min<int64_t>(opt.batch_size, int64_t(order.size()) - next_schedule * opt.batch_size);
    jobs.push_back(std::move(job));
    ++next_schedule;
    return true;
  }

  // Claims the next chunk of the oldest batch with unclaimed images (scheduling one if allowed).
  bool claim(Job*& job, int64_t& begin, int64_t& end) {
    job = nullptr;
    for (const std::unique_ptr<Job>& j : jobs)
      if (j->next_item < j->size) {
        job = j.get();
        break;
      }
    if (!job && try_schedule()) job = jobs.back().get();
    if (!job) return false;
    begin = job->next_item;
    end = std::min(job->size, begin + std::max(1, opt.chunk));
    job->next_item = end;
    ++active;
    return true;
  }

  void record_skip(int64_t index, const std::string& error) {
    std::lock_guard<std::mutex> lock(mu);
    if (skipped_set.insert(index).second) skipped.push_back({index, dataset->item_name(index), error});
  }

  bool known_bad(int64_t index) {
    std::lock_guard<std::mutex> lock(mu);
    return skipped_set.count(index) > 0;
  }

  void load_item(WorkerContext& ctx, const Job& job, int64_t item) {
    const int64_t pos = job.number * opt.batch_size + item;
    int64_t index = order[pos];
    ImageView img;
    for (int64_t k = 0;; ++k) {
      if (k > 0) {
        BYOL_CHECK(k < int64_t(order.size()), "loader: no image of ", dataset->describe(),
                   " could be decoded on this rank");
        index = order[(pos + k) % int64_t(order.size())];
        if (known_bad(index)) continue;
      }
      try {
        img = dataset->image(index, ctx.scratch, hint);
        break;
      } catch (const Error& e) {
        if (!opt.skip_corrupt) throw;
        record_skip(index, e.what());
      }
    }
    std::mt19937_64 gen = image_generator(opt.seed, epoch, index);
    const int64_t plane = int64_t(aug.height) * aug.width * 3;
    for (size_t v = 0; v < aug.views.size(); ++v) {
      const AugmentParams p = sample_view(aug.views[v], img.height, img.width, aug.height, aug.width, gen);
      if (opt.raw) {
        job.slot->params[v][item] = p;
      } else {
        apply_view(img, p, aug.height, aug.width, aug.normalization,
                   job.slot->views[v].data<float>() + item * plane, ctx.ws);
      }
    }
    if (opt.raw) {
      job.slot->images[item].assign(img.data, img.data + img.bytes());
      job.slot->shapes[item] = {0, img.height, img.width, img.channels};
    }
    if (job.slot->labels.defined()) job.slot->labels.data<int64_t>()[item] = dataset->label(index);
    job.slot->indices[item] = index;
  }

  // Loads [begin, end) of a job; called without the lock.
  void run_chunk(WorkerContext& ctx, Job& job, int64_t begin, int64_t end) {
    std::exception_ptr error;
    for (int64_t i = begin; i < end && !error; ++i) {
      try {
        load_item(ctx, job, i);
      } catch (...) {
        error = std::current_exception();
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    if (error && !job.error) job.error = error;
    job.done += end - begin;
    --active;
    if (job.done == job.size || active == 0) ready_cv.notify_all();
  }

  void worker_loop() {
    WorkerContext ctx;
    std::unique_lock<std::mutex> lock(mu);
    while (true) {
      Job* job = nullptr;
      int64_t begin = 0, end = 0;
      work_cv.wait(lock, [&] { return stop || claim(job, begin, end); });
      if (stop) return;
      lock.unlock();
      run_chunk(ctx, *job, begin, end);
      lock.lock();
    }
  }

  void release_slot(Slot* s) {
    {
      std::lock_guard<std::mutex> lock(mu);
      free_slots.push_back(s);
    }
    work_cv.notify_all();
  }
};

Loader::Loader(std::shared_ptr<const Dataset> dataset, AugmentOptions augment, LoaderOptions options)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  BYOL_CHECK(dataset != nullptr, "Loader: expected a dataset, got null");
  BYOL_CHECK(options.batch_size > 0, "Loader: batch_size expected > 0, got ", options.batch_size);
  BYOL_CHECK(options.workers >= 0, "Loader: workers expected >= 0, got ", options.workers);
  BYOL_CHECK(options.prefetch >= 1, "Loader: prefetch expected >= 1, got ", options.prefetch);
  BYOL_CHECK(options.world_size >= 1 && options.rank >= 0 && options.rank < options.world_size,
             "Loader: expected 0 <= rank < world_size, got rank ", options.rank, ", world_size ",
             options.world_size);
  BYOL_CHECK(!augment.views.empty() && augment.height > 0 && augment.width > 0,
             "Loader: expected at least one view and a positive output size, got ", augment.views.size(),
             " views of ", augment.height, "x", augment.width);
  BYOL_CHECK(dataset->size() >= options.world_size, "Loader: ", dataset->describe(),
             " has fewer images than ranks (", options.world_size, ")");
  if (!options.allocate)
    options.allocate = [](const Shape& shape, DType dtype) { return Tensor::empty(shape, dtype); };
  s.dataset = std::move(dataset);
  s.aug = std::move(augment);
  s.opt = std::move(options);
  s.hint.min_side = s.opt.decode_min_side < 0 ? decode_min_side(s.aug) : s.opt.decode_min_side;
  for (int i = 0; i < s.opt.workers; ++i) s.threads.emplace_back([st = state_.get()] { st->worker_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->work_cv.notify_all();
  for (std::thread& t : state_->threads) t.join();
}

int64_t Loader::samples_per_epoch() const {
  return state_->dataset->size() / state_->opt.world_size;
}

int64_t Loader::batches_per_epoch() const {
  const int64_t n = samples_per_epoch(), b = state_->opt.batch_size;
  return state_->opt.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<int64_t> Loader::epoch_order(int64_t epoch) const {
  const State& s = *state_;
  const int64_t n = s.dataset->size();
  std::vector<int64_t> all(n);
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  if (s.opt.shuffle) {  // Fisher-Yates from (seed, epoch): the same on every rank
    std::mt19937_64 gen(mix_seed(mix_seed(s.opt.seed, 0x6f72646572ull), static_cast<uint64_t>(epoch)));
    for (int64_t i = n - 1; i > 0; --i) {
      const int64_t j = std::min<int64_t>(i, static_cast<int64_t>(uniform01(gen) * double(i + 1)));
      std::swap(all[i], all[j]);
    }
  }
  const int64_t per_rank = n / s.opt.world_size;
  std::vector<int64_t> mine(per_rank);
  for (int64_t k = 0; k < per_rank; ++k) mine[k] = all[s.opt.rank + k * s.opt.world_size];
  if (s.opt.drop_last) mine.resize(per_rank / s.opt.batch_size * s.opt.batch_size);
  return mine;
}

void Loader::start_epoch(int64_t epoch, int64_t first_batch) {
  State& s = *state_;
  BYOL_CHECK(first_batch >= 0 && first_batch <= batches_per_epoch(), "Loader::start_epoch: first_batch ",
             first_batch, " is outside the epoch's ", batches_per_epoch(), " batches");
  std::vector<int64_t> order = epoch_order(epoch);
  std::unique_lock<std::mutex> lock(s.mu);
  // Discard the previous epoch's work: no new chunks, wait for the running ones, free their slots.
  for (const std::unique_ptr<Job>& j : s.jobs) j->next_item = j->size;
  s.next_schedule = s.num_batches;
  s.ready_cv.wait(lock, [&] { return s.active == 0; });
  for (const std::unique_ptr<Job>& j : s.jobs) s.free_slots.push_back(j->slot);
  s.jobs.clear();
  s.order = std::move(order);
  s.epoch = epoch;
  s.num_batches = batches_per_epoch();
  s.next_schedule = s.next_deliver = first_batch;
  s.reported = false;
  s.skipped.clear();
  s.skipped_set.clear();
  lock.unlock();
  s.work_cv.notify_all();
}

std::optional<Batch> Loader::next() {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mu);
  BYOL_CHECK(s.epoch >= 0, "Loader::next: call start_epoch(epoch) first");
  if (s.next_deliver >= s.num_batches) {
    if (!s.reported && s.opt.report_skipped && !s.skipped.empty())
      std::fprintf(stderr, "loader: epoch %lld skipped %zu corrupt image(s); first: %s\n",
                   static_cast<long long>(s.epoch), s.skipped.size(), s.skipped.front().error.c_str());
    s.reported = true;
    return std::nullopt;
  }
  if (s.opt.workers == 0) {
    Job* job = nullptr;
    int64_t begin = 0, end = 0;
    while (s.claim(job, begin, end)) {
      lock.unlock();
      s.run_chunk(s.consumer_ctx, *job, begin, end);
      lock.lock();
      if (job->number == s.next_deliver && job->done == job->size) break;
    }
  } else {
    s.work_cv.notify_all();
  }
  s.ready_cv.wait(lock, [&] {
    return !s.jobs.empty() && s.jobs.front()->number == s.next_deliver &&
           s.jobs.front()->done == s.jobs.front()->size;
  });
  std::unique_ptr<Job> job = std::move(s.jobs.front());
  s.jobs.pop_front();
  ++s.next_deliver;
  lock.unlock();
  s.work_cv.notify_all();
  if (job->error) {
    s.release_slot(job->slot);
    std::rethrow_exception(job->error);
  }
  Batch b;
  b.epoch = s.epoch;
  b.number = job->number;
  const bool full = job->size == s.opt.batch_size;
  for (const Tensor& v : job->slot->views) b.views.push_back(full ? v : v.slice_rows(0, job->size));
  if (job->slot->labels.defined())
    b.labels = full ? job->slot->labels : job->slot->labels.slice_rows(0, job->size);
  b.indices.assign(job->slot->indices.begin(), job->slot->indices.begin() + job->size);
  if (s.opt.raw) {  // pack the rows' images (the consumer's copy; the workers wrote them in parallel)
    const Slot& slot = *job->slot;
    int64_t bytes = 0;
    for (int64_t i = 0; i < job->size; ++i) bytes += static_cast<int64_t>(slot.images[i].size());
    b.pixels = Tensor::empty({bytes}, DType::u8);
    uint8_t* dst = b.pixels.data<uint8_t>();
    for (int64_t i = 0; i < job->size; ++i) {
      math::AugmentSource src = slot.shapes[i];
      src.offset = dst - b.pixels.data<uint8_t>();
      b.sources.push_back(src);
      dst = std::copy(slot.images[i].begin(), slot.images[i].end(), dst);
    }
    for (const std::vector<math::AugmentParams>& view : slot.params)
      b.params.emplace_back(view.begin(), view.begin() + job->size);
  }
  std::shared_ptr<State> keep = state_;
  b.lease = std::shared_ptr<Slot>(job->slot, [keep](Slot* slot) { keep->release_slot(slot); });
  return b;
}

std::vector<SkippedImage> Loader::skipped() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->skipped;
}

const Dataset& Loader::dataset() const {
  return *state_->dataset;
}
const AugmentOptions& Loader::augment_options() const {
  return state_->aug;
}
const LoaderOptions& Loader::options() const {
  return state_->opt;
}

}  // namespace byol::data
