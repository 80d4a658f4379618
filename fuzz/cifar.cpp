// Fuzz target: data::load_cifar10 and load_cifar100 (data/dataset.h), test split, on a folder holding the
// input as test_batch.bin (CIFAR-10) and test.bin (CIFAR-100).
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace byol;
  fuzz::write_scratch("cifar/test_batch.bin", data, size);
  const std::string dir = fuzz::write_scratch("cifar/test.bin", data, size);
  const std::string folder = dir.substr(0, dir.rfind('/'));
  fuzz::expect_byol_error([&] {
    const auto d = data::load_cifar10(folder, data::Split::test);
    BYOL_FUZZ_CHECK(d->num_classes() == 10 && d->size() >= 1 && size_t(d->size()) * 3073 == size,
                    d->describe());
    fuzz::check_dataset(*d);
  });
  fuzz::expect_byol_error([&] {
    const auto d = data::load_cifar100(folder, data::Split::test);
    BYOL_FUZZ_CHECK(d->num_classes() == 100 && d->size() >= 1 && size_t(d->size()) * 3074 == size,
                    d->describe());
    fuzz::check_dataset(*d);
  });
  return 0;
}
