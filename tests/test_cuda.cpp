// GPU tests (tag [cuda]); run as one ctest group that is skipped, with the reason, without a GPU.
// The CUDA backend's kernels are tested against the CPU ones as they arrive; this file covers device
// storage, the front end's device checks, a one-rank NCCL job, and DataParallel over one GPU presented as two
// identical ranks (what gpu_check.sh runs of NCCL).
#include <catch2/catch.hpp>
#include <cstdlib>
#include <random>

#include "byol/distributed.h"
#include "engine/comm/nccl_communicator.h"
#include "engine/ops.h"
#include "tests/tiny_byol.h"
#if BYOL_WITH_CUDA
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "tests/cuda_test_helpers.h"
#include "tests/twin_ranks.h"
#endif

using namespace byol;
using Catch::Matchers::Contains;

TEST_CASE("tensors round-trip through device memory", "[cuda]") {
  std::mt19937_64 gen(11);
  Tensor x = Tensor::randn({3, 5, 7}, gen);
  Tensor d = x.to(Device::cuda());
  CHECK(d.device() == Device::cuda());
  CHECK(d.to(Device::cpu()).to_vector<float>() == x.to_vector<float>());
  Tensor d2 = d.clone();  // device-to-device
  d.zero_();
  CHECK(d.to(Device::cpu()).to_vector<float>() == std::vector<float>(105, 0.0f));
  CHECK(d2.to_vector<float>() == x.to_vector<float>());
  d2.slice_rows(1, 2).fill_(4.0);
  std::vector<float> v = d2.to_vector<float>();
  for (int i = 35; i < 70; ++i) CHECK(v[i] == 4.0f);
  CHECK(v[0] == x.to_vector<float>()[0]);
}

TEST_CASE("ops reject inputs on different devices", "[cuda]") {
  Tensor x = Tensor::zeros({1, 4, 4, 3});
  Tensor w = Tensor::zeros({2, 3, 3, 3}, DType::f32, Device::cuda());
  CHECK_THROWS_WITH(ops::conv2d(x, w), Contains("conv2d") && Contains("'weight'") && Contains("device cpu") &&
                                           Contains("cuda:0"));
  CHECK_THROWS_WITH(ops::add(Tensor::zeros({3}), Tensor::zeros({3}, DType::f32, Device::cuda())),
                    Contains("add") && Contains("'b'") && Contains("cuda:0"));
}

TEST_CASE("a one-rank NCCL job: all-reduce and broadcast keep the values, async requests order the stream",
          "[cuda][nccl]") {
  if (!comm::nccl_compiled()) {
    WARN("skipped: this build has no NCCL");
    return;
  }
  std::unique_ptr<comm::Communicator> c = comm::make_nccl_communicator();
  REQUIRE(c->world_size() == 1);
  CHECK(std::string(c->backend()) == "nccl");
  std::mt19937_64 gen(21);
  const Tensor x = Tensor::randn({1000}, gen);
  Tensor d = x.to(Device::cuda());
  c->all_reduce_sum(d);
  CHECK(d.to_vector<float>() == x.to_vector<float>());  // the sum over one rank
  auto req = c->all_reduce_sum_async(d.slice_rows(0, 500));
  req->wait();
  c->broadcast(d, 0);
  c->barrier();
  CHECK(d.to_vector<float>() == x.to_vector<float>());
  CHECK_THROWS_WITH(c->all_reduce_sum(x), Contains("expected a contiguous CUDA tensor"));
}

#if BYOL_WITH_CUDA
TEST_CASE("DataParallel on the GPU: two identical ranks (one NCCL rank, doubled) take the one-rank step",
          "[cuda][nccl]") {
  if (!comm::nccl_compiled()) {
    WARN("skipped: this build has no NCCL");
    return;
  }
  cuda_test::Tf32Guard tf32(false);
  std::unique_ptr<comm::Communicator> nccl = comm::make_nccl_communicator();
  cuda_test::TwinRanks twins(*nccl);
  const Device gpu = Device::cuda();
  // plain: the one-rank step; again: a second one, the yardstick for cuDNN's run-to-run differences
  Learner plain(test_util::tiny_network(), test_util::tiny_train(1)),
      again(test_util::tiny_network(), test_util::tiny_train(1)),
      twin(test_util::tiny_network(), test_util::tiny_train(1));
  plain.to(gpu);
  again.to(gpu);
  twin.to(gpu);
  DataParallel dp(twin, twins, {size_t(1) << 10, true});  // small buckets: several all-reduces per step
  CHECK(dp.bucket_count() > 3);
  dp.broadcast_from_root();
  std::mt19937_64 gen(5);
  for (int step = 0; step < 3; ++step) {
    const Tensor v1 = Tensor::randn({4, 8, 8, 3}, gen).to(gpu), v2 = Tensor::randn({4, 8, 8, 3}, gen).to(gpu);
    const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 1}, {4}).to(gpu);
    const StepValues p = plain.step(v1, v2, labels).read(), a = again.step(v1, v2, labels).read();
    const StepValues t = dp.mean_over_ranks(twin.step(v1, v2, labels));
    // The synced batch norm adds its partial sums in another order than the one-rank batch norm, so the two
    // differ by rounding (test_byol.cpp's CPU twin test: within the MPI tests' bounds below), plus cuDNN's
    // run-to-run differences (10x those of two one-rank learners).
    const auto check = [&](const char* what, const Tensor& got, const Tensor& want, const Tensor& other,
                           double bound) {
      const double gap = cuda_test::rel_error(got, want), noise = cuda_test::rel_error(other, want);
      INFO("step " << step << ", " << what << ": twin ranks vs one rank " << gap << " (one rank vs one rank "
                   << noise << ")");
      CHECK(gap <= std::max(10 * noise, bound));
    };
    INFO("loss " << t.loss << " vs " << p.loss << " (" << a.loss << ")");
    CHECK(std::abs(t.loss - p.loss) <= std::max(10 * std::abs(a.loss - p.loss), 1e-5 * std::abs(p.loss)));
    check("gradients", twin.nets.online.grads(), plain.nets.online.grads(), again.nets.online.grads(), 1e-4);
    check("online", twin.nets.online.params(), plain.nets.online.params(), again.nets.online.params(), 1e-5);
    check("target", twin.nets.target.params(), plain.nets.target.params(), again.nets.target.params(), 1e-5);
    check("BN statistics", twin.nets.online.stats(), plain.nets.online.stats(), again.nets.online.stats(),
          1e-5);
    check("probe", twin.probe_params.params(), plain.probe_params.params(), again.probe_params.params(),
          1e-5);
  }
}
#endif
