// Two ranks on one GPU for the [cuda][nccl] tests (test_cuda.cpp, test_cuda_graph.cpp): DataParallel's GPU
// path (bucketed all-reduces, their events, synced batch norm, the ranks' agreements) on a machine with one
// GPU. CUDA builds only.
#pragma once

#include <catch2/catch.hpp>
#include <cstdlib>
#include <memory>
#include <string>

#include "engine/comm/communicator.h"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/tensor.h"

namespace byol::cuda_test {

// Two ranks on one GPU, as far as DataParallel can tell: rank 0 of 2 over a one-rank NCCL communicator,
// the other rank holding the same values, so every sum is twice this rank's (doubled with cuBLAS's scal on
// the compute stream, after NCCL's own all-reduce). With the same batch on both "ranks", a data-parallel
// step equals the one-rank step: the bucketed gradient all-reduces, their events and the synced batch
// norm run on the GPU as in a real multi-GPU job, which no machine here has.
class TwinRanks final : public comm::Communicator {
 public:
  explicit TwinRanks(comm::Communicator& nccl) : nccl_(nccl) {}
  const char* backend() const override { return "nccl (twin ranks)"; }
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  void all_reduce_sum(const Tensor& t) override {
    nccl_.all_reduce_sum(t);
    twice(t);
  }
  std::unique_ptr<comm::Request> all_reduce_sum_async(const Tensor& t) override {
    if (refuse_captured_async_at >= 0 && capturing() && captured_async_++ == refuse_captured_async_at)
      throw Error("TwinRanks: an all-reduce refused inside the capture, for the test");
    return std::make_unique<Twice>(nccl_.all_reduce_sum_async(t), t);
  }
  // Test hook: the asynchronous all-reduce of this index (0, 1, ...) among those queued while the compute
  // stream is capturing a CUDA graph throws: a step that fails mid-backward inside a capture, with the
  // earlier buckets' collectives captured and pending. -1: never.
  int refuse_captured_async_at = -1;
  void broadcast(const Tensor& t, int root) override { nccl_.broadcast(t, root); }
  void barrier() override { nccl_.barrier(); }
  void wait_host() override { nccl_.wait_host(); }
  [[noreturn]] void abort(const std::string& message) override {
    nccl_.abort(message);
    std::abort();  // (Communicator::abort never returns; the compiler cannot see through the reference)
  }

 private:
  struct Twice final : comm::Request {
    Twice(std::unique_ptr<comm::Request> r, Tensor t) : inner(std::move(r)), t(std::move(t)) {}
    void wait() override {
      if (!inner) return;
      inner->wait();
      inner.reset();
      twice(t);
    }
    void discard() override {  // a collective captured in an abandoned CUDA graph capture: nothing to double
      if (inner) inner->discard();
      inner.reset();
    }
    std::unique_ptr<comm::Request> inner;
    Tensor t;
  };
  static void twice(const Tensor& t) {
    REQUIRE(t.is_contiguous());
    const int n = static_cast<int>(t.numel());
    if (t.dtype() == DType::f64) {
      const double two = 2.0;
      BYOL_CUBLAS_CHECK(cublasDscal(cuda::cublas_handle(), n, &two, t.data<double>(), 1));
    } else {
      const float two = 2.0f;
      BYOL_CUBLAS_CHECK(cublasSscal(cuda::cublas_handle(), n, &two, t.data<float>(), 1));
    }
  }
  static bool capturing() {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    BYOL_CUDA_CHECK(cudaStreamIsCapturing(cuda::compute_stream(), &status));
    return status == cudaStreamCaptureStatusActive;
  }
  comm::Communicator& nccl_;
  int captured_async_ = 0;
};

}  // namespace byol::cuda_test
