// The Jinja subset chat templates are written in: values, the syntax tree, and the three stages
// (lexer, parser, evaluator) behind ChatTemplate (chat_template.h).
//
// Semantics are Python Jinja2's as Hugging Face transformers configures it (trim_blocks and
// lstrip_blocks on, a sandbox without list mutation, its own tojson), which the JavaScript
// reference (@huggingface/jinja) follows for everything the supported templates do. Where the two
// differ we follow Python, each pinned by a unit test: str.strip/lstrip/rstrip with characters,
// printing True/False/None, == between values of different types ("" == false is False), string
// lengths and indices in code points, % and // with negative operands. Lenient where Python would
// raise and the reference renders (an attribute of an undefined value is undefined, str + number
// concatenates). A construct outside the subset is an InvalidInput naming it and its line:column.
//
// Everything here is single-threaded: a Program is immutable once parsed and may be rendered from
// many threads at once (each Render has its own scopes).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lockstep::tokenizer::jinja {

class Value;
using Array = std::vector<Value>;

// A dict: insertion-ordered, as Python's dict and the JSON it came from.
struct Object {
  std::vector<std::pair<std::string, Value>> items;
  const Value* Find(std::string_view key) const;
  void Set(const std::string& key, Value value);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct Callable {
  std::string name;
  std::function<Value(const CallArgs&)> call;
};

class Value {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kArray,
    kObject,
    kNamespace,
    kCallable
  };

  Value() = default;
  static Value None() { return Value(Kind::kNone); }
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value Str(std::string s);
  static Value List(Array items);
  static Value Dict(Object object);
  static Value Namespace(Object object);
  static Value Function(std::string name, std::function<Value(const CallArgs&)> call);

  Kind kind() const { return kind_; }
  bool is(Kind k) const { return kind_ == k; }
  bool undefined() const { return kind_ == Kind::kUndefined; }
  bool numeric() const {
    return kind_ == Kind::kBool || kind_ == Kind::kInt || kind_ == Kind::kFloat;
  }
  bool boolean() const { return b_; }
  int64_t integer() const { return kind_ == Kind::kBool ? (b_ ? 1 : 0) : i_; }
  double number() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(integer()); }
  const std::string& str() const { return s_; }
  // Lists share their elements, dicts and namespaces their entries (a namespace is mutable).
  const Array& array() const { return *array_; }
  const Object& object() const { return *object_; }
  Object& mutable_object() const { return *object_; }
  const Callable& callable() const { return *callable_; }

  bool Truthy() const;
  // Python's type name for messages ("str", "int", "list", "dict", ...).
  std::string TypeName() const;

 private:
  explicit Value(Kind kind) : kind_(kind) {}
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0.0;
  std::string s_;
  std::shared_ptr<Array> array_;
  std::shared_ptr<Object> object_;
  std::shared_ptr<const Callable> callable_;
};

// str(v) as Python Jinja prints it ({{ v }}): undefined is "", None "None", True "True", floats
// by repr, lists and dicts by repr.
std::string ToString(const Value& v);
// Python repr (strings quoted), for the elements of printed lists and dicts.
std::string Repr(const Value& v);
// Python ==.
bool Equal(const Value& a, const Value& b);
// JSON as transformers' tojson writes it (json.dumps, ensure_ascii false unless asked).
struct JsonOptions {
  int indent = -1;  // < 0: on one line
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string item_separator = ", ", key_separator = ": ";
};
std::string ToJson(const Value& v, const JsonOptions& options);
// A JSON value (objects keep their key order).
Value FromJson(const nlohmann::ordered_json& j);

// Python's str.isspace() notion of whitespace, for strip/split/trim.
bool IsSpace(char32_t cp);
std::vector<char32_t> CodePoints(std::string_view s);
std::string FromCodePoints(const std::vector<char32_t>& cps, size_t begin, size_t end);
std::string Upper(std::string_view s);
std::string Lower(std::string_view s);

// ---- Syntax tree ----

struct Node;
using NodePtr = std::unique_ptr<Node>;

struct Node {
  enum class Kind {
    // Expressions.
    kLiteral,  // literal
    kName,     // name
    kMember,   // kids[0].name (dot: kids[1] is a string literal) or kids[0][kids[1]]
    kSlice,    // kids[0][kids[1]:kids[2]:kids[3]] (null kids: omitted)
    kCall,     // kids[0](kids[1..]) with keywords[i - 1] naming keyword arguments ("" positional)
    kFilter,   // kids[0] | name(kids[1..])
    kTest,     // kids[0] is [not] name
    kUnary,    // name kids[0] (name: "not", "-", "+")
    kBinary,   // kids[0] name kids[1]
    kTernary,  // kids[1] if kids[0] else kids[2]
    kSelect,   // kids[0] if kids[1] (undefined when false)
    kList,     // [kids...]
    kTuple,    // (kids...)
    kDict,     // {kids[0]: kids[1], ...}
    // Statements.
    kText,    // literal text
    kOutput,  // {{ kids[0] }}
    kIf,      // {% if kids[0] %} body {% else %} alt
    kFor,     // {% for kids[0] in kids[1] [if kids[2]] %} body {% else %} alt
    kSet,     // {% set kids[0] = kids[1] %} or {% set kids[0] %} body {% endset %}
    kMacro,   // {% macro name(kids: parameters, keywords: "" or the default's marker) %} body
    kBreak,
    kContinue,
  };
  Kind kind;
  size_t pos = 0;  // byte offset in the original template, for errors
  std::string name;
  Value literal;
  std::vector<NodePtr> kids;          // may hold nulls (omitted slice parts, no loop filter)
  std::vector<std::string> keywords;  // kCall/kFilter: keyword names; kMacro: parameter names
  bool negate = false;                // kTest: "is not"
  std::vector<NodePtr> body, alt;
};

struct Program {
  std::string where;   // names the template in errors ("tokenizer_config.json: chat_template")
  std::string source;  // the original text, for line:column
  std::vector<NodePtr> body;
  // "WHERE:LINE:COLUMN" of an offset in `source`.
  std::string Locate(size_t pos) const;
};

// ---- Stages ----

enum class TokenKind {
  kText,
  kNumber,
  kString,
  kName,
  kOpenStatement,
  kCloseStatement,
  kOpenExpression,
  kCloseExpression,
  kOpenParen,
  kCloseParen,
  kOpenBracket,
  kCloseBracket,
  kOpenBrace,
  kCloseBrace,
  kComma,
  kDot,
  kColon,
  kPipe,
  kEquals,
  kAdditive,
  kMultiplicative,
  kPower,
  kComparison,
  kUnary,
  kComment,
};
struct Token {
  TokenKind kind;
  std::string text;  // kString: the unescaped value; kText: the text
  size_t pos;        // offset in the original template
};

// The template's tokens after trim_blocks / lstrip_blocks and whitespace control ({%- -%}).
std::vector<Token> Lex(const Program& program);
// Parses `program.source` into `program.body`.
void Parse(Program& program);
// Renders with `context` (a dict of the template's variables). Throws InvalidInput for a
// construct outside the subset or a wrong operand, and for raise_exception(message) (the
// conversation does not fit the template): "WHERE:LINE:COLUMN: raise_exception: message".
std::string Render(const Program& program, const Value& context);

}  // namespace lockstep::tokenizer::jinja
