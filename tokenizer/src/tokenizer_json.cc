#include "tokenizer_json.h"

#include "lockstep/common/error.h"

namespace lockstep::tokenizer {
namespace {

using nlohmann::json;

// SAX events -> TokenizerJson. `stack_` holds the open containers of the tree being built;
// inside model.vocab or model.merges the values go to the flat arrays instead.
class Reader : public nlohmann::json_sax<json> {
 public:
  Reader(TokenizerJson& out, const std::string& source) : out_(out), source_(source) {}

  bool null() override { return Value(json()); }
  bool boolean(bool b) override { return Value(json(b)); }
  bool number_integer(number_integer_t i) override {
    if (mode_ == Mode::kVocab) return VocabId(i >= 0 ? static_cast<int64_t>(i) : -1);
    return Value(json(i));
  }
  bool number_unsigned(number_unsigned_t u) override {
    if (mode_ == Mode::kVocab) return VocabId(u <= INT32_MAX ? static_cast<int64_t>(u) : -1);
    return Value(json(u));
  }
  bool number_float(number_float_t f, const string_t&) override { return Value(json(f)); }
  bool string(string_t& s) override {
    if (mode_ == Mode::kMerges && depth_ == merges_depth_) {
      const size_t space = s.find(' ');
      if (space == std::string::npos) {
        return Fail(MergeWhere() + ": '" + s + "' is not two tokens separated by a space");
      }
      // The first space separates (tokens never contain a plain space); a third part is ignored.
      const size_t next = s.find(' ', space + 1);
      out_.merges.emplace_back(
          s.substr(0, space),
          s.substr(space + 1, next == std::string::npos ? std::string::npos : next - space - 1));
      return true;
    }
    if (mode_ == Mode::kMerges && depth_ == merges_depth_ + 1) {
      pair_.push_back(std::move(s));
      return true;
    }
    return Value(json(std::move(s)));
  }
  bool binary(binary_t&) override { return Fail("binary values are not JSON"); }

  bool start_object(std::size_t) override {
    ++depth_;
    if (mode_ != Mode::kTree)
      return Fail(mode_ == Mode::kVocab ? VocabWhere()
                                        : MergeWhere() + ": must be \"a b\" or [\"a\", \"b\"]");
    if (IsModelChild("vocab")) {
      mode_ = Mode::kVocab;
      out_.has_vocab = true;
      return true;
    }
    return Open(json::object());
  }
  bool end_object() override {
    --depth_;
    if (mode_ == Mode::kVocab) {
      mode_ = Mode::kTree;
      return true;
    }
    return Close();
  }
  bool start_array(std::size_t) override {
    ++depth_;
    if (mode_ == Mode::kVocab) return Fail(VocabWhere());
    if (mode_ == Mode::kMerges) {
      if (depth_ != merges_depth_ + 1)
        return Fail(MergeWhere() + ": must be \"a b\" or [\"a\", \"b\"]");
      pair_.clear();
      return true;
    }
    if (IsModelChild("merges")) {
      mode_ = Mode::kMerges;
      merges_depth_ = depth_;
      out_.has_merges = true;
      return true;
    }
    return Open(json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::kMerges) {
      if (depth_ == merges_depth_) {
        mode_ = Mode::kTree;
        --depth_;
        return true;
      }
      --depth_;
      if (pair_.size() != 2) return Fail(MergeWhere() + ": must be \"a b\" or [\"a\", \"b\"]");
      out_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      return true;
    }
    --depth_;
    return Close();
  }
  bool key(string_t& k) override {
    if (mode_ == Mode::kVocab) {
      vocab_key_ = std::move(k);
      return true;
    }
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception&) override {
    return Fail(source_ + ": not valid JSON (at byte " + std::to_string(position) +
                "; is it a Hugging Face tokenizer.json?)");
  }

  const std::string& error() const { return error_; }

 private:
  enum class Mode { kTree, kVocab, kMerges };

  bool Fail(const std::string& what) {
    if (error_.empty()) error_ = what;
    return false;
  }
  std::string VocabWhere() const {
    return source_ + ": model.vocab[\"" + vocab_key_ + "\"]: id must be a non-negative integer";
  }
  std::string MergeWhere() const {
    return source_ + ": model.merges[" + std::to_string(out_.merges.size()) + "]";
  }
  // The next container is the value of key `name` in the top-level "model" object.
  bool IsModelChild(const char* name) const {
    return depth_ == 3 && stack_.size() == 2 && key_ == name && path_model_;
  }
  bool VocabId(int64_t id) {
    if (id < 0 || id > INT32_MAX) return Fail(VocabWhere());
    out_.vocab.emplace_back(std::move(vocab_key_), id);
    return true;
  }
  // A scalar value: in the tree (vocab and merges take only their own kinds).
  bool Value(json v) {
    if (mode_ == Mode::kVocab) return Fail(VocabWhere());
    if (mode_ == Mode::kMerges) return Fail(MergeWhere() + ": must be \"a b\" or [\"a\", \"b\"]");
    Place(std::move(v));
    return true;
  }
  json* Place(json v) {
    if (stack_.empty()) {
      out_.rest = std::move(v);
      return &out_.rest;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  bool Open(json container) {
    // Whether this container is the top-level "model" object (its vocab/merges are special).
    const bool model = stack_.size() == 1 && key_ == "model" && container.is_object();
    stack_.push_back(Place(std::move(container)));
    if (stack_.size() == 2) path_model_ = model;
    return true;
  }
  bool Close() {
    stack_.pop_back();
    if (stack_.size() < 2) path_model_ = false;
    return true;
  }

  TokenizerJson& out_;
  const std::string& source_;
  std::vector<json*> stack_;
  std::string key_, vocab_key_;
  std::vector<std::string> pair_;
  Mode mode_ = Mode::kTree;
  int depth_ = 0, merges_depth_ = 0;
  bool path_model_ = false;
  std::string error_;
};

}  // namespace

TokenizerJson ReadTokenizerJson(std::string_view text, const std::string& source) {
  TokenizerJson out;
  Reader reader(out, source);
  const bool ok = json::sax_parse(text, &reader, json::input_format_t::json, /*strict=*/true);
  if (!ok) {
    throw InvalidInput(reader.error().empty() ? source + ": not valid JSON" : reader.error());
  }
  return out;
}

}  // namespace lockstep::tokenizer
