// Fuzz target: data::PackedDataset (data/packed.h). The input is the index, optionally followed by kSplit
// and shard 0 (fuzz_util.h); without it shard 0 is 16 bytes. Accepted packs: besides the dataset checks,
// every image's view is compared with the record the index holds (parsed here, independently), and that
// record's bytes must lie inside the shard: the shard is memory-mapped, so AddressSanitizer would not see
// a read past its end within the last page.
#include <cstring>

#include "data/packed.h"
#include "fuzz/fuzz_util.h"

namespace {

struct Record {
  uint32_t shard, height, width, channels;
  uint64_t offset;
  int64_t label;
};

// The index's records, read from its end (count x 32 bytes), for an index the reader accepted.
std::vector<Record> records_of(const std::string& index, int64_t count) {
  std::vector<Record> out(static_cast<size_t>(count));
  const char* p = index.data() + index.size() - size_t(count) * 32;
  for (Record& r : out) {
    std::memcpy(&r.shard, p, 4), std::memcpy(&r.height, p + 4, 4), std::memcpy(&r.width, p + 8, 4);
    std::memcpy(&r.channels, p + 12, 4), std::memcpy(&r.offset, p + 16, 8), std::memcpy(&r.label, p + 24, 8);
    p += 32;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace byol;
  const std::vector<std::string> parts = fuzz::split_input(data, size);
  const std::string shard = parts.size() > 1 ? parts[1] : std::string(16, '\7');
  fuzz::write_scratch("pack-00000.bin", shard);
  const std::string index = fuzz::write_scratch("pack.index", parts[0]);
  const std::string prefix = index.substr(0, index.size() - 6);
  fuzz::expect_byol_error([&] {
    const data::PackedDataset d(prefix);
    fuzz::check_dataset(d);
    BYOL_FUZZ_CHECK(uint64_t(d.size()) * 32 <= parts[0].size(), d.size(), " records");
    const std::vector<Record> records = records_of(parts[0], d.size());
    std::vector<uint8_t> scratch;
    for (int64_t i = 0; i < d.size() && i < 64; ++i) {
      const Record& r = records[size_t(i)];
      const data::ImageView v = d.image(i, scratch);
      BYOL_FUZZ_CHECK(r.shard == 0 && uint64_t(v.height) == r.height && uint64_t(v.width) == r.width &&
                          uint64_t(v.channels) == r.channels && d.label(i) == r.label,
                      "record ", i, " differs from its view");
      const unsigned __int128 end = (unsigned __int128)r.offset + uint64_t(v.bytes());
      BYOL_FUZZ_CHECK(end <= shard.size(), "record ", i, " (offset ", r.offset, ", ", v.bytes(),
                      " bytes) ends beyond the shard's ", shard.size(), " bytes");
      BYOL_FUZZ_CHECK(std::memcmp(v.data, shard.data() + r.offset, size_t(v.bytes())) == 0, "record ", i,
                      ": pixels differ from the shard's bytes");
    }
  });
  return 0;
}
