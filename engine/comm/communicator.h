// Communicators: what data-parallel training needs from the ranks of a job.
//
//   NoneCommunicator  one process (rank 0 of 1); every collective is a no-op
//   MpiCommunicator   CPU tensors, MPI_Allreduce / MPI_Iallreduce / MPI_Bcast on host buffers
//   NcclCommunicator  CUDA tensors, NCCL on its own stream (engine/comm/nccl_communicator.h)
//
// Ranks come from MPI when the program was started by mpirun (or srun), else from the usual launcher
// variables; without either the program is one rank and never initialises MPI. Collectives operate in
// place on contiguous tensors. A failure anywhere is an Error; abort() brings every rank down (used by
// the apps' top-level handler so a failing rank never leaves the others hanging in a collective).
#pragma once

#include <memory>
#include <string>

#include "engine/tensor.h"

namespace byol::comm {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // rank within the node: selects the GPU (the launcher's own variable, else another
                       // launcher's, else the rank itself: one node assumed)
  bool launched_by_mpi = false;
};

// Reads the launcher's environment (OMPI_COMM_WORLD_*, PMI_*, SLURM_*, RANK/WORLD_SIZE/LOCAL_RANK).
DistEnv detect_environment();

// An asynchronous collective in flight; wait() completes it (idempotent). discard() is for a step that
// threw before waiting: a collective queued inside a CUDA graph capture (abandoned) never ran, so nothing
// waits for it; any other is completed as by wait(), since it is running in place on the buffer.
class Request {
 public:
  virtual ~Request() = default;
  virtual void wait() = 0;
  virtual void discard() { wait(); }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual const char* backend() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual void all_reduce_sum(const Tensor& t) = 0;  // in place, blocking
  virtual std::unique_ptr<Request> all_reduce_sum_async(const Tensor& t) = 0;
  virtual void broadcast(const Tensor& t, int root) = 0;
  virtual void barrier() = 0;
  // Blocks the host until every collective queued so far has completed. MPI's and none's collectives
  // are complete when they return; NCCL's run on a stream, and this waits for it with the timeout and
  // error polling of BYOL_NCCL_TIMEOUT, so a read of a reduced value never blocks forever on a dead rank.
  virtual void wait_host() {}
  // Ends the whole job with `message` (every rank, exit code 1). Never returns.
  [[noreturn]] virtual void abort(const std::string& message) = 0;
  bool is_root() const { return rank() == 0; }
};

class NoneCommunicator final : public Communicator {
 public:
  const char* backend() const override { return "none"; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(const Tensor&) override {}
  std::unique_ptr<Request> all_reduce_sum_async(const Tensor&) override;
  void broadcast(const Tensor&, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message) override;
};

// The communicator for this process's environment: MPI (CPU tensors) when launched by mpirun and
// built with MPI, else none. A multi-rank launch in a build without MPI is an error.
std::unique_ptr<Communicator> make_cpu_communicator();

bool mpi_compiled();

}  // namespace byol::comm
