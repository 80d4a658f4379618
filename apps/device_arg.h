// The apps' device names: "cpu", "cuda" (with several ranks, each rank's GPU is its local rank modulo the
// visible GPUs), "cuda:N" (GPU N; one rank only) and "auto" (a GPU when the build has CUDA and one is
// visible, else the CPU).
#pragma once

#include <string>

#include "engine/tensor.h"

namespace byol::apps {

// Checks the spelling only (no GPU needed): for config validation and command-line checks.
bool valid_device_name(const std::string& name);
// `what` names the option or key in errors ("config key 'run.device'", "--device").
Device resolve_device(const std::string& name, int local_rank, int world_size, const std::string& what);

}  // namespace byol::apps
