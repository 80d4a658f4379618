#include "engine/comm/communicator.h"

#include <cstdio>
#include <cstdlib>

#include "engine/comm/mpi_communicator.h"

namespace byol::comm {

namespace {
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  BYOL_CHECK(end && *end == '\0' && x >= 0, "environment variable ", name, "='", v,
             "' is not a non-negative integer");
  return static_cast<int>(x);
}

struct DoneRequest final : Request {
  void wait() override {}
};
}  // namespace

DistEnv detect_environment() {
  DistEnv env;
  // Open MPI, then MPICH/Hydra (PMI), then Slurm, then torchrun-style variables.
  struct Scheme {
    const char *rank, *size, *local;
    bool mpi;
  };
  const Scheme schemes[] = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", true},
      {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", true},
      {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", true},
      {"RANK", "WORLD_SIZE", "LOCAL_RANK", false}};
  for (const Scheme& s : schemes) {
    if (std::getenv(s.size) == nullptr) continue;
    env.rank = env_int(s.rank, 0);
    env.world_size = env_int(s.size, 1);
    // The scheme's own local rank, else another launcher's: under srun --mpi=pmi2 the PMI variables are set
    // but only Slurm's SLURM_LOCALID says which rank of the node this is (Hydra's MPI_LOCALRANKID is not),
    // and taking 0 would put every rank of a node on its first GPU.
    env.local_rank = -1;
    for (const char* local :
         {s.local, "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"})
      if (env.local_rank < 0 && std::getenv(local) != nullptr && *std::getenv(local) != '\0')
        env.local_rank = env_int(local, 0);
    if (env.local_rank < 0) env.local_rank = env.world_size > 1 ? env.rank : 0;  // one node assumed
    env.launched_by_mpi = s.mpi;
    BYOL_CHECK(env.world_size >= 1 && env.rank < env.world_size, "launcher environment: rank ", env.rank,
               " is not below the world size ", env.world_size, " (", s.rank, ", ", s.size, ")");
    break;
  }
  return env;
}

std::unique_ptr<Request> NoneCommunicator::all_reduce_sum_async(const Tensor&) {
  return std::make_unique<DoneRequest>();
}

void NoneCommunicator::abort(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

std::unique_ptr<Communicator> make_cpu_communicator() {
  const DistEnv env = detect_environment();
  if (env.world_size == 1) return std::make_unique<NoneCommunicator>();
  BYOL_CHECK(mpi_compiled(), "this process is rank ", env.rank, " of ", env.world_size,
             ", but this build of byol.cpp has no MPI (install libopenmpi-dev and reconfigure)");
  return make_mpi_communicator();
}

}  // namespace byol::comm
