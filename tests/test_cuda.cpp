// GPU tests (tag [cuda]); run as one ctest group that is skipped, with the reason, without a GPU.
// The CUDA backend's kernels are tested against the CPU ones as they arrive; this file covers device
// storage, the front end's device checks and a one-rank NCCL job (what gpu_check.sh runs of NCCL).
#include <catch2/catch.hpp>

#include "engine/comm/nccl_communicator.h"
#include "engine/ops.h"

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
