// Fuzz target: data::ImageFolder (data/dataset.h) on an archive: the input as in.tar, or as in.tar.gz when
// it starts with the gzip magic number (the reader gunzips either name by content), read without a
// prefix and under "train". Accepted archives: the dataset checks, with a few images decoded (a corrupt
// member is a byol::Error from image(), which is fine). Pixel limit 2^22, as in the image target.
#include <algorithm>

#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace byol;
  static const bool limited = (data::set_max_image_pixels(int64_t(1) << 22), true);
  (void)limited;
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  fuzz::remove_scratch(gz ? "in.tar" : "in.tar.gz");
  const std::string path = fuzz::write_scratch(gz ? "in.tar.gz" : "in.tar", data, size);
  for (const char* prefix : {"", "train"}) {
    fuzz::expect_byol_error([&] {
      const data::ImageFolder d(path, prefix);
      BYOL_FUZZ_CHECK(d.size() >= 1, d.describe());
      fuzz::check_dataset(d, 4, /*scratch_views=*/true);
      for (int64_t i = 0; i < d.size(); ++i) {  // "<archive>:<member>", the member inside the root
        const std::string name = d.item_name(i), member = name.substr(std::min(name.size(), path.size() + 1));
        BYOL_FUZZ_CHECK(name.compare(0, path.size() + 1, path + ":") == 0 && !member.empty() &&
                            member.front() != '/' && ("/" + member + "/").find("/../") == std::string::npos,
                        "member '", name, "' outside the archive's root");
      }
    });
  }
  return 0;
}
