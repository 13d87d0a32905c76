// A small read-only YAML document tree with line numbers, built from yaml-cpp's event parser.
// Private to topology/.
//
// Why not YAML::Node: building yaml-cpp's node graph for a 145-rack topology file (2 MB,
// ~67,000 small mappings) takes ~1 s; its event parser takes ~0.2 s, and this tree keeps only
// what the topology reader needs (kind, 1-based line, scalar text, children). Keeping yaml-cpp
// types out of this header also keeps them out of every other file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep::topology::internal {

struct YamlNode {
  enum class Kind : uint8_t { kNull, kScalar, kMap, kSequence };

  Kind kind = Kind::kNull;
  // 1-based line where the node starts (a missing map value: the line of its key).
  int line = 0;
  // Scalar text, exactly as written after YAML unquoting (numbers are not converted).
  std::string text;
  // Sequence: its elements. Map: key, value, key, value, ... in file order (keys may repeat;
  // the reader rejects that).
  std::vector<YamlNode> items;

  bool is_null() const { return kind == Kind::kNull; }
  bool is_scalar() const { return kind == Kind::kScalar; }
  bool is_map() const { return kind == Kind::kMap; }
  bool is_sequence() const { return kind == Kind::kSequence; }
  // Number of map entries or sequence elements.
  size_t size() const { return kind == Kind::kMap ? items.size() / 2 : items.size(); }
};

// "nothing", "a scalar", "a mapping", "a list" — for "expected X, got Y" messages.
std::string_view KindName(YamlNode::Kind kind);

// Parses one YAML document. Returns a kNull node at line 1 for an empty text. Throws
// Error(kInvalidInput) "<source>:<line>: YAML syntax error: <what yaml-cpp says>" for malformed
// YAML, and for a text holding more than one document. Anchors and aliases are expanded.
YamlNode ParseYamlTree(std::string_view text, const std::string& source);

}  // namespace lockstep::topology::internal
