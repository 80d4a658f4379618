// TensorBoard event files for byol-pretrain's scalars, so `tensorboard --logdir runs/` shows a run's curves
// next to those of other frameworks.
//
// The format TensorBoard reads (tensorflow/core/util/event.proto, tensorflow/core/lib/io/record_writer.cc):
// a file named events.out.tfevents.* holding TFRecords, each
//
//   uint64 length | uint32 masked_crc32c(length) | length bytes of data | uint32 masked_crc32c(data)
//
// (little-endian; masked_crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8, crc32c the Castagnoli CRC), whose
// data is one serialised Event protobuf: wall_time (1, double), step (2, int64), and either file_version
// (3, string, "brain.Event:2", the file's first record) or a Summary (5) of Values, each a tag (1, string)
// and a simple_value (2, float). Only these fields are written, so the protobuf encoding is done here by
// hand in a few lines; tests/apps/tensorboard_events.sh reads the files back with TensorBoard's own reader.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace byol::apps {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecords use it.
uint32_t crc32c(const void* data, size_t size);

class EventFile {
 public:
  // Creates `path` (replacing an existing file) and writes the file_version record.
  EventFile(std::string path, double wall_time);
  ~EventFile();
  EventFile(const EventFile&) = delete;
  EventFile& operator=(const EventFile&) = delete;

  // One event holding one simple_value per (tag, value), all at `step`.
  void scalars(int64_t step, double wall_time, const std::vector<std::pair<std::string, float>>& values);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace byol::apps
