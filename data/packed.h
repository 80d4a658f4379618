// The packed format: a dataset decoded (and usually resized) once into uint8 HWC shards plus an index,
// so training reads pixels without decoding. byol-pack writes it; PackedDataset memory-maps it.
//
// Files, all little-endian:
//   <prefix>.index        header, class names, one record per image
//   <prefix>-00000.bin    shard 0: the images' pixels back to back, ...
// Index layout:
//   char[8] "BYOLPAK1"; u32 version (1); u32 shards; u64 count; u32 classes (0: unlabeled); u32 0;
//   classes x { u32 length; char name[length] };
//   count x { u32 shard; u32 height; u32 width; u32 channels; u64 offset; i64 label }   (32 bytes)
// Shards are written to temporary names and renamed into place by finish(), the index last, so a
// crashed pack never looks complete.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/mapped_file.h"

namespace byol::data {

class PackWriter {
 public:
  PackWriter(std::string prefix, std::vector<std::string> class_names,
             int64_t shard_bytes = int64_t(1) << 30);
  ~PackWriter();  // an unfinished pack leaves only temporary files, which it removes
  PackWriter(const PackWriter&) = delete;
  PackWriter& operator=(const PackWriter&) = delete;

  void add(const ImageView& image, int64_t label);  // label -1 when unlabeled
  void finish();
  int64_t count() const { return static_cast<int64_t>(records_.size()); }

 private:
  struct Record {
    uint32_t shard, height, width, channels;
    uint64_t offset;
    int64_t label;
  };
  void open_shard();
  std::string shard_path(uint32_t shard, bool temporary) const;

  std::string prefix_;
  std::vector<std::string> class_names_;
  int64_t shard_bytes_;
  std::vector<Record> records_;
  std::FILE* shard_ = nullptr;
  uint32_t shard_index_ = 0;
  uint64_t shard_offset_ = 0;
  bool finished_ = false;
};

class PackedDataset : public Dataset {
 public:
  explicit PackedDataset(const std::string& prefix);
  int64_t size() const override { return static_cast<int64_t>(records_.size()); }
  int num_classes() const override { return static_cast<int>(class_names_.size()); }
  int64_t label(int64_t index) const override;
  ImageView image(int64_t index, std::vector<uint8_t>& scratch, const DecodeHint& hint = {}) const override;
  std::string describe() const override;
  std::string item_name(int64_t index) const override;
  std::vector<std::string> class_names() const override { return class_names_; }

 private:
  struct Record {
    uint32_t shard, height, width, channels;
    uint64_t offset;
    int64_t label;
  };
  std::string prefix_;
  std::vector<std::string> class_names_;
  std::vector<Record> records_;
  std::vector<MappedFile> shards_;
};

}  // namespace byol::data
