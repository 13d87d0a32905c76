// Safetensors checkpoints: reading (memory-mapped, single file or sharded with
// `model.safetensors.index.json`) and writing (streamed, one tensor at a time).
//
// The format (https://huggingface.co/docs/safetensors): 8 bytes little-endian header length N,
// N bytes of JSON `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"key": "value"}}`, then the data; offsets are relative to the data start.
// Lockstep stores and reads F32, F16, BF16 and I8 (int8 weights, weight.h) and hands every tensor
// out as fp32 (or I8 as int8): fp16/bf16/int8 -> fp32 is exact; fp32 -> fp16/bf16 on write rounds
// to nearest, ties to even; an I8 tensor is written from integral values only.
//
// Files are mapped, never read whole: opening parses and validates only the header, and a
// tensor's bytes are touched when it is read. Every malformed input (bad header length, header
// beyond the file, malformed JSON, unknown dtype, shape/byte-count mismatch, offsets out of
// range or overlapping, truncated data) is an Error (kInvalidInput) naming the file and the
// tensor, never a crash.
//
// Thread-safety: an open SafetensorsFile / Checkpoint is immutable; concurrent reads are safe.
// Ownership: a Checkpoint owns its mapped files; TensorInfo pointers and byte spans stay valid
// while it lives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/common/dtype.h"

namespace lockstep::model {

// Safetensors dtype name ("F32", "F16", "BF16") for a storable Dtype; Error for the others.
std::string_view SafetensorsDtypeName(Dtype dtype);

// Exact widening, and round-to-nearest-even narrowing (NaN stays NaN, overflow -> inf). A NaN
// widens with its quiet bit set, as the hardware conversions (F16C) do, so every path gives the
// same bits.
float Fp16ToFp32(uint16_t bits);
float Bf16ToFp32(uint16_t bits);
uint16_t Fp32ToFp16(float value);
uint16_t Fp32ToBf16(float value);

// `n` stored elements of `stored` (fp32, fp16, bf16 or int8, little-endian, any alignment) as
// fp32: exactly Fp16ToFp32 / Bf16ToFp32 of each (int8: its value), vectorized (AVX2/F16C where
// the CPU has them, the same bits either way). Throws Error (kInternal) for another dtype.
void ConvertToFp32(Dtype stored, const std::byte* bytes, int64_t n, float* out);

struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::kFp32;
  std::vector<int64_t> shape;
  // Byte range in the data section (after the header), as in the file.
  int64_t begin = 0;
  int64_t end = 0;

  int64_t num_elements() const;
};

// One mapped .safetensors file.
class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws Error: kNotFound if it cannot be opened, kInvalidInput if
  // malformed.
  static std::unique_ptr<SafetensorsFile> Open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // All tensors, sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorInfo* Find(std::string_view name) const;
  // The `__metadata__` string map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The stored bytes of a tensor (unaligned; little-endian).
  std::span<const std::byte> Bytes(const TensorInfo& tensor) const;
  // The tensor converted to fp32 into `out` (out.size() must equal its element count).
  void ReadFp32(const TensorInfo& tensor, std::span<float> out) const;
  // Elements [first, first + out.size()) of the tensor (row-major) converted to fp32. Throws
  // Error (kInternal) for a range outside the tensor.
  void ReadFp32(const TensorInfo& tensor, int64_t first, std::span<float> out) const;
  // Elements [first, first + out.size()) of an I8 tensor. Throws Error (kInternal) for another
  // dtype or a range outside the tensor.
  void ReadInt8(const TensorInfo& tensor, int64_t first, std::span<int8_t> out) const;
  // Gives the mapped pages lying wholly inside the tensor's bytes back to the kernel (they stay
  // in the page cache; a later read maps them again): a loader that has taken its slice of a
  // tensor keeps the process's resident memory to what it holds, not the file.
  void Release(const TensorInfo& tensor) const;

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const std::byte* data_ = nullptr;  // start of the data section
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint: one .safetensors file or a set of shards listed by an index
// (`{"weight_map": {"tensor": "file.safetensors", ...}}`).
class Checkpoint {
 public:
  // `path` is a .safetensors file, a `*.safetensors.index.json`, or a folder holding
  // `model.safetensors` or `model.safetensors.index.json`. Every shard is opened and validated;
  // a tensor the index places in a shard that does not hold it, or a tensor in two shards, is an
  // error.
  static Checkpoint Open(const std::filesystem::path& path);

  // Names of all tensors, sorted.
  std::vector<std::string> names() const;
  // nullptr when absent.
  const TensorInfo* Find(std::string_view name) const;
  // Throws Error (kNotFound) naming the tensor and the checkpoint when absent.
  const TensorInfo& Get(std::string_view name) const;
  // The tensor as fp32 (converted from its stored dtype).
  std::vector<float> ReadFp32(std::string_view name) const;
  void ReadFp32(std::string_view name, std::span<float> out) const;
  // Elements [first, first + out.size()) of the tensor (row-major), as fp32.
  void ReadFp32(std::string_view name, int64_t first, std::span<float> out) const;
  // Elements [first, first + out.size()) of an I8 tensor.
  void ReadInt8(std::string_view name, int64_t first, std::span<int8_t> out) const;
  // SafetensorsFile::Release of the tensor's pages.
  void Release(std::string_view name) const;
  // The file that holds the tensor (Get's error when absent).
  const SafetensorsFile& FileOf(std::string_view name) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  // name -> index in files_ (ordered map: deterministic iteration).
  std::map<std::string, size_t, std::less<>> where_;
};

// A tensor to write: its name, shape and storage dtype (F32/F16/BF16/I8).
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  Dtype dtype = Dtype::kFp32;

  int64_t num_elements() const;
};

// Fills `out` (the tensor's elements in row-major order, fp32) for specs[index]. Called once
// per tensor, in order, possibly several times per tensor with consecutive element ranges
// starting at `first_element` (so huge tensors need no full-size buffer).
using TensorFill = std::function<void(size_t index, int64_t first_element, std::span<float> out)>;

// Writes a .safetensors file: header (padded with spaces to a multiple of 8 bytes so every
// tensor is 8-byte aligned in the file), tensors in the order given. Throws Error on a duplicate
// name, a dtype that cannot be stored, or an I/O failure (naming the path).
void WriteSafetensors(const std::filesystem::path& path, const std::vector<TensorSpec>& specs,
                      const TensorFill& fill,
                      const std::map<std::string, std::string>& metadata = {});

// The same tensors written as a sharded checkpoint into folder `dir` (created if missing):
// `model-0000k-of-0000n.safetensors` files of whole tensors in the order given, a new file
// begun when the next tensor would take the current one past `max_shard_bytes` of data (a
// tensor larger than that gets a file alone), and `model.safetensors.index.json` mapping each
// tensor to its file, as Hugging Face publishes large checkpoints. Returns the files written, in
// order. `metadata` goes into every shard's header.
std::vector<std::filesystem::path> WriteShardedSafetensors(
    const std::filesystem::path& dir, const std::vector<TensorSpec>& specs, const TensorFill& fill,
    int64_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {});

// Convenience: tensors held in memory (data[i].size() == specs[i].num_elements()).
void WriteSafetensors(const std::filesystem::path& path, const std::vector<TensorSpec>& specs,
                      const std::vector<std::vector<float>>& data,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace lockstep::model
