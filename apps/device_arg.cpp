#include "apps/device_arg.h"

#include <cstdlib>

#include "engine/common.h"
#include "engine/device_memory.h"

namespace byol::apps {
namespace {

// N of "cuda:N", or -1 for anything else.
int cuda_index(const std::string& name) {
  if (name.rfind("cuda:", 0) != 0 || name.size() == 5 || name.size() > 8) return -1;
  for (size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  return std::atoi(name.c_str() + 5);
}

}  // namespace

bool valid_device_name(const std::string& name) {
  return name == "auto" || name == "cpu" || name == "cuda" || cuda_index(name) >= 0;
}

Device resolve_device(const std::string& name, int local_rank, int world_size, const std::string& what) {
  BYOL_CHECK(valid_device_name(name), what, ": expected auto, cpu, cuda or cuda:N, got '", name, "'");
  if (name == "cpu") return Device::cpu();
  const int gpus = cuda_device_count();
  if (name == "auto" && gpus == 0) return Device::cpu();
  BYOL_CHECK(cuda_compiled(), what, ": \"", name,
             "\" needs the CUDA backend, and this build has none (configure with nvcc available and "
             "-DBYOL_CUDA=ON), or use \"cpu\"");
  BYOL_CHECK(
      gpus > 0, what, ": \"", name,
      "\" but no CUDA device is visible on this machine (check nvidia-smi and CUDA_VISIBLE_DEVICES), or "
      "use \"cpu\"");
  const int index = cuda_index(name);
  if (index < 0) return Device::cuda(local_rank % gpus);
  BYOL_CHECK(world_size == 1, what, ": \"", name, "\" names one GPU, but ", world_size,
             " ranks run; use \"cuda\" (each rank takes the GPU of its local rank)");
  BYOL_CHECK(index < gpus, what, ": \"", name, "\" but ", gpus, " CUDA device(s) are visible");
  return Device::cuda(index);
}

}  // namespace byol::apps
