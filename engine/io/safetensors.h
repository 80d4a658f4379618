// safetensors files: the format of byol.cpp's checkpoints and exported encoders, readable by the
// safetensors Python package (safetensors.torch.load_file, safetensors.numpy.load_file).
//
// The format (https://github.com/huggingface/safetensors, "Format"):
//   8 bytes   N, a little-endian u64: the length of the header
//   N bytes   a UTF-8 JSON object: {"__metadata__": {str: str}, "name": {"dtype": "F32",
//             "shape": [2, 3], "data_offsets": [begin, end]}, ...}; offsets are bytes relative to the
//             start of the data section, end is one past the last byte
//   the rest  the data section: each tensor's elements, row-major, little-endian, packed
//
// Conventions:
//  - Writing: tensors are laid out in the order given, back to back (the spec allows no holes, so a
//    tensor is only as aligned as the sizes before it make it; put wide dtypes first where that
//    matters). The header lists "__metadata__" first (when there is any), then the tensors in file
//    order, as compact JSON padded with spaces so the data section starts 8-byte aligned.
//  - Writes are atomic: a temporary file in the target's directory is written and fsync'ed, renamed
//    over the target, then the directory is fsync'ed. A failed write leaves any previous file as it
//    was and removes the temporary file; one left by a killed process is removed by
//    remove_stale_temporaries.
//  - Reading follows the reference implementation's checks: header length at most 100 MB and inside
//    the file, a JSON object without duplicate keys, known dtypes, byte ranges that match shape x dtype
//    size and, sorted by offset, tile the data section exactly (no overlap, no gap, no trailing bytes).
//    A file that fails any check is an Error naming the file and the problem; nothing is read out of
//    bounds and nothing is allocated before the sizes are checked against the file's real size.
//  - Supported dtypes: F32, F64, BF16, U8, I32, I64 (byol's DType). Other safetensors dtypes (F16,
//    I8, BOOL, ...) are rejected with an error naming the tensor and its dtype.
//  - Loaded tensors are contiguous CPU tensors named after their key.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace byol {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `tensors` (any devices, any strides; names unique, not "__metadata__") and the string
// `metadata` to `path`, atomically. Throws an Error naming the path (and the OS error) on failure.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Removes the temporary files that a save_safetensors killed mid-write (SIGKILL, a crash, a power cut)
// left in `dir`: regular files named ".<target>.tmp-<pid>-<n>-<hex>", which were never renamed into
// place. Returns their paths. Call it only where no other process may be writing safetensors files into
// `dir` at the same time (byol-pretrain: when a run starts or resumes, before its first checkpoint).
std::vector<std::string> remove_stale_temporaries(const std::string& dir);

// The contents of one safetensors file, held in memory.
class SafetensorsFile {
 public:
  SafetensorsFile(std::string path, NamedTensors tensors, std::map<std::string, std::string> metadata);

  const std::string& path() const { return path_; }
  const NamedTensors& tensors() const { return tensors_; }  // in file (data offset) order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;
  size_t size() const { return tensors_.size(); }

  bool contains(const std::string& name) const;
  // The tensor called `name`; throws, listing the closest names in the file, when there is none.
  const Tensor& get(const std::string& name) const;
  // The same, and checks its shape and dtype:
  //   "ckpt.safetensors: tensor 'layer1.0.conv1.weight' expected f32[64, 64, 3, 3], got f32[64, 64, 1, 1]"
  const Tensor& get(const std::string& name, const Shape& shape, DType dtype) const;
  // Copies the tensor called `name` into `dst` (any device; e.g. a parameter's view into a flat
  // buffer) after checking that its shape and dtype are dst's.
  void copy_to(const std::string& name, const Tensor& dst) const;

  bool has_metadata(const std::string& key) const { return metadata_.count(key) != 0; }
  // The metadata value under `key`; throws naming the file and the key when it is absent.
  const std::string& metadata_value(const std::string& key) const;

 private:
  std::string path_;
  NamedTensors tensors_;
  std::map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// Reads and validates a whole safetensors file into CPU tensors.
SafetensorsFile load_safetensors(const std::string& path);

// safetensors' dtype strings ("F32", "BF16", ...) for byol's dtypes.
const char* safetensors_dtype_name(DType t);

}  // namespace byol
