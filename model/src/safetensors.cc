#include "lockstep/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "lockstep/common/error.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LOCKSTEP_X86_CONVERT 1
#endif

namespace lockstep::model {
namespace {

// The safetensors reference implementation refuses headers above 100 MB; so do we, so a
// garbage length cannot make us allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string Quote(const std::filesystem::path& p) { return p.string(); }

Error Malformed(const std::filesystem::path& path, const std::string& what) {
  return InvalidInput(Quote(path) + ": not a valid safetensors file: " + what);
}

bool ParseStoredDtype(std::string_view s, Dtype& out) {
  if (s == "F32") {
    out = Dtype::kFp32;
  } else if (s == "F16") {
    out = Dtype::kFp16;
  } else if (s == "BF16") {
    out = Dtype::kBf16;
  } else if (s == "I8") {
    out = Dtype::kInt8;
  } else {
    return false;
  }
  return true;
}

// a * b, or false on int64 overflow.
bool CheckedMul(int64_t a, int64_t b, int64_t& out) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) return false;
  out = a * b;
  return true;
}

uint16_t LoadU16(const std::byte* p) {
  return static_cast<uint16_t>(static_cast<uint16_t>(p[0]) | (static_cast<uint16_t>(p[1]) << 8));
}

void StoreU16(uint16_t v, std::byte* p) {
  p[0] = static_cast<std::byte>(v & 0xff);
  p[1] = static_cast<std::byte>(v >> 8);
}

TensorInfo ParseEntry(const std::filesystem::path& path, const std::string& name,
                      const nlohmann::json& e, int64_t data_size, int64_t file_size) {
  const std::string where = "tensor '" + name + "'";
  if (!e.is_object()) throw Malformed(path, where + " is not a JSON object");
  TensorInfo t;
  t.name = name;
  auto dtype = e.find("dtype");
  if (dtype == e.end() || !dtype->is_string()) {
    throw Malformed(path, where + " has no string \"dtype\"");
  }
  if (!ParseStoredDtype(dtype->get<std::string>(), t.dtype)) {
    throw Malformed(path, where + " has dtype '" + dtype->get<std::string>() +
                              "' (supported: F32, F16, BF16, I8)");
  }
  auto shape = e.find("shape");
  if (shape == e.end() || !shape->is_array()) {
    throw Malformed(path, where + " has no array \"shape\"");
  }
  int64_t elements = 1;
  for (const nlohmann::json& d : *shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      throw Malformed(path,
                      where + " has a shape entry that is not a non-negative integer: " + d.dump());
    }
    t.shape.push_back(d.get<int64_t>());
    if (!CheckedMul(elements, t.shape.back(), elements)) {
      throw Malformed(path, where + " has a shape too large: " + shape->dump());
    }
  }
  auto offsets = e.find("data_offsets");
  if (offsets == e.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    throw Malformed(path, where + " has no \"data_offsets\" [begin, end] of unsigned integers");
  }
  const uint64_t begin = (*offsets)[0].get<uint64_t>();
  const uint64_t end = (*offsets)[1].get<uint64_t>();
  if (begin > end) {
    throw Malformed(path, where + " has data_offsets begin " + std::to_string(begin) +
                              " after end " + std::to_string(end));
  }
  if (end > static_cast<uint64_t>(data_size)) {
    // Offsets in the file: what a user compares with `ls -l`.
    const uint64_t data_start = static_cast<uint64_t>(file_size) - static_cast<uint64_t>(data_size);
    throw Malformed(path, "file truncated at byte offset " + std::to_string(file_size) + ": " +
                              where + " needs bytes [" + std::to_string(data_start + begin) + ", " +
                              std::to_string(data_start + end) + ") of the file");
  }
  t.begin = static_cast<int64_t>(begin);
  t.end = static_cast<int64_t>(end);
  int64_t bytes = 0;
  if (!CheckedMul(elements, DtypeBytes(t.dtype), bytes) || bytes != t.end - t.begin) {
    throw Malformed(path, where + " shape " + shape->dump() + " at " + dtype->get<std::string>() +
                              " needs " + std::to_string(bytes) + " bytes but data_offsets give " +
                              std::to_string(t.end - t.begin));
  }
  return t;
}

}  // namespace

std::string_view SafetensorsDtypeName(Dtype dtype) {
  switch (dtype) {
    case Dtype::kFp32:
      return "F32";
    case Dtype::kFp16:
      return "F16";
    case Dtype::kBf16:
      return "BF16";
    case Dtype::kInt8:
      return "I8";
    default:
      throw InvalidInput("safetensors: cannot store dtype " + std::string(DtypeName(dtype)) +
                         " (valid: fp32, fp16, bf16, int8)");
  }
}

float Fp16ToFp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    // inf, or NaN with its payload and the quiet bit set (as VCVTPH2PS gives it).
    bits = sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x00400000u : 0u);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal: normalize. value = mant * 2^-24.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3ff) << 13);
  }
  return std::bit_cast<float>(bits);
}

float Bf16ToFp32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t Fp32ToBf16(float value) {
  const uint32_t u = std::bit_cast<uint32_t>(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN: keep it a (quiet) NaN
  }
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // ties to even
  return static_cast<uint16_t>((u + rounding) >> 16);
}

uint16_t Fp32ToFp16(float value) {
  const uint32_t u = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to >= 65520: inf
  const int32_t exp = static_cast<int32_t>(abs >> 23) - 127;
  if (exp >= -14) {
    // Normal fp16: drop 13 mantissa bits with round to nearest even; a carry into the
    // exponent is the correct result.
    const uint32_t rebased = abs - (112u << 23);
    const uint32_t rounded = rebased + 0xfffu + ((rebased >> 13) & 1u);
    return static_cast<uint16_t>(sign | (rounded >> 13));
  }
  if (exp < -25) return sign;  // below half the smallest subnormal: zero
  // Subnormal fp16: value = m * 2^-24 with m = full mantissa >> shift.
  const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = static_cast<uint32_t>(-exp - 1);  // 14 .. 24
  const uint32_t half = 1u << (shift - 1);
  uint32_t m = mant >> shift;
  const uint32_t rest = mant & ((1u << shift) - 1);
  if (rest > half || (rest == half && (m & 1u))) ++m;
  return static_cast<uint16_t>(sign | m);
}

namespace {

#ifdef LOCKSTEP_X86_CONVERT
// Eight elements at a time; the tail through the scalar definition. Widening is exact, so the
// vector and scalar paths agree bit for bit (tested over every 16-bit pattern).
__attribute__((target("avx2"))) void Bf16ToFp32Avx2(const std::byte* p, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i));
    const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(w));
  }
  for (; i < n; ++i) out[i] = Bf16ToFp32(LoadU16(p + 2 * i));
}

__attribute__((target("avx2,f16c"))) void Fp16ToFp32F16c(const std::byte* p, int64_t n,
                                                         float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = Fp16ToFp32(LoadU16(p + 2 * i));
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
bool HasF16c() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  return has;
}
#endif

}  // namespace

void ConvertToFp32(Dtype stored, const std::byte* p, int64_t n, float* out) {
  switch (stored) {
    case Dtype::kFp32:
      // Safetensors is little-endian, as is every host Lockstep targets.
      static_assert(std::endian::native == std::endian::little);
      if (n > 0) std::memcpy(out, p, static_cast<size_t>(n) * 4);
      return;
    case Dtype::kFp16:
#ifdef LOCKSTEP_X86_CONVERT
      if (HasF16c()) return Fp16ToFp32F16c(p, n, out);
#endif
      for (int64_t i = 0; i < n; ++i) out[i] = Fp16ToFp32(LoadU16(p + 2 * i));
      return;
    case Dtype::kBf16:
#ifdef LOCKSTEP_X86_CONVERT
      if (HasAvx2()) return Bf16ToFp32Avx2(p, n, out);
#endif
      for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFp32(LoadU16(p + 2 * i));
      return;
    case Dtype::kInt8:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int8_t>(p[i]));
      return;
    default:
      throw Error(ErrorCode::kInternal,
                  "ConvertToFp32: unexpected stored dtype " + std::string(DtypeName(stored)));
  }
}

int64_t TensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorSpec::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::Open(const std::filesystem::path& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error(ErrorCode::kNotFound,
                Quote(path) + ": cannot open safetensors file: " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InvalidInput(Quote(path) + ": not a regular file");
  }
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    throw Malformed(path, "file is " + std::to_string(file_size) +
                              " bytes, shorter than the 8-byte header length");
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    throw Error(ErrorCode::kUnavailable, Quote(path) + ": mmap failed: " + std::strerror(errno));
  }
  f->map_ = map;
  f->map_size_ = file_size;
  const auto* bytes = static_cast<const std::byte*>(map);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_len > kMaxHeaderBytes) {
    throw Malformed(path, "header length " + std::to_string(header_len) +
                              " exceeds the 100 MB limit (corrupt length?)");
  }
  if (header_len > file_size - 8) {
    throw Malformed(path, "header length " + std::to_string(header_len) +
                              " runs beyond the end of the file (" + std::to_string(file_size) +
                              " bytes)");
  }
  const auto* header_begin = reinterpret_cast<const char*>(bytes + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw Malformed(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw Malformed(path, "header is not a JSON object");
  f->data_ = bytes + 8 + header_len;
  const auto data_size = static_cast<int64_t>(file_size - 8 - header_len);
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) throw Malformed(path, "__metadata__ is not a JSON object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          throw Malformed(path, "__metadata__ value '" + m.key() + "' is not a string");
        }
        f->metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    f->tensors_.push_back(
        ParseEntry(path, it.key(), *it, data_size, static_cast<int64_t>(file_size)));
  }
  // Overlap check on the byte ranges, in offset order (empty tensors cannot overlap anything).
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : f->tensors_) {
    if (t.end > t.begin) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      throw Malformed(path, "tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name +
                                "' have overlapping data_offsets");
    }
  }
  std::sort(f->tensors_.begin(), f->tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

std::span<const std::byte> SafetensorsFile::Bytes(const TensorInfo& tensor) const {
  return {data_ + tensor.begin, static_cast<size_t>(tensor.end - tensor.begin)};
}

void SafetensorsFile::ReadFp32(const TensorInfo& tensor, std::span<float> out) const {
  const int64_t n = tensor.num_elements();
  if (static_cast<int64_t>(out.size()) != n) {
    throw Error(ErrorCode::kInternal, Quote(path_) + ": tensor '" + tensor.name + "' has " +
                                          std::to_string(n) + " elements, buffer " +
                                          std::to_string(out.size()));
  }
  ReadFp32(tensor, 0, out);
}

void SafetensorsFile::ReadFp32(const TensorInfo& tensor, int64_t first,
                               std::span<float> out) const {
  const int64_t n = tensor.num_elements();
  const auto count = static_cast<int64_t>(out.size());
  if (first < 0 || count > n - first) {
    throw Error(ErrorCode::kInternal, Quote(path_) + ": elements [" + std::to_string(first) + ", " +
                                          std::to_string(first + count) + ") are outside tensor '" +
                                          tensor.name + "' of " + std::to_string(n));
  }
  ConvertToFp32(tensor.dtype, data_ + tensor.begin + first * DtypeBytes(tensor.dtype), count,
                out.data());
}

void SafetensorsFile::ReadInt8(const TensorInfo& tensor, int64_t first,
                               std::span<int8_t> out) const {
  const int64_t n = tensor.num_elements();
  const auto count = static_cast<int64_t>(out.size());
  if (tensor.dtype != Dtype::kInt8 || first < 0 || count > n - first) {
    throw Error(ErrorCode::kInternal, Quote(path_) + ": elements [" + std::to_string(first) + ", " +
                                          std::to_string(first + count) + ") of tensor '" +
                                          tensor.name + "' as int8");
  }
  if (count > 0) std::memcpy(out.data(), data_ + tensor.begin + first, static_cast<size_t>(count));
}

void SafetensorsFile::Release(const TensorInfo& tensor) const {
  static const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(data_ + tensor.begin);
  const auto end = reinterpret_cast<uintptr_t>(data_ + tensor.end);
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  // Advice only: a failure changes nothing a reader sees.
  if (first < last) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

Checkpoint Checkpoint::Open(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  Checkpoint c;
  c.path_ = path;
  fs::path index;
  fs::path single;
  if (fs::is_directory(path)) {
    if (fs::exists(path / "model.safetensors.index.json")) {
      index = path / "model.safetensors.index.json";
    } else if (fs::exists(path / "model.safetensors")) {
      single = path / "model.safetensors";
    } else {
      throw Error(ErrorCode::kNotFound,
                  Quote(path) +
                      ": folder holds neither model.safetensors nor model.safetensors.index.json");
    }
  } else if (path.string().ends_with(".index.json")) {
    index = path;
  } else {
    single = path;
  }
  if (!single.empty()) {
    c.files_.push_back(SafetensorsFile::Open(single));
    for (const TensorInfo& t : c.files_[0]->tensors()) c.where_[t.name] = 0;
    return c;
  }
  std::ifstream in(index);
  if (!in) throw Error(ErrorCode::kNotFound, Quote(index) + ": cannot open checkpoint index");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(Quote(index) + ": index is not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    throw InvalidInput(Quote(index) + ": index has no \"weight_map\" object");
  }
  // Shard files in sorted order (std::map), each opened once.
  std::map<std::string, std::vector<std::string>> shards;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it->is_string()) {
      throw InvalidInput(Quote(index) + ": weight_map entry '" + it.key() +
                         "' is not a file name string");
    }
    const std::string file = it->get<std::string>();
    if (file.empty() || fs::path(file).is_absolute() || file.find("..") != std::string::npos) {
      throw InvalidInput(Quote(index) + ": weight_map entry '" + it.key() + "' names file '" +
                         file + "' (must be a relative name inside the checkpoint folder)");
    }
    shards[file].push_back(it.key());
  }
  for (const auto& [file, names] : shards) {
    c.files_.push_back(SafetensorsFile::Open(index.parent_path() / file));
    const SafetensorsFile& f = *c.files_.back();
    for (const std::string& name : names) {
      if (f.Find(name) == nullptr) {
        throw InvalidInput(Quote(index) + ": index places tensor '" + name + "' in '" + file +
                           "', which does not hold it");
      }
    }
    for (const TensorInfo& t : f.tensors()) {
      auto [it, inserted] = c.where_.emplace(t.name, c.files_.size() - 1);
      if (!inserted) {
        throw InvalidInput(Quote(index) + ": tensor '" + t.name + "' is in two shards: '" +
                           c.files_[it->second]->path().filename().string() + "' and '" + file +
                           "'");
      }
    }
  }
  return c;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : where_) out.push_back(name);
  return out;
}

const TensorInfo* Checkpoint::Find(std::string_view name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : files_[it->second]->Find(name);
}

const TensorInfo& Checkpoint::Get(std::string_view name) const {
  const TensorInfo* t = Find(name);
  if (t == nullptr) {
    throw Error(ErrorCode::kNotFound,
                Quote(path_) + ": checkpoint has no tensor '" + std::string(name) + "'");
  }
  return *t;
}

void Checkpoint::ReadFp32(std::string_view name, std::span<float> out) const {
  FileOf(name).ReadFp32(Get(name), out);
}

void Checkpoint::ReadFp32(std::string_view name, int64_t first, std::span<float> out) const {
  FileOf(name).ReadFp32(Get(name), first, out);
}

void Checkpoint::ReadInt8(std::string_view name, int64_t first, std::span<int8_t> out) const {
  FileOf(name).ReadInt8(Get(name), first, out);
}

void Checkpoint::Release(std::string_view name) const { FileOf(name).Release(Get(name)); }

const SafetensorsFile& Checkpoint::FileOf(std::string_view name) const {
  Get(name);  // throws naming the tensor when absent
  return *files_[where_.find(name)->second];
}

std::vector<float> Checkpoint::ReadFp32(std::string_view name) const {
  std::vector<float> out(static_cast<size_t>(Get(name).num_elements()));
  ReadFp32(name, out);
  return out;
}

namespace {

// Writes specs[first, last) to one file; `fill` sees their indices in `specs`.
void WriteFile(const std::filesystem::path& path, const std::vector<TensorSpec>& specs,
               size_t first, size_t last, const TensorFill& fill,
               const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  int64_t offset = 0;
  for (size_t i = first; i < last; ++i) {
    const TensorSpec& s = specs[i];
    if (header.contains(s.name) || s.name == "__metadata__") {
      throw InvalidInput(Quote(path) + ": duplicate tensor name '" + s.name + "'");
    }
    for (int64_t d : s.shape) {
      if (d < 0) throw InvalidInput(Quote(path) + ": tensor '" + s.name + "' has a negative dim");
    }
    const int64_t bytes = s.num_elements() * DtypeBytes(s.dtype);
    header[s.name] = {{"dtype", SafetensorsDtypeName(s.dtype)},
                      {"shape", s.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorCode::kNotFound, Quote(path) + ": cannot create file");
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  out.write(len, 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  // Stream each tensor through a bounded buffer.
  constexpr int64_t kBlock = 1 << 16;
  std::vector<float> values;
  std::vector<std::byte> encoded;
  for (size_t i = first; i < last; ++i) {
    const TensorSpec& s = specs[i];
    const int64_t n = s.num_elements();
    for (int64_t at = 0; at < n; at += kBlock) {
      const int64_t count = std::min(kBlock, n - at);
      values.assign(static_cast<size_t>(count), 0.0f);
      fill(i, at, values);
      encoded.resize(static_cast<size_t>(count * DtypeBytes(s.dtype)));
      if (s.dtype == Dtype::kFp32) {
        std::memcpy(encoded.data(), values.data(), encoded.size());
      } else if (s.dtype == Dtype::kInt8) {
        for (int64_t k = 0; k < count; ++k) {
          const float v = values[static_cast<size_t>(k)];
          if (!(v >= -128.0f && v <= 127.0f) || v != std::trunc(v)) {
            throw Error(ErrorCode::kInternal, Quote(path) + ": tensor '" + s.name +
                                                  "' is I8 but element " + std::to_string(at + k) +
                                                  " is " + std::to_string(v));
          }
          encoded[static_cast<size_t>(k)] = static_cast<std::byte>(static_cast<int8_t>(v));
        }
      } else {
        for (int64_t k = 0; k < count; ++k) {
          const float v = values[static_cast<size_t>(k)];
          StoreU16(s.dtype == Dtype::kFp16 ? Fp32ToFp16(v) : Fp32ToBf16(v), encoded.data() + 2 * k);
        }
      }
      out.write(reinterpret_cast<const char*>(encoded.data()),
                static_cast<std::streamsize>(encoded.size()));
    }
  }
  out.close();
  if (!out) throw Error(ErrorCode::kUnavailable, Quote(path) + ": write failed (disk full?)");
}

}  // namespace

void WriteSafetensors(const std::filesystem::path& path, const std::vector<TensorSpec>& specs,
                      const TensorFill& fill, const std::map<std::string, std::string>& metadata) {
  WriteFile(path, specs, 0, specs.size(), fill, metadata);
}

std::vector<std::filesystem::path> WriteShardedSafetensors(
    const std::filesystem::path& dir, const std::vector<TensorSpec>& specs, const TensorFill& fill,
    int64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  if (max_shard_bytes < 1) {
    throw InvalidInput(Quote(dir) + ": the largest shard must be >= 1 byte, got " +
                       std::to_string(max_shard_bytes));
  }
  std::set<std::string> names;
  for (const TensorSpec& s : specs) {
    if (!names.insert(s.name).second) {
      throw InvalidInput(Quote(dir) + ": duplicate tensor name '" + s.name + "'");
    }
  }
  // Tensors [bounds[k], bounds[k + 1]) go to file k.
  std::vector<size_t> bounds = {0};
  int64_t bytes = 0, total = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const int64_t b = specs[i].num_elements() * DtypeBytes(specs[i].dtype);
    if (i > bounds.back() && bytes + b > max_shard_bytes) {
      bounds.push_back(i);
      bytes = 0;
    }
    bytes += b;
    total += b;
  }
  bounds.push_back(specs.size());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(ErrorCode::kNotFound, Quote(dir) + ": cannot create folder: " + ec.message());
  const size_t files = bounds.size() - 1;
  auto number = [](size_t k) {
    std::string n = std::to_string(k);
    return std::string(n.size() < 5 ? 5 - n.size() : 0, '0') + n;
  };
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  std::vector<std::filesystem::path> written;
  for (size_t k = 0; k < files; ++k) {
    const std::string file = "model-" + number(k + 1) + "-of-" + number(files) + ".safetensors";
    WriteFile(dir / file, specs, bounds[k], bounds[k + 1], fill, metadata);
    for (size_t i = bounds[k]; i < bounds[k + 1]; ++i) weight_map[specs[i].name] = file;
    written.push_back(dir / file);
  }
  nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}},
                                  {"weight_map", weight_map}};
  std::ofstream out(dir / "model.safetensors.index.json", std::ios::trunc);
  out << index.dump(2) << "\n";
  out.close();
  if (!out) {
    throw Error(ErrorCode::kUnavailable,
                Quote(dir / "model.safetensors.index.json") + ": write failed (disk full?)");
  }
  return written;
}

void WriteSafetensors(const std::filesystem::path& path, const std::vector<TensorSpec>& specs,
                      const std::vector<std::vector<float>>& data,
                      const std::map<std::string, std::string>& metadata) {
  if (data.size() != specs.size()) {
    throw InvalidInput(Quote(path) + ": " + std::to_string(specs.size()) + " tensor specs but " +
                       std::to_string(data.size()) + " data buffers");
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (static_cast<int64_t>(data[i].size()) != specs[i].num_elements()) {
      throw InvalidInput(Quote(path) + ": tensor '" + specs[i].name + "' has " +
                         std::to_string(data[i].size()) + " values for shape of " +
                         std::to_string(specs[i].num_elements()));
    }
  }
  WriteSafetensors(
      path, specs,
      [&](size_t index, int64_t first, std::span<float> out) {
        std::copy_n(data[index].begin() + first, out.size(), out.begin());
      },
      metadata);
}

}  // namespace lockstep::model
