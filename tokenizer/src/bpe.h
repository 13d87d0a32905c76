// The BPE model: a vocabulary, merge ranks, and the merge loop that turns one pre-tokenized piece
// into ids exactly as Hugging Face's BPE does (the lowest-ranked adjacent pair merges first, the
// leftmost among equals; ignore_merges takes a whole piece that is in the vocabulary as is;
// characters outside the vocabulary fall back to <0xHH> byte tokens or the unknown token).
// Immutable after loading; Encode may run on many threads at once, each with its own Scratch.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lockstep/tokenizer/tokenizer.h"
#include "tokenizer_json.h"

namespace lockstep::tokenizer {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Token string -> id: open addressing over one arena of bytes (the vocabulary is looked up for
// every character and piece, and a node-based map is most of the encode time). Insert overwrites.
class TokenTable {
 public:
  void Reserve(size_t n);
  void Insert(std::string_view token, TokenId id);
  std::optional<TokenId> Find(std::string_view token) const;
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint32_t offset = 0;
    uint32_t length = 0;
    TokenId id = -1;   // -1: free
    uint32_t tag = 0;  // high hash bits, checked before the bytes
  };
  static uint64_t Hash(std::string_view s);
  void Grow();
  std::string arena_;
  std::vector<Slot> slots_;
  size_t size_ = 0;
};

class Bpe {
 public:
  // A merge waiting in the queue: the pair at symbol `key & 0xffffffff` merges into `merged`
  // with rank `key >> 32`. It is stale once that symbol's stamp has moved on (the symbol or its
  // right neighbour changed), so popping it needs no second look at the merge table.
  struct Candidate {
    uint64_t key;  // rank << 32 | left symbol: the lowest rank first, the leftmost among equals
    uint32_t stamp;
    TokenId merged;
  };
  // Per-call working memory, reused across the pieces of one Encode.
  struct Scratch {
    std::vector<TokenId> ids;
    std::vector<int32_t> prev, next;
    std::vector<uint32_t> begin, end;  // byte span of each symbol in the piece
    std::vector<uint32_t> stamp;       // bumped whenever the pair starting at the symbol changes
    std::vector<Candidate> heap;
  };

  // `model`: tokenizer.json's "model" object (type BPE) without its vocab and merges, which
  // `data` holds. `byte_level`: pieces are raw bytes, and the vocabulary spells each byte with
  // GPT-2's stand-in characters.
  Bpe(const nlohmann::json& model, const TokenizerJson& data, bool byte_level,
      const std::string& where);

  // Appends the ids of one piece (valid UTF-8 unless byte-level). Words are kept in a cache
  // per thread (English text repeats its words; a hit skips the merge loop): the short pieces
  // of byte-level models, and the words of a metaspace model's piece (a whole line of text for
  // Llama 2), encoded one by one where the merges allow it (split_at_metaspace_).
  void Encode(std::string_view piece, std::vector<TokenId>& out, Scratch& scratch) const;

  // The vocabulary (model tokens, then added tokens via AddToken).
  const TokenTable& vocab() const { return vocab_; }
  const std::vector<std::string>& id_to_token() const { return id_to_token_; }
  // Registers an added token (the reference looks added tokens up in the model's vocabulary too).
  void AddToken(const std::string& content, TokenId id);
  std::optional<TokenId> unk_id() const { return unk_id_; }
  bool fuse_unk() const { return fuse_unk_; }
  bool byte_level() const { return byte_level_; }
  size_t merge_count() const { return merge_count_; }

 private:
  struct PairSlot {
    uint64_t key;  // left << 32 | right; kEmpty when free
    int32_t rank;
    TokenId merged;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  const PairSlot* FindPair(TokenId left, TokenId right) const;
  void InsertPair(TokenId left, TokenId right, int32_t rank, TokenId merged);
  void AppendUnknown(std::string_view bytes, std::vector<TokenId>& out) const;
  void EncodeWord(std::string_view word, std::vector<TokenId>& out, Scratch& scratch) const;
  void Merge(std::string_view piece, std::vector<TokenId>& out, Scratch& scratch) const;
  void AddByteToken(std::string_view token, TokenId id);
  std::optional<TokenId> Lookup(std::string_view token) const;

  TokenTable vocab_;
  // The id of each single character below U+3000 (the metaspace U+2581 among them), -1 when it
  // is not a token; the characters of most text are looked up here, not hashed.
  std::vector<TokenId> char_ids_;
  // Byte-level: the vocabulary by raw bytes (the stand-in alphabet decoded), for ignore_merges.
  TokenTable byte_vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<PairSlot> pairs_;
  uint64_t pair_mask_ = 0;
  size_t merge_count_ = 0;
  bool byte_level_ = false;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::optional<TokenId> unk_id_;
  // No merge makes a token with "▁" after another character: a piece may be split before each
  // word's "▁" and its words merged one by one, with the same result (checked at load).
  bool split_at_metaspace_ = false;
  uint64_t cache_owner_ = 0;       // this model's key to the per-thread word cache (unique per Bpe)
  std::vector<TokenId> byte_ids_;  // byte-level: the id of each byte's stand-in, or -1
  std::vector<TokenId> fallback_ids_;  // byte fallback: the id of "<0xHH>", or -1
};

}  // namespace lockstep::tokenizer
