// Rank 1 fails in the middle of a step while rank 0 waits in a collective. The top-level handler must
// bring the whole job down with a clear message instead of leaving rank 0 hanging (ctest: mpi_abort).
#include <cstdio>

#include "engine/comm/communicator.h"

int main() {
  auto comm = byol::comm::make_cpu_communicator();
  try {
    if (comm->rank() == 1) throw byol::Error("simulated failure while reading a batch");
    byol::Tensor t = byol::Tensor::full({4}, 1.0);
    comm->all_reduce_sum(t);  // rank 0 blocks here: rank 1 never joins
    std::printf("rank %d: unexpectedly completed\n", comm->rank());
    return 0;
  } catch (const std::exception& e) {
    comm->abort(e.what());
  }
}
