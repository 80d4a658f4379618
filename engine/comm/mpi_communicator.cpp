#include "engine/comm/mpi_communicator.h"

#include <cstdio>
#include <cstdlib>

#if defined(BYOL_WITH_MPI)
#include <mpi.h>
#endif

namespace byol::comm {

#if defined(BYOL_WITH_MPI)

bool mpi_compiled() {
  return true;
}

namespace {

#define BYOL_MPI_CHECK(stmt)                                                                            \
  do {                                                                                                  \
    const int byol_rc_ = (stmt);                                                                        \
    if (byol_rc_ != MPI_SUCCESS) {                                                                      \
      char byol_msg_[MPI_MAX_ERROR_STRING];                                                             \
      int byol_len_ = 0;                                                                                \
      MPI_Error_string(byol_rc_, byol_msg_, &byol_len_);                                                \
      ::byol::throw_error(::byol::cat(#stmt, " failed: ", std::string(byol_msg_, byol_len_)), __FILE__, \
                          __LINE__);                                                                    \
    }                                                                                                   \
  } while (0)

void ensure_mpi() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  int provided = 0;
  BYOL_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
  // Errors come back as codes (and become exceptions) instead of killing the job silently.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  std::atexit([] {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  });
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i32:
      return MPI_INT32_T;
    case DType::i64:
      return MPI_INT64_T;
    case DType::u8:
      return MPI_UINT8_T;
    case DType::bf16:
      break;
  }
  BYOL_FAIL("MPI communicator: no MPI type for dtype ", dtype_name(t));
}

void check_host(const char* op, const Tensor& t) {
  BYOL_CHECK(t.defined() && t.device().is_cpu() && t.is_contiguous(), "MPI ", op,
             ": expected a contiguous CPU tensor, got ", t.describe());
}

class MpiRequest final : public Request {
 public:
  MpiRequest() = default;
  MPI_Request req = MPI_REQUEST_NULL;
  void wait() override {
    if (req != MPI_REQUEST_NULL) BYOL_MPI_CHECK(MPI_Wait(&req, MPI_STATUS_IGNORE));
  }
  ~MpiRequest() override {
    if (req != MPI_REQUEST_NULL) MPI_Wait(&req, MPI_STATUS_IGNORE);
  }
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    ensure_mpi();
    BYOL_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
    BYOL_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
    // The launcher's variables and MPI must tell the same story. Where they do not (torchrun-style RANK /
    // WORLD_SIZE, srun without the MPI's PMI plugin, a binary linked against another MPI than the mpirun
    // that started it), each process would be its own one-rank job: N copies training the whole batch and
    // writing the same run.out. Say so instead.
    const DistEnv env = detect_environment();
    if (env.world_size != size_ || env.rank != rank_) {
      const std::string message =
          cat("the launcher's environment says rank ", env.rank, " of ", env.world_size,
              ", but MPI says rank ", rank_, " of ", size_,
              ": byol.cpp's ranks come from MPI, so start it with the mpirun (or srun --mpi=...) "
              "of the MPI it was built with",
              env.launched_by_mpi
                  ? " (a single process inside a Slurm allocation of several tasks: start it with srun, "
                    "or run it with SLURM_NTASKS=1)"
                  : " (RANK / WORLD_SIZE alone do not start MPI)");
      if (size_ > 1) abort(message);  // the other ranks may be waiting in a collective already
      throw Error(message);
    }
  }
  const char* backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  void all_reduce_sum(const Tensor& t) override {
    check_host("all_reduce", t);
    if (t.numel() == 0) return;
    BYOL_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.raw_data(), static_cast<int>(t.numel()), mpi_type(t.dtype()),
                                 MPI_SUM, MPI_COMM_WORLD));
  }
  std::unique_ptr<Request> all_reduce_sum_async(const Tensor& t) override {
    check_host("all_reduce", t);
    auto r = std::make_unique<MpiRequest>();
    if (t.numel() == 0) return r;
    BYOL_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), static_cast<int>(t.numel()),
                                  mpi_type(t.dtype()), MPI_SUM, MPI_COMM_WORLD, &r->req));
    return r;
  }
  void broadcast(const Tensor& t, int root) override {
    check_host("broadcast", t);
    if (t.numel() == 0) return;
    BYOL_MPI_CHECK(
        MPI_Bcast(t.raw_data(), static_cast<int>(t.numel()), mpi_type(t.dtype()), root, MPI_COMM_WORLD));
  }
  void barrier() override { BYOL_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); }
  [[noreturn]] void abort(const std::string& message) override {
    std::fprintf(stderr, "error on rank %d of %d: %s\n", rank_, size_, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() {
  return std::make_unique<MpiCommunicator>();
}

#else  // no MPI in this build

bool mpi_compiled() {
  return false;
}

std::unique_ptr<Communicator> make_mpi_communicator() {
  BYOL_FAIL("this build of byol.cpp has no MPI (install libopenmpi-dev and reconfigure)");
}

#endif

}  // namespace byol::comm
