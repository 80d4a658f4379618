// The autograd tape: accumulation, no-grad, freeing, flat gradient buffers, saved tensors.
#include <catch2/catch.hpp>

#include "engine/ops.h"

using namespace byol;
using Catch::Matchers::Contains;

TEST_CASE("a tensor used twice accumulates both gradients", "[autograd]") {
  Tensor x = Tensor::from_vector<double>({1.0, -2.0, 3.0}, {3}).set_requires_grad(true);
  ops::sum(ops::add(x, x)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2.0, 2.0, 2.0});
  // A diamond: y = relu(x); z = sum(2y + 3y) -> dz/dx = 5 where x > 0.
  Tensor x2 = Tensor::from_vector<double>({1.0, -2.0, 3.0}, {3}).set_requires_grad(true);
  Tensor y = ops::relu(x2);
  ops::sum(ops::add(ops::scale(y, 2.0), ops::scale(y, 3.0))).backward();
  CHECK(x2.grad().to_vector<double>() == std::vector<double>{5.0, 0.0, 5.0});
}

TEST_CASE("leaf gradients accumulate across backward passes", "[autograd]") {
  Tensor x = Tensor::from_vector<double>({1.0, 2.0}, {2}).set_requires_grad(true);
  ops::sum(ops::scale(x, 3.0)).backward();
  ops::sum(ops::scale(x, 4.0)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{7.0, 7.0});
}

TEST_CASE("parameter gradients land in a caller-provided flat gradient buffer", "[autograd]") {
  Tensor params = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6, 0.5, -0.5}, {8});
  Tensor grads = Tensor::zeros({8}, DType::f64);
  Tensor w = params.window(0, {2, 3}).set_requires_grad(true);
  Tensor b = params.window(6, {2}).set_requires_grad(true);
  w.set_grad(grads.window(0, {2, 3}));
  b.set_grad(grads.window(6, {2}));
  Tensor x = Tensor::from_vector<double>({1, 1, 1}, {1, 3});
  ops::sum(ops::linear(x, w, b)).backward();
  CHECK(grads.to_vector<double>() == std::vector<double>{1, 1, 1, 1, 1, 1, 1, 1});
  ops::sum(ops::linear(x, w, b)).backward();
  CHECK(grads.to_vector<double>() == std::vector<double>{2, 2, 2, 2, 2, 2, 2, 2});
  CHECK(w.grad().storage() == grads.storage());
}

TEST_CASE("no-grad scopes record nothing", "[autograd]") {
  std::mt19937_64 gen(1);
  Tensor x = Tensor::randn({2, 3}, gen).set_requires_grad(true);
  Tensor y;
  {
    NoGradGuard guard;
    CHECK_FALSE(grad_enabled());
    y = ops::relu(ops::scale(x, 2.0));
  }
  CHECK(grad_enabled());
  CHECK_FALSE(y.requires_grad());
  CHECK(y.grad_fn() == nullptr);
  CHECK_THROWS_WITH(ops::sum(y).backward(), Contains("does not require a gradient"));
  // Inputs that need no gradient record nothing either.
  Tensor c = Tensor::zeros({2, 3});
  CHECK(ops::relu(c).grad_fn() == nullptr);
}

TEST_CASE("backward frees the tape; a second pass through it is an error", "[autograd]") {
  Tensor x = Tensor::from_vector<double>({1.0, 2.0}, {2}).set_requires_grad(true);
  Tensor loss = ops::sum(ops::relu(x));
  loss.backward();
  CHECK(loss.grad_fn()->backward == nullptr);
  CHECK(loss.grad_fn()->inputs.empty());
  CHECK_THROWS_WITH(loss.backward(), Contains("already freed"));
}

TEST_CASE("ops save only the tensors their needed gradients use", "[autograd]") {
  std::mt19937_64 gen(5);
  Tensor x = Tensor::randn({2, 4, 4, 3}, gen);                          // input: no gradient needed
  Tensor w = Tensor::randn({2, 3, 3, 3}, gen).set_requires_grad(true);  // weights: gradient needed
  const long x_refs = x.impl_ptr().use_count(), w_refs = w.impl_ptr().use_count();
  Tensor y = ops::conv2d(x, w, {1, 1});
  // dw needs x (saved); dx is not needed, so w is not saved (only the tape's edge to the leaf holds it).
  CHECK(x.impl_ptr().use_count() == x_refs + 1);
  CHECK(w.impl_ptr().use_count() == w_refs + 1);
  ops::sum(y).backward();
  CHECK(x.impl_ptr().use_count() == x_refs);  // the freed tape released both
  CHECK(w.impl_ptr().use_count() == w_refs);
}

TEST_CASE("backward of a non-scalar needs an explicit seed", "[autograd]") {
  Tensor x = Tensor::from_vector<double>({1.0, 2.0}, {2}).set_requires_grad(true);
  Tensor y = ops::scale(x, 2.0);
  CHECK_THROWS_WITH(y.backward(), Contains("pass the gradient"));
  y.backward(Tensor::from_vector<double>({1.0, 10.0}, {2}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2.0, 20.0});
}

TEST_CASE("the leaf-ready hook fires once per leaf, after its last gradient contribution", "[autograd]") {
  Tensor w = Tensor::from_vector<double>({1.0, 2.0}, {1, 2}).set_requires_grad(true);
  Tensor b = Tensor::from_vector<double>({0.5}, {1}).set_requires_grad(true);
  Tensor x1 = Tensor::from_vector<double>({1.0, 1.0}, {1, 2}),
         x2 = Tensor::from_vector<double>({3.0, -1.0}, {1, 2});
  // w is used twice (two "views"), b once.
  Tensor loss = ops::sum(ops::add(ops::linear(x1, w, b), ops::linear(x2, w)));
  std::vector<std::pair<const TensorImpl*, std::vector<double>>> fired;
  auto previous = set_leaf_ready_hook([&](const TensorImpl& leaf) {
    fired.emplace_back(&leaf, Tensor(std::shared_ptr<TensorImpl>(std::shared_ptr<TensorImpl>(),
                                                                 const_cast<TensorImpl*>(&leaf)))
                                  .grad()
                                  .to_vector<double>());
  });
  loss.backward();
  set_leaf_ready_hook(previous);
  REQUIRE(fired.size() == 2);
  for (const auto& [leaf, grad] : fired) {
    if (leaf == w.impl()) CHECK(grad == std::vector<double>{4.0, 0.0});  // complete: x1 + x2
    if (leaf == b.impl()) CHECK(grad == std::vector<double>{1.0});
  }
  CHECK(((fired[0].first == w.impl()) + (fired[1].first == w.impl())) == 1);
}
