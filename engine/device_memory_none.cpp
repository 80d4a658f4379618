// CPU-only build: there is no CUDA backend; every device-memory request says so.
#include "engine/common.h"
#include "engine/device_memory.h"

namespace byol {
namespace {
[[noreturn]] void no_cuda() {
  throw Error(
      "a CUDA tensor was requested, but this build of byol.cpp has no CUDA backend "
      "(reconfigure with nvcc available and -DBYOL_CUDA=ON)");
}
}  // namespace

bool cuda_compiled() {
  return false;
}
void cuda_set_tf32(bool) {}
bool cuda_tf32() {
  return false;
}
int cuda_device_count() {
  return 0;
}
void cuda_set_device(int) {
  no_cuda();
}
void* cuda_alloc(size_t, int) {
  no_cuda();
}
void cuda_free(void*, int) noexcept {}
void cuda_copy_to_device(void*, const void*, size_t, int) {
  no_cuda();
}
void cuda_copy_to_host(void*, const void*, size_t, int) {
  no_cuda();
}
void cuda_copy_device_to_device(void*, const void*, size_t, int) {
  no_cuda();
}
void cuda_memset_zero(void*, size_t, int) {
  no_cuda();
}
void cuda_fill_floating(void*, bool, double, int64_t, int) {
  no_cuda();
}

}  // namespace byol
