#include "yaml_tree.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <istream>
#include <optional>
#include <streambuf>
#include <utility>

#include "lockstep/common/error.h"

namespace lockstep::topology::internal {
namespace {

// An istream source over caller-owned bytes, so a 2 MB file is not copied again.
class ViewBuf : public std::streambuf {
 public:
  explicit ViewBuf(std::string_view text) {
    // std::streambuf wants char*; the get area is only ever read.
    char* begin = const_cast<char*>(text.data());
    setg(begin, begin, begin + text.size());
  }
};

class TreeBuilder : public YAML::EventHandler {
 public:
  std::optional<YamlNode> TakeRoot() { return std::move(root_); }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    YamlNode n;
    n.line = LineOf(mark);
    // yaml-cpp marks an empty map value at the next token; the key's line is the useful one.
    if (!stack_.empty() && stack_.back().is_map() && stack_.back().items.size() % 2 == 1) {
      n.line = stack_.back().items.back().line;
    }
    Add(std::move(n), anchor);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    YamlNode n;
    if (anchor >= 1 && anchor <= anchored_.size()) n = anchored_[anchor - 1];
    // A problem inside the copy is reported where the alias uses it.
    SetLines(n, LineOf(mark));
    Add(std::move(n), 0);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                const std::string& value) override {
    YamlNode n;
    n.kind = YamlNode::Kind::kScalar;
    n.line = LineOf(mark);
    n.text = value;
    Add(std::move(n), anchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    Open(YamlNode::Kind::kSequence, mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    Open(YamlNode::Kind::kMap, mark, anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  static int LineOf(const YAML::Mark& mark) { return mark.is_null() ? 0 : mark.line + 1; }

  static void SetLines(YamlNode& n, int line) {
    n.line = line;
    for (YamlNode& item : n.items) SetLines(item, line);
  }

  void Open(YamlNode::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor) {
    YamlNode n;
    n.kind = kind;
    n.line = LineOf(mark);
    // Most maps in a topology file are chip and link lines of 2-3 fields: one allocation.
    if (kind == YamlNode::Kind::kMap) n.items.reserve(6);
    stack_.push_back(std::move(n));
    open_anchors_.push_back(anchor);
  }

  void Close() {
    YamlNode n = std::move(stack_.back());
    stack_.pop_back();
    const YAML::anchor_t anchor = open_anchors_.back();
    open_anchors_.pop_back();
    Add(std::move(n), anchor);
  }

  void Add(YamlNode n, YAML::anchor_t anchor) {
    if (anchor != 0) {
      if (anchored_.size() < anchor) anchored_.resize(anchor);
      anchored_[anchor - 1] = n;
    }
    if (stack_.empty()) {
      root_ = std::move(n);
    } else {
      stack_.back().items.push_back(std::move(n));
    }
  }

  std::vector<YamlNode> stack_;
  std::vector<YAML::anchor_t> open_anchors_;
  std::vector<YamlNode> anchored_;  // anchor id - 1 -> node (yaml-cpp numbers anchors from 1)
  std::optional<YamlNode> root_;
};

}  // namespace

std::string_view KindName(YamlNode::Kind kind) {
  switch (kind) {
    case YamlNode::Kind::kNull:
      return "nothing";
    case YamlNode::Kind::kScalar:
      return "a scalar";
    case YamlNode::Kind::kMap:
      return "a mapping";
    case YamlNode::Kind::kSequence:
      return "a list";
  }
  return "?";
}

YamlNode ParseYamlTree(std::string_view text, const std::string& source) {
  ViewBuf buf(text);
  std::istream in(&buf);
  TreeBuilder builder;
  try {
    YAML::Parser parser(in);
    if (!parser.HandleNextDocument(builder)) {
      YamlNode empty;
      empty.line = 1;
      return empty;
    }
    TreeBuilder second;
    if (parser.HandleNextDocument(second)) {
      std::optional<YamlNode> extra = second.TakeRoot();
      throw InvalidInput(source + ":" + std::to_string(extra ? extra->line : 1) +
                         ": YAML syntax error: a topology file holds one YAML document, found a "
                         "second one (remove the '---')");
    }
  } catch (const YAML::Exception& e) {
    const int line = e.mark.is_null() ? 1 : e.mark.line + 1;
    throw InvalidInput(source + ":" + std::to_string(line) + ": YAML syntax error: " + e.msg);
  }
  std::optional<YamlNode> root = builder.TakeRoot();
  if (!root) {
    YamlNode empty;
    empty.line = 1;
    return empty;
  }
  return std::move(*root);
}

}  // namespace lockstep::topology::internal
