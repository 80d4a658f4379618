#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <cstring>
#include <cub/device/device_segmented_reduce.cuh>

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/common.cuh"
#include "kernels/lars.cuh"
#include "kernels/math/optimizer_math.h"

namespace byol::kernels {
namespace {

struct NormSums {
  double ww, gg, wg;
};

struct AddNormSums {
  __host__ __device__ NormSums operator()(const NormSums& a, const NormSums& b) const {
    return {a.ww + b.ww, a.gg + b.gg, a.wg + b.wg};
  }
};

struct ElementNormTerms {
  const float* w;
  const float* g;
  __host__ __device__ NormSums operator()(int64_t i) const {
    const double wi = w[i], gi = g[i];
    return {wi * wi, gi * gi, wi * gi};
  }
};

__global__ void lars_update_kernel(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                                   int64_t n, const int64_t* __restrict__ begins,
                                   const int64_t* __restrict__ ends, const uint8_t* __restrict__ flags,
                                   int segments, const NormSums* __restrict__ sums, double lr,
                                   double weight_decay, double momentum, double eta,
                                   double* __restrict__ trust_out) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int s = segment_of(begins, ends, segments, i);
    if (s < 0) continue;  // alignment gap between two tensors
    const uint8_t f = flags[s];
    const double wd = (f & kLarsNoWeightDecay) ? 0.0 : weight_decay;
    double trust = 1.0;
    if (!(f & kLarsNoAdapt)) {
      const NormSums t = sums[s];
      const double uu = t.gg + 2.0 * wd * t.wg + wd * wd * t.ww;
      trust = math::lars_trust_ratio(sqrt(t.ww), sqrt(uu > 0 ? uu : 0.0), eta);
    }
    if (i == begins[s]) trust_out[s] = trust;
    math::lars_update(w[i], m[i], g[i], static_cast<float>(wd), static_cast<float>(trust),
                      static_cast<float>(lr), static_cast<float>(momentum));
  }
}

}  // namespace

std::vector<uint8_t> lars_pack_segments(const LarsSegments& seg) {
  BYOL_CHECK(seg.ends.size() == seg.begins.size() && seg.flags.size() == seg.begins.size(),
             "lars_pack_segments: the segment table's begins, ends and flags differ in length");
  const size_t segments = seg.begins.size(), offsets_bytes = segments * sizeof(int64_t);
  std::vector<uint8_t> bytes(2 * offsets_bytes + segments);
  std::memcpy(bytes.data(), seg.begins.data(), offsets_bytes);
  std::memcpy(bytes.data() + offsets_bytes, seg.ends.data(), offsets_bytes);
  std::memcpy(bytes.data() + 2 * offsets_bytes, seg.flags.data(), segments);
  return bytes;
}

void lars_step(float* w, const float* g, float* m, int64_t n, const void* device_table, int segments,
               const LarsHyper& h, double* trust_out, cudaStream_t stream) {
  if (segments == 0) return;
  // The packed layout keeps the int64 arrays 8-byte aligned (the table itself comes from the allocator).
  const int64_t* d_begins = static_cast<const int64_t*>(device_table);
  const int64_t* d_ends = d_begins + segments;
  const uint8_t* d_flags = reinterpret_cast<const uint8_t*>(d_ends + segments);

  cuda::DeviceBuffer sums(static_cast<size_t>(segments) * sizeof(NormSums));
  cuda::DeviceBuffer trust_scratch;  // where the trust ratios go when the caller does not keep them
  if (!trust_out) trust_scratch.reserve(static_cast<size_t>(segments) * sizeof(double));
  double* trust = trust_out ? trust_out : trust_scratch.as<double>();
  auto terms = thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0), ElementNormTerms{w, g});
  size_t temp_bytes = 0;
  BYOL_CUDA_CHECK(cub::DeviceSegmentedReduce::Reduce(nullptr, temp_bytes, terms, sums.as<NormSums>(),
                                                     segments, d_begins, d_ends, AddNormSums{},
                                                     NormSums{0, 0, 0}, stream));
  cuda::DeviceBuffer temp(temp_bytes);
  BYOL_CUDA_CHECK(cub::DeviceSegmentedReduce::Reduce(temp.get(), temp_bytes, terms, sums.as<NormSums>(),
                                                     segments, d_begins, d_ends, AddNormSums{},
                                                     NormSums{0, 0, 0}, stream));
  lars_update_kernel<<<grid_1d(n), kThreads, 0, stream>>>(w, g, m, n, d_begins, d_ends, d_flags, segments,
                                                          sums.as<NormSums>(), h.lr, h.weight_decay,
                                                          h.momentum, h.eta, trust);
  BYOL_CUDA_CHECK_LAUNCH();
}

void lars_step(float* w, const float* g, float* m, int64_t n, const LarsSegments& seg, const LarsHyper& h,
               double* trust_out, cudaStream_t stream) {
  const std::vector<uint8_t> bytes = lars_pack_segments(seg);
  const int segments = static_cast<int>(seg.begins.size());
  if (segments == 0) return;
  cuda::DeviceBuffer table(bytes.size());
  BYOL_CUDA_CHECK(cudaMemcpyAsync(table.get(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice, stream));
  lars_step(w, g, m, n, table.get(), segments, h, trust_out, stream);
}

}  // namespace byol::kernels
