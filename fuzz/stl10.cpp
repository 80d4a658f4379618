// Fuzz target: data::load_stl10 (data/dataset.h). The input is test_X.bin, optionally followed by kSplit
// and test_y.bin (fuzz_util.h); without labels it is read as unlabeled_X.bin. Images are 96x96x3, so a
// seed of one image is 27648 bytes: run with -max_len of at least that.
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace byol;
  const std::vector<std::string> parts = fuzz::split_input(data, size);
  std::string folder;
  data::Split split;
  if (parts.size() > 1) {
    fuzz::write_scratch("stl10/test_X.bin", parts[0]);
    folder = fuzz::write_scratch("stl10/test_y.bin", parts[1]);
    split = data::Split::test;
  } else {
    folder = fuzz::write_scratch("stl10/unlabeled_X.bin", parts[0]);
    split = data::Split::unlabeled;
  }
  folder = folder.substr(0, folder.rfind('/'));
  fuzz::expect_byol_error([&] {
    const auto d = data::load_stl10(folder, split);
    BYOL_FUZZ_CHECK(d->size() >= 1 && size_t(d->size()) * 27648 == parts[0].size(), d->describe());
    BYOL_FUZZ_CHECK(d->num_classes() == (split == data::Split::test ? 10 : 0), d->describe());
    fuzz::check_dataset(*d, 4, /*scratch_views=*/true);
  });
  return 0;
}
