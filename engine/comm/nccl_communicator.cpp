#include "engine/comm/nccl_communicator.h"

#if defined(BYOL_WITH_CUDA) && defined(BYOL_WITH_NCCL)

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "engine/comm/mpi_communicator.h"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda_graph.h"

namespace byol::comm {

bool nccl_compiled() {
  return true;
}

namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::bf16:
      return ncclBfloat16;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    case DType::u8:
      return ncclUint8;
  }
  BYOL_FAIL("NCCL communicator: no NCCL type for dtype ", dtype_name(t));
}

// BYOL_NCCL_TIMEOUT, seconds (600 if unset). A value that is not a positive number is an error: read as 0
// (atof's answer), it would time every wait out at once.
double timeout_seconds() {
  const char* v = std::getenv("BYOL_NCCL_TIMEOUT");
  if (!v || !*v) return 600.0;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  BYOL_CHECK(end && *end == '\0' && std::isfinite(s) && s > 0, "environment variable BYOL_NCCL_TIMEOUT='", v,
             "' is not a positive number of seconds");
  return s;
}

using Clock = std::chrono::steady_clock;
Clock::time_point deadline_from_now() {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_seconds()));
}

// ncclGetUniqueId on a helper thread, waited for until the deadline: it opens NCCL's bootstrap socket
// and can hang on a misconfigured network interface. On a timeout the thread is left behind (it cannot be
// stopped) and the error ends the job.
ncclUniqueId unique_id_with_timeout() {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    ncclResult_t result = ncclSuccess;
    ncclUniqueId id{};
  };
  auto shared = std::make_shared<Shared>();
  std::thread([shared] {
    ncclUniqueId id{};
    const ncclResult_t r = ncclGetUniqueId(&id);
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->id = id;
    shared->result = r;
    shared->done = true;
    shared->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(shared->mu);
  const bool done = shared->cv.wait_until(lock, deadline_from_now(), [&] { return shared->done; });
  BYOL_CHECK(done, "ncclGetUniqueId did not return within ", timeout_seconds(),
             " s (BYOL_NCCL_TIMEOUT): NCCL could not open its bootstrap socket (check NCCL_SOCKET_IFNAME and "
             "the network interfaces; NCCL_DEBUG=INFO says more)");
  const ncclResult_t r = shared->result;
  BYOL_CHECK(r == ncclSuccess, "ncclGetUniqueId failed (NCCL): ", ncclGetErrorString(r), " - ",
             ncclGetLastError(nullptr));
  return shared->id;
}

// Whether the compute stream is capturing a CUDA graph (train.cuda_graph): collectives queued now are only
// recorded into the graph, and nothing on the host may wait for them.
bool compute_capturing() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  BYOL_CUDA_CHECK(cudaStreamIsCapturing(cuda::compute_stream(), &status));
  return status != cudaStreamCaptureStatusNone;
}

class NcclCommunicator;

class NcclRequest final : public Request {
 public:
  NcclRequest(NcclCommunicator* owner, cudaEvent_t done, bool captured)
      : owner_(owner), done_(done), captured_(captured) {}
  ~NcclRequest() override;  // never throws: an error is reported on stderr
  void wait() override;
  // Queued inside a capture (abandoned): it never ran, and waiting on its event outside that capture is an
  // error. Queued eagerly: it is running in place on the buffer, so the compute stream waits for it.
  void discard() override {
    if (!captured_) return wait();
    if (waited_) return;
    waited_ = true;
    cudaEventDestroy(done_);
  }

 private:
  NcclCommunicator* owner_;
  cudaEvent_t done_;
  bool captured_;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> bootstrap, int local_rank) : boot_(std::move(bootstrap)) {
    int devices = 0;
    BYOL_CUDA_CHECK(cudaGetDeviceCount(&devices));
    BYOL_CHECK(devices > 0, "NCCL communicator: no CUDA device is visible on rank ", boot_->rank());
    device_ = local_rank % devices;
    BYOL_CUDA_CHECK(cudaSetDevice(device_));
    ncclUniqueId id{};
    if (boot_->is_root()) id = unique_id_with_timeout();
    Tensor id_bytes = Tensor::empty({static_cast<int64_t>(sizeof id)}, DType::u8);
    std::memcpy(id_bytes.raw_data(), &id, sizeof id);
    boot_->broadcast(id_bytes, 0);
    std::memcpy(&id, id_bytes.raw_data(), sizeof id);
    BYOL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // Non-blocking initialisation, polled until the deadline: a rank that never joins (it died before
    // ncclCommInitRank, or cannot reach rank 0) would otherwise hold this one here forever.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r = ncclCommInitRankConfig(&comm_, boot_->world_size(), id, boot_->rank(), &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      if (comm_) ncclCommAbort(comm_);
      comm_ = nullptr;
      BYOL_FAIL("ncclCommInitRankConfig failed on rank ", rank(), " (NCCL): ", ncclGetErrorString(r), " - ",
                ncclGetLastError(nullptr));
    }
    wait_ready("ncclCommInitRankConfig (joining the other ranks)");
    try {
      warm_up();
    } catch (...) {  // the destructor will not run: undo what the constructor made
      abort_comm();
      cudaStreamDestroy(stream_);
      stream_ = nullptr;
      throw;
    }
    // Installed last: a constructor that throws must not leave the process-wide guard pointing at it.
    // Not during a capture: a read there fails with CudaGraph's own message, and an event recorded on a
    // stream joined to the capture cannot be queried.
    cuda::set_host_read_guard([this](int device) {
      if (device == device_ && comm_ != nullptr && !compute_capturing()) wait_host(record_after_compute());
    });
  }
  ~NcclCommunicator() override {
    cuda::set_host_read_guard(nullptr);
    // Unwinding an error: the other ranks may be waiting in a collective this rank will never join, and the
    // caller is about to end the job (the apps' MPI_Abort); a graceful finalize could wait out the deadline.
    if (comm_ && std::uncaught_exceptions() > 0) abort_comm();
    if (comm_) {
      // Finalize flushes what is queued; polled with the deadline, then destroyed, or aborted.
      const ncclResult_t f = ncclCommFinalize(comm_);
      bool clean = f == ncclSuccess || f == ncclInProgress;
      const auto deadline = deadline_from_now();
      ncclResult_t state = ncclInProgress;
      while (clean && ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress) {
        if (Clock::now() > deadline) clean = false;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      if (clean && state == ncclSuccess) {
        ncclCommDestroy(comm_);
      } else {
        abort_comm();
      }
    }
    if (stream_) cudaStreamDestroy(stream_);
  }

  // NCCL (2.22 and later) connects each algorithm and protocol on its first use: in training that is the
  // first gradient bucket, mid-backward, with the activations holding the memory pool at its peak, where the
  // connection buffers may no longer fit. The collectives training uses, at the sizes it uses (small and
  // large float all-reduces, double statistics, a broadcast), once now instead.
  void warm_up() {
    const Device dev = Device::cuda(device_);
    for (const int64_t n : {int64_t(256), int64_t(1) << 18, int64_t(8) << 20})
      all_reduce_sum(Tensor::zeros({n}, DType::f32, dev));
    all_reduce_sum(Tensor::zeros({256}, DType::f64, dev));
    broadcast(Tensor::zeros({256}, DType::f32, dev), 0);
    wait_host();
  }

  const char* backend() const override { return "nccl"; }
  int rank() const override { return boot_->rank(); }
  int world_size() const override { return boot_->world_size(); }

  void all_reduce_sum(const Tensor& t) override { all_reduce_sum_async(t)->wait(); }

  std::unique_ptr<Request> all_reduce_sum_async(const Tensor& t) override {
    check_device("all_reduce", t);
    after_compute();
    enqueued(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                           ncclSum, comm_, stream_),
             "ncclAllReduce");
    const bool captured = compute_capturing();
    return std::make_unique<NcclRequest>(this, record(), captured);
  }

  void broadcast(const Tensor& t, int root) override {
    check_device("broadcast", t);
    after_compute();
    enqueued(ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                           root, comm_, stream_),
             "ncclBroadcast");
    NcclRequest(this, record(), false).wait();
  }

  void barrier() override {
    wait_host(record_after_compute());
    boot_->barrier();
  }

  void wait_host() override { wait_host(record_after_compute()); }

  [[noreturn]] void abort(const std::string& message) override {
    cuda::set_host_read_guard(nullptr);
    abort_comm();
    boot_->abort(message);
    std::_Exit(1);  // not reached: the bootstrap communicator's abort ends the process
  }

  // The compute stream waits for `done` (no host synchronisation).
  void order_compute_after(cudaEvent_t done) {
    BYOL_CUDA_CHECK(cudaStreamWaitEvent(cuda::compute_stream(), done, 0));
  }

  // Blocks the host until `done`, polling NCCL's asynchronous error state, with a timeout. Destroys `done`.
  void wait_host(cudaEvent_t done) {
    struct EventOwner {
      cudaEvent_t e;
      ~EventOwner() { cudaEventDestroy(e); }
    } owner{done};
    const auto deadline = deadline_from_now();
    for (;;) {
      const cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) break;
      BYOL_CHECK(q == cudaErrorNotReady, "NCCL communicator on rank ", rank(), ": ", cudaGetErrorString(q));
      BYOL_CHECK(comm_ != nullptr, "NCCL communicator on rank ", rank(),
                 " was aborted after an earlier error");
      ncclResult_t async = ncclSuccess;
      BYOL_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
      if (async != ncclSuccess && async != ncclInProgress) {
        abort_comm();
        BYOL_FAIL("NCCL error on rank ", rank(), ": ", ncclGetErrorString(async), "; communicator aborted");
      }
      if (Clock::now() > deadline) {
        abort_comm();
        BYOL_FAIL("NCCL collective on rank ", rank(), " did not finish within ", timeout_seconds(),
                  " s (BYOL_NCCL_TIMEOUT): another rank has probably failed; communicator aborted");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

 private:
  void check_device(const char* op, const Tensor& t) {
    BYOL_CHECK(t.defined() && t.device().is_cuda() && t.is_contiguous(), "NCCL ", op,
               ": expected a contiguous CUDA tensor, got ", t.describe());
    BYOL_CHECK(comm_ != nullptr, "NCCL ", op, ": the communicator was aborted after an earlier error");
  }
  // NCCL's abort waits until no CUDA graph holds this communicator's collectives: the graphs go first.
  void abort_comm() {
    if (!comm_) return;
    CudaGraph::release_all_for_abort();
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  // Polls the (non-blocking) communicator until its last call has completed, with the deadline; on an
  // error or the timeout it aborts the communicator and throws, naming `what`.
  void wait_ready(const char* what) {
    const auto deadline = deadline_from_now();
    for (;;) {
      ncclResult_t state = ncclInProgress;
      const ncclResult_t q = ncclCommGetAsyncError(comm_, &state);
      if (q != ncclSuccess) state = q;
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) {
        abort_comm();
        BYOL_FAIL(what, " failed on rank ", rank(), " (NCCL): ", ncclGetErrorString(state), " - ",
                  ncclGetLastError(nullptr), "; communicator aborted");
      }
      if (Clock::now() > deadline) {
        abort_comm();
        BYOL_FAIL(
            what, " on rank ", rank(), " did not complete within ", timeout_seconds(),
            " s (BYOL_NCCL_TIMEOUT): another rank has probably failed or cannot be reached; communicator "
            "aborted");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  // A call on the non-blocking communicator returns ncclInProgress while it is still being enqueued; no
  // other NCCL call (nor an event recorded after it) may follow before it has completed.
  void enqueued(ncclResult_t r, const char* what) {
    if (r == ncclSuccess) return;
    if (r == ncclInProgress) return wait_ready(what);
    BYOL_FAIL(what, " failed on rank ", rank(), " (NCCL): ", ncclGetErrorString(r), " - ",
              ncclGetLastError(comm_));
  }
  // Our stream starts after everything already queued on the compute stream.
  void after_compute() {
    cudaEvent_t ready;
    BYOL_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    BYOL_CUDA_CHECK(cudaEventRecord(ready, cuda::compute_stream()));
    BYOL_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    cudaEventDestroy(ready);  // released once the wait has been satisfied
  }
  cudaEvent_t record() {
    cudaEvent_t done;
    BYOL_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    BYOL_CUDA_CHECK(cudaEventRecord(done, stream_));
    return done;
  }
  // An event after everything queued so far on our stream and on the compute stream: what a host wait
  // waits for. A replayed CUDA graph (train.cuda_graph) runs its collectives on the compute stream, so a
  // wait on our stream alone would pass while a collective inside the graph hangs on a dead rank, and the
  // host's copy behind it would block with no deadline.
  cudaEvent_t record_after_compute() {
    after_compute();
    return record();
  }

  std::unique_ptr<Communicator> boot_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

void NcclRequest::wait() {
  if (waited_) return;
  waited_ = true;
  struct EventOwner {
    cudaEvent_t e;
    ~EventOwner() { cudaEventDestroy(e); }
  } owner{done_};
  owner_->order_compute_after(done_);
}

NcclRequest::~NcclRequest() {
  try {
    wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: NCCL request: ordering the compute stream after the collective failed: %s\n",
                 e.what());
  } catch (...) {
    std::fprintf(stderr, "error: NCCL request: ordering the compute stream after the collective failed\n");
  }
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator() {
  const DistEnv env = detect_environment();
  std::unique_ptr<Communicator> boot;
  if (env.world_size > 1) {
    BYOL_CHECK(mpi_compiled(), "NCCL needs MPI to start ", env.world_size,
               " ranks (to broadcast its unique id), and this build has no MPI");
    boot = make_mpi_communicator();
  } else {
    boot = std::make_unique<NoneCommunicator>();
  }
  return std::make_unique<NcclCommunicator>(std::move(boot), env.local_rank);
}

}  // namespace byol::comm

#else

namespace byol::comm {
bool nccl_compiled() {
  return false;
}
std::unique_ptr<Communicator> make_nccl_communicator() {
  BYOL_FAIL("this build of byol.cpp has no NCCL (configure with the CUDA toolkit and NCCL available)");
}
}  // namespace byol::comm

#endif
