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
#if BYOL_WITH_NCCL
#include <nccl.h>
#endif

namespace byol::cuda_test {

// Two ranks on one GPU, as far as DataParallel can tell: rank 0 of 2 over a one-rank NCCL communicator,
// the other rank holding the same values, so every sum is twice this rank's. NCCL's own one-rank sum in
// place does nothing on the device, so the doubling is a second NCCL all-reduce, on a one-rank communicator
// of the test's own with the "pre-multiply by 2, then sum" operation (ncclRedOpCreatePreMulSum): a real
// NCCL kernel on the compute stream, which a CUDA graph capture records as it would a multi-GPU job's. With
// the same batch on both "ranks", a data-parallel step equals the one-rank step: the bucketed gradient
// all-reduces, their events and the synced batch norm run on the GPU as in a real multi-GPU job, which no
// machine here has.
class TwinRanks final : public comm::Communicator {
 public:
  explicit TwinRanks(comm::Communicator& nccl) : nccl_(nccl) {
#if BYOL_WITH_NCCL
    int device = 0;
    BYOL_CUDA_CHECK(cudaGetDevice(&device));
    BYOL_NCCL_CHECK(ncclCommInitAll(&doubling_, 1, &device));
    float two_f = 2.0f;
    double two_d = 2.0;
    BYOL_NCCL_CHECK(
        ncclRedOpCreatePreMulSum(&twice_f32_, &two_f, ncclFloat32, ncclScalarHostImmediate, doubling_));
    BYOL_NCCL_CHECK(
        ncclRedOpCreatePreMulSum(&twice_f64_, &two_d, ncclFloat64, ncclScalarHostImmediate, doubling_));
#endif
  }
  ~TwinRanks() override {
#if BYOL_WITH_NCCL
    cudaStreamSynchronize(cuda::compute_stream());
    ncclRedOpDestroy(twice_f32_, doubling_);
    ncclRedOpDestroy(twice_f64_, doubling_);
    ncclCommDestroy(doubling_);
#endif
  }
  TwinRanks(const TwinRanks&) = delete;
  TwinRanks& operator=(const TwinRanks&) = delete;
  const char* backend() const override {
    return "nccl (twin ranks)";
  }
  int rank() const override {
    return 0;
  }
  int world_size() const override {
    return 2;
  }
  void all_reduce_sum(const Tensor& t) override {
    nccl_.all_reduce_sum(t);
    twice(t);
    // The other rank's vote in an agreement (a one-element f64 sum of failures, DataParallel::on_every_rank).
    if (refuse_next_agreement && t.numel() == 1 && t.dtype() == DType::f64) {
      refuse_next_agreement = false;
      t.fill_(t.item() + 1.0);  // outside any capture; the CUDA ops run f32 only, fill_ has f64
    }
  }
  std::unique_ptr<comm::Request> all_reduce_sum_async(const Tensor& t) override {
    if (refuse_captured_async_at >= 0 && capturing() && captured_async_++ == refuse_captured_async_at)
      throw Error("TwinRanks: an all-reduce refused inside the capture, for the test");
    return std::make_unique<Twice>(this, nccl_.all_reduce_sum_async(t), t);
  }
  // Test hooks.
  //  - refuse_captured_async_at: the asynchronous all-reduce of this index (0, 1, ...) among those queued
  //    while the compute stream is capturing a CUDA graph throws: a step that fails mid-backward inside a
  //    capture, with the earlier buckets' collectives captured and pending. -1: never.
  //  - refuse_next_agreement: the next one-element f64 sum counts one failure more, as if the other rank's
  //    capture had failed (once).
  int refuse_captured_async_at = -1;
  bool refuse_next_agreement = false;
  void broadcast(const Tensor& t, int root) override {
    nccl_.broadcast(t, root);
  }
  void barrier() override {
    nccl_.barrier();
  }
  void wait_host() override {
    nccl_.wait_host();
  }
  [[noreturn]] void abort(const std::string& message) override {
    nccl_.abort(message);
    std::abort();  // (Communicator::abort never returns; the compiler cannot see through the reference)
  }

 private:
  struct Twice final : comm::Request {
    Twice(TwinRanks* owner, std::unique_ptr<comm::Request> r, Tensor t)
        : owner(owner), inner(std::move(r)), t(std::move(t)) {}
    void wait() override {
      if (!inner) return;
      inner->wait();
      inner.reset();
      owner->twice(t);
    }
    void discard() override {  // an abandoned step: nothing to double
      if (inner) inner->discard();
      inner.reset();
    }
    TwinRanks* owner;
    std::unique_ptr<comm::Request> inner;
    Tensor t;
  };
  void twice(const Tensor& t) {
    REQUIRE(t.is_contiguous());
    REQUIRE((t.dtype() == DType::f32 || t.dtype() == DType::f64));
#if BYOL_WITH_NCCL
    const bool f64 = t.dtype() == DType::f64;
    BYOL_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()),
                                  f64 ? ncclFloat64 : ncclFloat32, f64 ? twice_f64_ : twice_f32_, doubling_,
                                  cuda::compute_stream()));
#else
    const int n = static_cast<int>(t.numel());
    if (t.dtype() == DType::f64) {
      const double two = 2.0;
      BYOL_CUBLAS_CHECK(cublasDscal(cuda::cublas_handle(), n, &two, t.data<double>(), 1));
    } else {
      const float two = 2.0f;
      BYOL_CUBLAS_CHECK(cublasSscal(cuda::cublas_handle(), n, &two, t.data<float>(), 1));
    }
#endif
  }
  static bool capturing() {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    BYOL_CUDA_CHECK(cudaStreamIsCapturing(cuda::compute_stream(), &status));
    return status == cudaStreamCaptureStatusActive;
  }
  comm::Communicator& nccl_;
  int captured_async_ = 0;
#if BYOL_WITH_NCCL
  ncclComm_t doubling_ = nullptr;
  ncclRedOp_t twice_f32_{}, twice_f64_{};
#endif
};

}  // namespace byol::cuda_test
