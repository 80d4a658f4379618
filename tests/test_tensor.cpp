// Tensor: factories, metadata, views into shared storage, copies, casts (bf16 rounding).
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "engine/tensor.h"

using namespace byol;
using Catch::Matchers::Contains;

TEST_CASE("factories set shape, contiguous strides, dtype and aligned storage", "[tensor]") {
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::u8, DType::i32, DType::i64}) {
    Tensor x = Tensor::zeros({2, 3, 5}, t);
    CHECK(x.shape() == Shape{2, 3, 5});
    CHECK(x.strides() == Shape{15, 5, 1});
    CHECK(x.numel() == 30);
    CHECK(x.dtype() == t);
    CHECK(x.device() == Device::cpu());
    CHECK(x.is_contiguous());
    CHECK(reinterpret_cast<uintptr_t>(x.raw_data()) % Storage::kCpuAlignment == 0);
  }
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(dtype_size(DType::i64) == 8);
  Tensor s = Tensor::full({}, 2.5, DType::f64);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 2.5);
}

TEST_CASE("windows into a flat buffer share its storage", "[tensor]") {
  // The flat-parameter idea: one buffer, named views into it.
  Tensor flat = Tensor::zeros({20});
  Tensor w = flat.window(0, {3, 4}).set_name("fc.weight");
  Tensor b = flat.window(12, {3}).set_name("fc.bias");
  w.fill_(1.0);
  b.fill_(2.0);
  std::vector<float> v = flat.to_vector<float>();
  for (int i = 0; i < 12; ++i) CHECK(v[i] == 1.0f);
  for (int i = 12; i < 15; ++i) CHECK(v[i] == 2.0f);
  for (int i = 15; i < 20; ++i) CHECK(v[i] == 0.0f);
  CHECK(w.storage() == flat.storage());
  CHECK(b.offset() == 12);
  CHECK_THAT(b.describe(), Contains("'fc.bias'") && Contains("f32[3]"));
  CHECK_THROWS_WITH(flat.window(18, {3}), Contains("does not fit"));
}

TEST_CASE("slice_rows is a contiguous view; clone is a deep copy", "[tensor]") {
  Tensor x = Tensor::from_vector<int32_t>({0, 1, 2, 3, 4, 5, 6, 7}, {4, 2});
  Tensor rows = x.slice_rows(1, 3);
  CHECK(rows.shape() == Shape{2, 2});
  CHECK(rows.is_contiguous());
  CHECK(rows.to_vector<int32_t>() == std::vector<int32_t>{2, 3, 4, 5});
  Tensor copy = rows.clone();
  rows.fill_(-1);
  CHECK(x.to_vector<int32_t>() == std::vector<int32_t>{0, 1, -1, -1, -1, -1, 6, 7});
  CHECK(copy.to_vector<int32_t>() == std::vector<int32_t>{2, 3, 4, 5});
  CHECK(x.view({2, 4}).storage() == x.storage());
  CHECK_THROWS_WITH(x.view({3, 3}), Contains("cannot view"));
}

TEST_CASE("bf16 casts round to nearest even", "[tensor][bf16]") {
  // bf16 keeps 7 fraction bits: around 1.0 its spacing is 2^-7.
  const float one = 1.0f, ulp = std::ldexp(1.0f, -7);
  auto rt = [](float f) { return bf16_to_float(float_to_bf16(f)); };
  CHECK(rt(one) == one);
  CHECK(rt(one + ulp) == one + ulp);
  CHECK(rt(one + ulp / 2) == one);                   // tie -> even (1.0 has an even last bit)
  CHECK(rt(one + 3 * ulp / 2) == one + 2 * ulp);     // tie -> even (up)
  CHECK(rt(one + ulp / 2 + ulp / 64) == one + ulp);  // above the tie -> up
  CHECK(rt(-3.0f) == -3.0f);
  CHECK(std::isinf(rt(std::numeric_limits<float>::infinity())));
  CHECK(std::isnan(rt(std::numeric_limits<float>::quiet_NaN())));
  Tensor x = Tensor::from_vector<float>({1.0f, one + ulp / 2, 0.1f}, {3});
  Tensor h = x.to(DType::bf16);
  CHECK(h.dtype() == DType::bf16);
  std::vector<float> back = h.to(DType::f32).to_vector<float>();
  CHECK(back[0] == 1.0f);
  CHECK(back[1] == 1.0f);
  CHECK(std::abs(back[2] - 0.1f) <= 0.1f * std::ldexp(1.0f, -8));
}

TEST_CASE("casts between numeric dtypes", "[tensor]") {
  Tensor x = Tensor::from_vector<double>({-2.0, 0.5, 3.75}, {3});
  CHECK(x.to(DType::f32).to_vector<float>() == std::vector<float>{-2.0f, 0.5f, 3.75f});
  CHECK(x.to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{-2, 0, 3});
  CHECK(Tensor::from_vector<uint8_t>({0, 255}, {2}).to(DType::f64).to_vector<double>() ==
        std::vector<double>{0, 255});
}

TEST_CASE("typed access checks the dtype; undefined tensors say so", "[tensor]") {
  Tensor x = Tensor::zeros({2}, DType::f64).set_name("stats");
  CHECK_THROWS_WITH(x.data<float>(), Contains("'stats'") && Contains("accessed as f32") && Contains("f64"));
  Tensor none;
  CHECK_FALSE(none.defined());
  CHECK_THROWS_WITH(none.shape(), Contains("undefined"));
  CHECK_THROWS_WITH(Tensor::zeros({2, -1}), Contains("negative"));
}

TEST_CASE("randn is reproducible from the seed", "[tensor]") {
  std::mt19937_64 a(3), b(3);
  CHECK(Tensor::randn({16}, a).to_vector<float>() == Tensor::randn({16}, b).to_vector<float>());
}
