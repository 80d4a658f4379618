// Bad input: every op names itself, the argument and what it expected.
#include <catch2/catch.hpp>

#include "engine/device_memory.h"
#include "engine/ops.h"

using namespace byol;
using Catch::Matchers::Contains;

TEST_CASE("mismatched shapes are reported with both shapes", "[errors]") {
  Tensor x = Tensor::zeros({2, 8, 8, 3});
  CHECK_THROWS_WITH(ops::conv2d(x, Tensor::zeros({4, 3, 3, 5})), Contains("conv2d") && Contains("'weight'") &&
                                                                     Contains("C = 3") &&
                                                                     Contains("f32[4, 3, 3, 5]"));
  CHECK_THROWS_WITH(ops::add(Tensor::zeros({2, 3}), Tensor::zeros({3, 2})),
                    Contains("add") && Contains("'b'") && Contains("[2, 3]") && Contains("f32[3, 2]"));
  CHECK_THROWS_WITH(ops::linear(Tensor::zeros({4, 5}), Tensor::zeros({3, 6})),
                    Contains("linear") && Contains("'weight'") && Contains("in = 5"));
  CHECK_THROWS_WITH(ops::matmul(Tensor::zeros({4, 5}), Tensor::zeros({4, 5})),
                    Contains("matmul") && Contains("'b'") && Contains("K = 5"));
  CHECK_THROWS_WITH(ops::batch_norm(x, Tensor::zeros({4}), Tensor::zeros({3}), Tensor(), Tensor()),
                    Contains("batch_norm") && Contains("'gamma'") && Contains("[3]"));
  CHECK_THROWS_WITH(ops::byol_loss(Tensor::zeros({4, 8}), Tensor::zeros({4, 8}), Tensor::zeros({4, 7}),
                                   Tensor::zeros({4, 8})),
                    Contains("byol_loss") && Contains("'p2'"));
  CHECK_THROWS_WITH(ops::concat({Tensor::zeros({2, 3}), Tensor::zeros({2, 4})}),
                    Contains("concat") && Contains("'parts[1]'"));
  CHECK_THROWS_WITH(ops::conv2d(Tensor::zeros({1, 2, 2, 3}), Tensor::zeros({1, 5, 5, 3})),
                    Contains("does not fit"));
}

TEST_CASE("wrong dtypes are reported", "[errors]") {
  Tensor x = Tensor::zeros({2, 4, 4, 3});
  CHECK_THROWS_WITH(ops::conv2d(x, Tensor::zeros({2, 3, 3, 3}, DType::f64)),
                    Contains("conv2d") && Contains("'weight'") && Contains("dtype f32") && Contains("f64"));
  CHECK_THROWS_WITH(ops::relu(Tensor::zeros({3}, DType::i32)),
                    Contains("relu") && Contains("'input'") && Contains("f32, f64 or bf16") && Contains("i32"));
  CHECK_THROWS_WITH(ops::softmax_cross_entropy(Tensor::zeros({2, 3}), Tensor::zeros({2})),
                    Contains("'labels'") && Contains("i32 or i64"));
  // bf16 is an activation dtype (relu, add, conv2d, batch norm, pooling take it); other ops refuse it.
  CHECK_THROWS_WITH(ops::scale(Tensor::zeros({3}, DType::bf16), 2.0), Contains("f32 or f64") && Contains("bf16"));
}

TEST_CASE("wrong ranks are reported with the expected layout", "[errors]") {
  CHECK_THROWS_WITH(ops::conv2d(Tensor::zeros({4, 4, 3}), Tensor::zeros({2, 3, 3, 3})),
                    Contains("conv2d") && Contains("'input'") && Contains("4 dimensions [N, H, W, C]"));
  CHECK_THROWS_WITH(ops::max_pool2d(Tensor::zeros({4, 3})),
                    Contains("max_pool2d") && Contains("[N, H, W, C]"));
  CHECK_THROWS_WITH(ops::linear(Tensor::zeros({4}), Tensor::zeros({3, 4})), Contains("[N, in]"));
  CHECK_THROWS_WITH(ops::l2_normalize(Tensor::zeros({2, 3, 4})),
                    Contains("l2_normalize") && Contains("[N, D]"));
  CHECK_THROWS_WITH(
      ops::batch_norm(Tensor::zeros({2, 3, 4}), Tensor::zeros({4}), Tensor::zeros({4}), Tensor(), Tensor()),
      Contains("batch_norm") && Contains("[N, H, W, C]"));
}

TEST_CASE("bad values and options are reported", "[errors]") {
  CHECK_THROWS_WITH(
      ops::softmax_cross_entropy(Tensor::zeros({2, 3}), Tensor::from_vector<int64_t>({0, 3}, {2})),
      Contains("values in [0, 3)") && Contains("got 3 at index 1"));
  CHECK_THROWS_WITH(ops::conv2d(Tensor::zeros({1, 4, 4, 1}), Tensor::zeros({1, 3, 3, 1}), {0, 1}),
                    Contains("stride >= 1"));
  ops::BatchNormOptions eval;
  eval.training = false;
  CHECK_THROWS_WITH(ops::batch_norm(Tensor::zeros({2, 3}), Tensor::zeros({3}), Tensor::zeros({3}), Tensor(),
                                    Tensor(), eval),
                    Contains("evaluation mode needs running_mean"));
  CHECK_THROWS_WITH(ops::slice(Tensor::zeros({3, 2}), 2, 5), Contains("slice") && Contains("out of range"));
  CHECK_THROWS_WITH(ops::linear(Tensor(), Tensor::zeros({3, 4})),
                    Contains("'input'") && Contains("undefined"));
}

TEST_CASE("devices: a CUDA tensor in a build or machine without CUDA is a clear error", "[errors]") {
  if (cuda_device_count() > 0) {
    SUCCEED("a GPU is visible; the [cuda] tests check device mismatches");
    return;
  }
  CHECK_THROWS_WITH(Tensor::zeros({2, 2}, DType::f32, Device::cuda()), Contains("CUDA"));
}
