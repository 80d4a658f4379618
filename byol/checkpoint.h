// Checkpoints and encoder export/import, as safetensors files (engine/io/safetensors.h).
//
// A checkpoint holds everything a resumed run needs to continue bit for bit: the online network
// (encoder, projector, predictor) and its BN statistics, the target network and its statistics, the
// LARS momentum, the probe and its AdamW state, the step, the configuration, and whatever the caller
// adds to the metadata (data order, RNG states). Tensor names are "<group>/<parameter name>", e.g.
// "online/encoder.layer1.0.conv1.weight", "lars_momentum/predictor.0.bias".
//
// The exported encoder uses torchvision's names and layouts ("conv1.weight" as OIHW, "bn1.running_var"),
// so torchvision.models.resnet50().load_state_dict(safetensors.torch.load_file(path), strict=False)
// takes it (only fc.* is absent). import_encoder reads such a file — ours or a torchvision
// checkpoint converted to safetensors — into an encoder, checking every name, shape and dtype.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "byol/learner.h"

namespace byol {

// The names a checkpoint file is read and written by, in one place (checkpoint.cpp writes and reads them,
// encoder_loading.cpp reads the online encoder out of a checkpoint).
namespace checkpoint_names {
constexpr const char* kFormat = "byol.cpp checkpoint v1";  // metadata "format" of a checkpoint
constexpr const char* kEncoderFormat = "byol.cpp encoder (torchvision names, OIHW)";  // of an export
constexpr const char* kOnline = "online";             // online parameters: "online/<name>"
constexpr const char* kOnlineStats = "online_stats";  // online BN running statistics
constexpr const char* kTarget = "target";             // target parameters
constexpr const char* kTargetStats = "target_stats";  // target BN running statistics
}  // namespace checkpoint_names

// The configuration as JSON text (also stored in checkpoints).
std::string config_json(const NetworkConfig& net, const TrainConfig& train);

void save_checkpoint(const std::string& path, const Learner& learner,
                     const std::map<std::string, std::string>& extra_metadata = {});
// Restores `learner` (built with the same network configuration) from `path`; returns the metadata so
// the caller can restore what it stored there. A network mismatch is an error naming both configs; a
// step outside 0..the learner's total_steps is an error naming the file and the key.
std::map<std::string, std::string> load_checkpoint(const std::string& path, Learner& learner);

// An integer from a checkpoint's metadata (as load_checkpoint returns it), parsed strictly: decimal
// digits only (a leading '-' for metadata_int), nothing before or after them, in the type's range. A
// missing key, "abc", "16x" or an overflow is an error naming the file `path` and the key.
int64_t metadata_int(const std::map<std::string, std::string>& meta, const std::string& key,
                     const std::string& path);
uint64_t metadata_uint(const std::map<std::string, std::string>& meta, const std::string& key,
                       const std::string& path);

// Writes the encoder registered under `prefix` in `reg` with torchvision names and OIHW filters. With a
// config, its JSON (encoder_config_json) goes into the metadata under "encoder_config", so tools can
// rebuild the network without being told its shape.
void export_encoder(const std::string& path, const models::ParamRegistry& reg,
                    const std::string& prefix = "encoder.", const models::ResNetConfig* config = nullptr);

// A ResNet configuration as JSON text and back ({"depth":50,"width":1,"stem":"imagenet",...}).
std::string encoder_config_json(const models::ResNetConfig& cfg);
// Every field is bounded (models::check_resnet_config) before anything is built: the JSON may come
// from a downloaded file. Errors start with `context` (say, the file's name).
models::ResNetConfig encoder_config_from_json(const std::string& json,
                                              const std::string& context = "encoder config");

struct ImportReport {
  int loaded = 0;
  std::vector<std::string> ignored;  // names in the file that the encoder has no use for (fc.*, ...)
};
// Loads torchvision-named weights from `path` into the encoder under `prefix` in `reg`.
ImportReport import_encoder(const std::string& path, const models::ParamRegistry& reg,
                            const std::string& prefix = "encoder.");

// KRSC <-> OIHW for conv filters (other ranks are returned unchanged).
Tensor krsc_to_oihw(const Tensor& w);
Tensor oihw_to_krsc(const Tensor& w);

}  // namespace byol
