// The NCCL communicator (CUDA tensors), for multi-GPU training started by mpirun: one process per GPU,
// the GPU chosen by the local rank. Rank 0 creates the NCCL unique id and MPI broadcasts it.
//
// Collectives run on the communicator's own stream, ordered after the work already queued on the
// compute stream (an event), and the compute stream is made to wait for their completion (another
// event) — no host synchronisation. The asynchronous form lets backward keep queueing work while a
// bucket is being reduced; Request::wait() only orders the compute stream after it.
// NCCL errors are checked asynchronously: whenever the host does block (barrier, wait_host, and every
// copy from this GPU to the host — Tensor::to(cpu), item(), to_vector(), as in kNN, checkpoints and
// metrics — through cuda::set_host_read_guard), ncclCommGetAsyncError is polled while it waits for the
// communicator's stream and the compute stream (where a replayed CUDA graph runs its collectives), and a
// collective that has not finished within BYOL_NCCL_TIMEOUT seconds (default 600) aborts the communicator
// and throws, naming the rank. Start-up has the same deadline: ncclGetUniqueId runs on a helper thread,
// and the communicator is created non-blocking (ncclConfig_t.blocking = 0) and polled, so a rank that
// never joins fails the others with an error instead of hanging them. The communicator stays non-blocking:
// a call that answers ncclInProgress is polled to completion (with the deadline) before the next.
#pragma once

#include "engine/comm/communicator.h"

namespace byol::comm {

bool nccl_compiled();
// The GPU communicator for this process's environment (any number of ranks, including one).
std::unique_ptr<Communicator> make_nccl_communicator();

}  // namespace byol::comm
