// The MPI communicator (CPU tensors). MPI is initialised on first use (MPI_THREAD_FUNNELED: only the
// thread that made the communicator calls MPI) and finalised at exit.
#pragma once

#include "engine/comm/communicator.h"

namespace byol::comm {

std::unique_ptr<Communicator> make_mpi_communicator();

}  // namespace byol::comm
