#include "bpe.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <functional>

#include "lockstep/common/error.h"
#include "unicode.h"

namespace lockstep::tokenizer {
namespace {

using nlohmann::json;

uint64_t PairKey(TokenId left, TokenId right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

uint64_t Mix(uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  return key;
}

constexpr uint32_t kDead = ~uint32_t{0};

// True when `token` has the metaspace "▁" right after a character that is not one.
bool MetaAfterOther(std::string_view token) {
  static constexpr std::string_view kMeta = "\xE2\x96\x81";
  for (size_t at = token.find(kMeta, 1); at != std::string_view::npos;
       at = token.find(kMeta, at + 1)) {
    if (at < kMeta.size() || token.compare(at - kMeta.size(), kMeta.size(), kMeta) != 0) {
      return true;
    }
  }
  return false;
}

// The ids of recent words, per thread (a Tokenizer is shared by threads and immutable; a cache
// per thread needs no lock). Owned by one Bpe at a time: another Bpe's first use clears it. When
// full it starts over, so its size stays bounded; it never changes what Encode returns.
struct WordCache {
  static constexpr size_t kMaxEntries = 1 << 15;
  static constexpr size_t kMaxPieceBytes = 64;
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<TokenId>, StringHash, std::equal_to<>> ids;
};
thread_local WordCache word_cache;
std::atomic<uint64_t> next_cache_owner{1};

}  // namespace

Bpe::Bpe(const json& model, const TokenizerJson& data, bool byte_level, const std::string& where)
    : byte_level_(byte_level), cache_owner_(next_cache_owner++) {
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") {
    throw InvalidInput(where + ".type: unsupported model '" + type + "' (supported: BPE)");
  }
  if (!data.has_vocab) {
    throw InvalidInput(where + ".vocab: missing or not an object of token -> id");
  }
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0)) {
    throw InvalidInput(where + ".dropout: BPE dropout is not supported (must be null)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null() &&
        !(model[key].is_string() && model[key].get<std::string>().empty())) {
      throw InvalidInput(where + "." + key + ": not supported (must be null or empty)");
    }
  }
  ignore_merges_ = model.value("ignore_merges", false);
  byte_fallback_ = model.value("byte_fallback", false);
  fuse_unk_ = model.value("fuse_unk", false);

  // Ids were checked to be in [0, INT32_MAX] as the file was read.
  vocab_.Reserve(data.vocab.size() + 1024);
  TokenId max_id = -1;
  for (const auto& [token, id] : data.vocab) {
    vocab_.Insert(token, static_cast<TokenId>(id));
    max_id = std::max(max_id, static_cast<TokenId>(id));
  }
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [token, id] : data.vocab) id_to_token_[id] = token;

  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    const std::string unk = model["unk_token"].get<std::string>();
    unk_id_ = vocab_.Find(unk);
    if (!unk_id_) throw InvalidInput(where + ".unk_token: '" + unk + "' is not in the vocabulary");
  }

  if (byte_level_) {
    byte_ids_.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      byte_ids_[b] = vocab_.Find(ByteToUnicode(static_cast<uint8_t>(b))).value_or(-1);
    }
  }
  if (byte_fallback_) {
    fallback_ids_.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      fallback_ids_[b] = vocab_.Find(std::string_view(name)).value_or(-1);
    }
  }

  if (!data.has_merges) throw InvalidInput(where + ".merges: missing or not an array");
  merge_count_ = data.merges.size();
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, merge_count_ * 2));
  pairs_.assign(capacity, PairSlot{kEmpty, 0, 0});
  pair_mask_ = capacity - 1;
  std::string joined;
  bool meta_after_other = false;
  for (size_t rank = 0; rank < data.merges.size(); ++rank) {
    const auto& [left, right] = data.merges[rank];
    joined.assign(left).append(right);
    const auto l = vocab_.Find(left), r = vocab_.Find(right), m = vocab_.Find(joined);
    if (!l || !r || !m) {
      throw InvalidInput(where + ".merges[" + std::to_string(rank) + "]: '" + left + "' + '" +
                         right + "' uses or makes a token outside the vocabulary");
    }
    InsertPair(*l, *r, static_cast<int32_t>(rank), *m);
    meta_after_other = meta_after_other || MetaAfterOther(joined);
  }
  // Metaspace models whose merges never put "▁" after another character encode word by word.
  split_at_metaspace_ = !byte_level_ && !meta_after_other;

  if (byte_level_) {
    byte_vocab_.Reserve(data.vocab.size() + 1024);
    for (const auto& [token, id] : data.vocab) AddByteToken(token, static_cast<TokenId>(id));
  } else {
    char_ids_.assign(0x3000, -1);
    std::string ch;
    for (char32_t cp = 0; cp < 0x3000; ++cp) {
      if (cp >= 0xD800 && cp < 0xE000) continue;
      ch.clear();
      AppendUtf8(ch, cp);
      char_ids_[cp] = vocab_.Find(ch).value_or(-1);
    }
  }
}

void Bpe::AddByteToken(std::string_view token, TokenId id) {
  // The token's bytes, when every character is a stand-in (others cannot come out of bytes).
  std::string bytes;
  for (size_t i = 0; i < token.size();) {
    const int b = UnicodeToByte(NextCodePoint(token, i));
    if (b < 0) return;
    bytes += static_cast<char>(b);
  }
  byte_vocab_.Insert(bytes, id);
}

void Bpe::AddToken(const std::string& content, TokenId id) {
  // The merge loop keeps the model's ids (Tokenizer remaps them); lookups of whole pieces and
  // of the vocabulary see the added token, as the reference's token-to-id map does.
  vocab_.Insert(content, id);
  if (byte_level_) AddByteToken(content, id);
  if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(id + 1);
  id_to_token_[id] = content;
}

void Bpe::InsertPair(TokenId left, TokenId right, int32_t rank, TokenId merged) {
  const uint64_t key = PairKey(left, right);
  for (uint64_t i = Mix(key) & pair_mask_;; i = (i + 1) & pair_mask_) {
    PairSlot& slot = pairs_[i];
    if (slot.key == kEmpty || slot.key == key) {
      // A repeated merge takes its later rank, as the reference's map construction does.
      slot = PairSlot{key, rank, merged};
      return;
    }
  }
}

const Bpe::PairSlot* Bpe::FindPair(TokenId left, TokenId right) const {
  const uint64_t key = PairKey(left, right);
  for (uint64_t i = Mix(key) & pair_mask_;; i = (i + 1) & pair_mask_) {
    const PairSlot& slot = pairs_[i];
    if (slot.key == key) return &slot;
    if (slot.key == kEmpty) return nullptr;
  }
}

std::optional<TokenId> Bpe::Lookup(std::string_view token) const { return vocab_.Find(token); }

void TokenTable::Reserve(size_t n) {
  while (slots_.size() < n * 2) Grow();
}

uint64_t TokenTable::Hash(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then a final mix for the high bits
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return Mix(h);
}

void TokenTable::Grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
  const uint64_t mask = slots_.size() - 1;
  for (const Slot& o : old) {
    if (o.id < 0) continue;
    const uint64_t h = Hash(std::string_view(arena_).substr(o.offset, o.length));
    for (uint64_t i = h & mask;; i = (i + 1) & mask) {
      if (slots_[i].id < 0) {
        slots_[i] = o;
        break;
      }
    }
  }
}

void TokenTable::Insert(std::string_view token, TokenId id) {
  if ((size_ + 1) * 2 > slots_.size()) Grow();
  const uint64_t h = Hash(token);
  const auto tag = static_cast<uint32_t>(h >> 32);
  const uint64_t mask = slots_.size() - 1;
  for (uint64_t i = h & mask;; i = (i + 1) & mask) {
    Slot& slot = slots_[i];
    if (slot.id < 0) {
      slot =
          Slot{static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(token.size()), id, tag};
      arena_.append(token);
      ++size_;
      return;
    }
    if (slot.tag == tag && std::string_view(arena_).substr(slot.offset, slot.length) == token) {
      slot.id = id;
      return;
    }
  }
}

std::optional<TokenId> TokenTable::Find(std::string_view token) const {
  if (slots_.empty()) return std::nullopt;
  const uint64_t h = Hash(token);
  const auto tag = static_cast<uint32_t>(h >> 32);
  const uint64_t mask = slots_.size() - 1;
  for (uint64_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& slot = slots_[i];
    if (slot.id < 0) return std::nullopt;
    if (slot.tag == tag && slot.length == token.size() &&
        std::memcmp(arena_.data() + slot.offset, token.data(), token.size()) == 0) {
      return slot.id;
    }
  }
}

void Bpe::AppendUnknown(std::string_view bytes, std::vector<TokenId>& out) const {
  if (byte_fallback_) {
    bool all = true;
    for (char c : bytes) all = all && fallback_ids_[static_cast<unsigned char>(c)] >= 0;
    if (all) {
      for (char c : bytes) out.push_back(fallback_ids_[static_cast<unsigned char>(c)]);
      return;
    }
  }
  // Without an unknown token the reference drops the piece.
  if (unk_id_) out.push_back(*unk_id_);
}

void Bpe::Encode(std::string_view piece, std::vector<TokenId>& out, Scratch& s) const {
  if (split_at_metaspace_) {
    // No merge makes a token with "▁" after another character, so no merge crosses the start of
    // a word: each word merges on its own, exactly as within the whole piece, and words repeat.
    static constexpr std::string_view kMeta = "\xE2\x96\x81";
    size_t start = 0;
    for (size_t at = piece.find(kMeta, 1); at != std::string_view::npos;
         at = piece.find(kMeta, at + kMeta.size())) {
      if (at >= kMeta.size() && piece.compare(at - kMeta.size(), kMeta.size(), kMeta) == 0) {
        continue;  // a run of "▁" stays together
      }
      EncodeWord(piece.substr(start, at - start), out, s);
      start = at;
    }
    EncodeWord(piece.substr(start), out, s);
    return;
  }
  if (!byte_level_) {
    Merge(piece, out, s);
    return;
  }
  EncodeWord(piece, out, s);
}

void Bpe::EncodeWord(std::string_view piece, std::vector<TokenId>& out, Scratch& s) const {
  if (piece.size() > WordCache::kMaxPieceBytes) {
    Merge(piece, out, s);
    return;
  }
  WordCache& cache = word_cache;
  if (cache.owner != cache_owner_) {
    cache.ids.clear();
    cache.owner = cache_owner_;
  }
  if (auto it = cache.ids.find(piece); it != cache.ids.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t first = out.size();
  Merge(piece, out, s);
  if (cache.ids.size() >= WordCache::kMaxEntries) cache.ids.clear();
  cache.ids.emplace(std::string(piece),
                    std::vector<TokenId>(out.begin() + static_cast<ptrdiff_t>(first), out.end()));
}

void Bpe::Merge(std::string_view piece, std::vector<TokenId>& out, Scratch& s) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    std::optional<TokenId> whole;
    if (byte_level_) {
      whole = byte_vocab_.Find(piece);
    } else {
      whole = Lookup(piece);
    }
    if (whole) {
      out.push_back(*whole);
      return;
    }
  }

  // Initial symbols: bytes (byte-level) or characters, with their ids (-1: not in vocabulary).
  s.ids.clear();
  s.begin.clear();
  s.end.clear();
  for (size_t i = 0; i < piece.size();) {
    const size_t start = i;
    TokenId id = -1;
    if (byte_level_) {
      id = byte_ids_[static_cast<unsigned char>(piece[i])];
      ++i;
    } else {
      size_t next = i;
      const char32_t cp = NextCodePoint(piece, next);
      i = std::min(piece.size(), next);
      if (cp < char_ids_.size()) {
        id = char_ids_[cp];
      } else if (auto found = Lookup(piece.substr(start, i - start))) {
        id = *found;
      }
    }
    s.ids.push_back(id);
    s.begin.push_back(static_cast<uint32_t>(start));
    s.end.push_back(static_cast<uint32_t>(i));
  }
  const auto n = static_cast<int32_t>(s.ids.size());
  if (n > 1) {
    s.prev.resize(n);
    s.next.resize(n);
    s.stamp.assign(n, 0);
    for (int32_t k = 0; k < n; ++k) {
      s.prev[k] = k - 1;
      s.next[k] = k + 1 < n ? k + 1 : -1;
    }
    // A min-heap of candidates by (rank, position): the merge the reference does next is on top
    // once the stale ones above it are dropped.
    const auto later = [](const Candidate& a, const Candidate& b) { return a.key > b.key; };
    auto candidate = [&](int32_t left) -> bool {
      const int32_t right = s.next[left];
      if (right < 0 || s.ids[left] < 0 || s.ids[right] < 0) return false;
      const PairSlot* p = FindPair(s.ids[left], s.ids[right]);
      if (p == nullptr) return false;
      s.heap.push_back(
          Candidate{(static_cast<uint64_t>(p->rank) << 32) | static_cast<uint32_t>(left),
                    s.stamp[left], p->merged});
      return true;
    };
    s.heap.clear();
    for (int32_t k = 0; k + 1 < n; ++k) candidate(k);
    std::make_heap(s.heap.begin(), s.heap.end(), later);
    auto push = [&](int32_t left) {
      if (candidate(left)) std::push_heap(s.heap.begin(), s.heap.end(), later);
    };
    while (!s.heap.empty()) {
      std::pop_heap(s.heap.begin(), s.heap.end(), later);
      const Candidate top = s.heap.back();
      s.heap.pop_back();
      const auto left = static_cast<int32_t>(top.key & 0xffffffffu);
      if (s.begin[left] == kDead || s.stamp[left] != top.stamp) continue;  // stale
      const int32_t right = s.next[left];
      s.ids[left] = top.merged;
      s.end[left] = s.end[right];
      s.begin[right] = kDead;
      s.next[left] = s.next[right];
      if (s.next[right] >= 0) s.prev[s.next[right]] = left;
      // The pairs starting at `left` and at its left neighbour are new.
      ++s.stamp[left];
      if (s.prev[left] >= 0) {
        ++s.stamp[s.prev[left]];
        push(s.prev[left]);
      }
      push(left);
    }
  }
  for (int32_t k = 0; k >= 0 && k<n; k = n> 1 ? s.next[k] : -1) {
    if (s.ids[k] >= 0) {
      out.push_back(s.ids[k]);
    } else {
      AppendUnknown(piece.substr(s.begin[k], s.end[k] - s.begin[k]), out);
    }
  }
}

}  // namespace lockstep::tokenizer
