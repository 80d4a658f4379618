#include "engine/comm/nccl_communicator.h"

#if defined(BYOL_WITH_CUDA) && defined(BYOL_WITH_NCCL)

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "engine/comm/mpi_communicator.h"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"

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

double timeout_seconds() {
  const char* v = std::getenv("BYOL_NCCL_TIMEOUT");
  return v && *v ? std::atof(v) : 600.0;
}

class NcclCommunicator;

class NcclRequest final : public Request {
 public:
  NcclRequest(NcclCommunicator* owner, cudaEvent_t done) : owner_(owner), done_(done) {}
  ~NcclRequest() override;
  void wait() override;

 private:
  NcclCommunicator* owner_;
  cudaEvent_t done_;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> bootstrap, int local_rank) : boot_(std::move(bootstrap)) {
    int devices = 0;
    BYOL_CUDA_CHECK(cudaGetDeviceCount(&devices));
    BYOL_CHECK(devices > 0, "NCCL communicator: no CUDA device is visible on rank ", boot_->rank());
    BYOL_CUDA_CHECK(cudaSetDevice(local_rank % devices));
    ncclUniqueId id;
    if (boot_->is_root()) BYOL_NCCL_CHECK(ncclGetUniqueId(&id));
    Tensor id_bytes = Tensor::empty({static_cast<int64_t>(sizeof id)}, DType::u8);
    std::memcpy(id_bytes.raw_data(), &id, sizeof id);
    boot_->broadcast(id_bytes, 0);
    std::memcpy(&id, id_bytes.raw_data(), sizeof id);
    BYOL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    BYOL_NCCL_CHECK(ncclCommInitRank(&comm_, boot_->world_size(), id, boot_->rank()));
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  const char* backend() const override { return "nccl"; }
  int rank() const override { return boot_->rank(); }
  int world_size() const override { return boot_->world_size(); }

  void all_reduce_sum(const Tensor& t) override { all_reduce_sum_async(t)->wait(); }

  std::unique_ptr<Request> all_reduce_sum_async(const Tensor& t) override {
    check_device("all_reduce", t);
    after_compute();
    BYOL_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()),
                                  nccl_type(t.dtype()), ncclSum, comm_, stream_));
    return std::make_unique<NcclRequest>(this, record());
  }

  void broadcast(const Tensor& t, int root) override {
    check_device("broadcast", t);
    after_compute();
    BYOL_NCCL_CHECK(ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()),
                                  nccl_type(t.dtype()), root, comm_, stream_));
    NcclRequest(this, record()).wait();
  }

  void barrier() override {
    wait_host(record());
    boot_->barrier();
  }

  void wait_host() override { wait_host(record()); }

  [[noreturn]] void abort(const std::string& message) override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    boot_->abort(message);
    std::_Exit(1);  // not reached: the bootstrap communicator's abort ends the process
  }

  // The compute stream waits for `done` (no host synchronisation).
  void order_compute_after(cudaEvent_t done) {
    BYOL_CUDA_CHECK(cudaStreamWaitEvent(cuda::compute_stream(), done, 0));
  }

  // Blocks the host until `done`, polling NCCL's asynchronous error state, with a timeout.
  void wait_host(cudaEvent_t done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds());
    for (;;) {
      const cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) break;
      BYOL_CHECK(q == cudaErrorNotReady, "NCCL communicator on rank ", rank(), ": ", cudaGetErrorString(q));
      ncclResult_t async = ncclSuccess;
      BYOL_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
      if (async != ncclSuccess) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        BYOL_FAIL("NCCL error on rank ", rank(), ": ", ncclGetErrorString(async), "; communicator aborted");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        BYOL_FAIL("NCCL collective on rank ", rank(), " did not finish within ", timeout_seconds(),
                  " s (BYOL_NCCL_TIMEOUT): another rank has probably failed; communicator aborted");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    cudaEventDestroy(done);
  }

 private:
  void check_device(const char* op, const Tensor& t) {
    BYOL_CHECK(t.defined() && t.device().is_cuda() && t.is_contiguous(), "NCCL ", op,
               ": expected a contiguous CUDA tensor, got ", t.describe());
    BYOL_CHECK(comm_ != nullptr, "NCCL ", op, ": the communicator was aborted after an earlier error");
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

  std::unique_ptr<Communicator> boot_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

void NcclRequest::wait() {
  if (waited_) return;
  waited_ = true;
  owner_->order_compute_after(done_);
  cudaEventDestroy(done_);
}

NcclRequest::~NcclRequest() {
  if (!waited_) {
    owner_->order_compute_after(done_);
    cudaEventDestroy(done_);
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
