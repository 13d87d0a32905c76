// The chat-template evaluator: scopes, statements, operators, and the filters, tests, methods and
// globals chat templates use. Everything outside them is an InvalidInput naming the construct.
#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "jinja.h"
#include "lockstep/common/error.h"
#include "unicode.h"

namespace lockstep::tokenizer::jinja {
namespace {

using K = Value::Kind;

constexpr const char* kSupportedFilters =
    "abs, capitalize, count, d, default, dictsort, first, float, indent, int, items, join, last, "
    "length, list, lower, map, reject, rejectattr, replace, reverse, safe, select, selectattr, "
    "sort, string, title, tojson, trim, unique, upper";
constexpr const char* kSupportedTests =
    "boolean, callable, defined, divisibleby, eq, equalto, even, false, float, integer, iterable, "
    "lower, mapping, none, number, odd, sameas, sequence, string, true, undefined, upper";
constexpr const char* kSupportedStringMethods =
    "capitalize, endswith, lower, lstrip, replace, rstrip, split, startswith, strip, title, upper";
constexpr const char* kSupportedDictMethods = "get, items, keys, values";

// Limits that keep a hostile template from exhausting the process.
constexpr int kMaxCallDepth = 64;
constexpr int64_t kMaxRange = 1'000'000;
constexpr size_t kMaxOutput = size_t{64} << 20;

// A builtin's complaint about its arguments; the call site adds where it is.
struct CallError {
  std::string message;
};

struct Scope {
  std::map<std::string, Value, std::less<>> vars;
  std::shared_ptr<Scope> parent;
  const Value* Lookup(std::string_view name) const {
    for (const Scope* s = this; s != nullptr; s = s->parent.get()) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
  void Set(const std::string& name, Value v) { vars[name] = std::move(v); }
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { kNormal, kBreak, kContinue };

// The argument `name` at `index` (positional) or by keyword, else `fallback`.
Value Arg(const CallArgs& args, size_t index, std::string_view name, Value fallback = Value()) {
  if (index < args.positional.size()) return args.positional[index];
  for (const auto& [k, v] : args.keyword) {
    if (k == name) return v;
  }
  return fallback;
}

void CheckArgs(const CallArgs& args, size_t max_positional,
               std::initializer_list<std::string_view> keywords, const std::string& what) {
  if (args.positional.size() > max_positional) {
    throw CallError{what + " takes at most " + std::to_string(max_positional) +
                    " argument(s), got " + std::to_string(args.positional.size())};
  }
  for (const auto& [k, v] : args.keyword) {
    if (std::find(keywords.begin(), keywords.end(), k) == keywords.end()) {
      throw CallError{what + " has no argument '" + k + "'"};
    }
  }
}

std::string RequireString(const Value& v, const std::string& what) {
  if (!v.is(K::kString)) throw CallError{what + " must be a string, got " + v.TypeName()};
  return v.str();
}

int64_t RequireInt(const Value& v, const std::string& what) {
  if (!v.is(K::kInt) && !v.is(K::kBool))
    throw CallError{what + " must be an integer, got " + v.TypeName()};
  return v.integer();
}

// ---- strings ----

std::string Strip(const std::string& s, const Value& chars, bool left, bool right) {
  const std::vector<char32_t> cps = CodePoints(s);
  std::vector<char32_t> set;
  const bool whitespace = chars.undefined() || chars.is(K::kNone);
  if (!whitespace) set = CodePoints(RequireString(chars, "strip's argument"));
  auto strip = [&](char32_t c) {
    return whitespace ? IsSpace(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t b = 0, e = cps.size();
  if (left) {
    while (b < e && strip(cps[b])) ++b;
  }
  if (right) {
    while (e > b && strip(cps[e - 1])) --e;
  }
  return FromCodePoints(cps, b, e);
}

bool IsCased(char32_t cp) {
  const auto c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

std::string CaseOne(char32_t cp, bool upper) {
  std::string one;
  AppendUtf8(one, cp);
  return upper ? Upper(one) : Lower(one);
}

// Python's str.title(): a cased character after a cased one is lowered, others raised.
std::string TitleMethod(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  for (char32_t cp : CodePoints(s)) {
    const bool cased = IsCased(cp);
    out += cased ? CaseOne(cp, !prev_cased) : CaseOne(cp, false);
    prev_cased = cased;
  }
  return out;
}

// Jinja's title filter: words start after runs of "-", whitespace, "(", "{", "[", "<".
std::string TitleFilter(const std::string& s) {
  std::string out;
  bool start = true;
  for (char32_t cp : CodePoints(s)) {
    const bool separator =
        cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || IsSpace(cp);
    if (separator) {
      AppendUtf8(out, cp);
      start = true;
    } else {
      out += CaseOne(cp, start);
      start = false;
    }
  }
  return out;
}

std::string Capitalize(const std::string& s) {
  const std::vector<char32_t> cps = CodePoints(s);
  if (cps.empty()) return s;
  return CaseOne(cps[0], true) + Lower(FromCodePoints(cps, 1, cps.size()));
}

Value Split(const std::string& s, const Value& sep_value, int64_t maxsplit) {
  Array parts;
  if (sep_value.undefined() || sep_value.is(K::kNone)) {
    const std::vector<char32_t> cps = CodePoints(s);
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && IsSpace(cps[i])) ++i;
      if (i >= cps.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
        size_t e = cps.size();
        while (e > i && IsSpace(cps[e - 1])) --e;
        parts.push_back(Value::Str(FromCodePoints(cps, i, e)));
        break;
      }
      size_t j = i;
      while (j < cps.size() && !IsSpace(cps[j])) ++j;
      parts.push_back(Value::Str(FromCodePoints(cps, i, j)));
      i = j;
    }
    return Value::List(std::move(parts));
  }
  const std::string sep = RequireString(sep_value, "split's separator");
  if (sep.empty()) throw CallError{"split: empty separator"};
  size_t start = 0;
  while (true) {
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) break;
    const size_t at = s.find(sep, start);
    if (at == std::string::npos) break;
    parts.push_back(Value::Str(s.substr(start, at - start)));
    start = at + sep.size();
  }
  parts.push_back(Value::Str(s.substr(start)));
  return Value::List(std::move(parts));
}

std::string Replace(const std::string& s, const std::string& from, const std::string& to,
                    int64_t count) {
  if (count == 0) return s;
  std::string out;
  int64_t done = 0;
  if (from.empty()) {
    // Python inserts `to` before every character and at the end.
    const std::vector<char32_t> cps = CodePoints(s);
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      if (i < cps.size()) AppendUtf8(out, cps[i]);
    }
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(from, start);
    if (at == std::string::npos) break;
    out.append(s, start, at - start);
    out += to;
    start = at + from.size();
    ++done;
  }
  out.append(s, start);
  return out;
}

bool StartsOrEndsWith(const std::string& s, const Value& pattern, bool start,
                      const std::string& what) {
  auto one = [&](const Value& p) {
    const std::string t = RequireString(p, what + "'s argument");
    if (t.size() > s.size()) return false;
    return start ? s.compare(0, t.size(), t) == 0
                 : s.compare(s.size() - t.size(), t.size(), t) == 0;
  };
  if (pattern.is(K::kArray)) {
    return std::any_of(pattern.array().begin(), pattern.array().end(), one);
  }
  return one(pattern);
}

// ---- comparisons ----

int Compare(const Value& a, const Value& b, bool case_sensitive) {
  if (a.numeric() && b.numeric()) {
    const double x = a.number(), y = b.number();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is(K::kString) && b.is(K::kString)) {
    const std::string x = case_sensitive ? a.str() : Lower(a.str());
    const std::string y = case_sensitive ? b.str() : Lower(b.str());
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is(K::kArray) && b.is(K::kArray)) {
    for (size_t i = 0; i < a.array().size() && i < b.array().size(); ++i) {
      if (int c = Compare(a.array()[i], b.array()[i], case_sensitive)) return c;
    }
    return a.array().size() < b.array().size() ? -1 : a.array().size() > b.array().size() ? 1 : 0;
  }
  throw CallError{"cannot compare " + a.TypeName() + " with " + b.TypeName()};
}

// The attribute `path` ("a.b", "0") of an item, for sort/map/selectattr.
Value Attribute(const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (v.is(K::kObject) || v.is(K::kNamespace)) {
      const Value* found = v.object().Find(part);
      v = found ? *found : Value();
    } else if (v.is(K::kArray) && !part.empty() &&
               std::all_of(part.begin(), part.end(), ::isdigit)) {
      const size_t i = std::stoul(part);
      v = i < v.array().size() ? v.array()[i] : Value();
    } else {
      return Value();
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return v;
}

Array Items(const Value& v, const std::string& what) {
  switch (v.kind()) {
    case K::kArray:
      return v.array();
    case K::kObject: {
      Array keys;
      for (const auto& [k, _] : v.object().items) keys.push_back(Value::Str(k));
      return keys;
    }
    case K::kString: {
      Array chars;
      for (char32_t cp : CodePoints(v.str())) {
        std::string c;
        AppendUtf8(c, cp);
        chars.push_back(Value::Str(std::move(c)));
      }
      return chars;
    }
    case K::kUndefined:
      return {};
    default:
      throw CallError{what + ": a " + v.TypeName() + " is not iterable"};
  }
}

Value PairsOf(const Object& o) {
  Array pairs;
  for (const auto& [k, v] : o.items) pairs.push_back(Value::List({Value::Str(k), v}));
  return Value::List(std::move(pairs));
}

class Renderer {
 public:
  explicit Renderer(const Program& program) : program_(program) {}

  std::string Run(const Value& context) {
    auto globals = std::make_shared<Scope>();
    globals->Set("range", Value::Function("range", Range));
    globals->Set("namespace", Value::Function("namespace", MakeNamespace));
    globals->Set(
        "raise_exception", Value::Function("raise_exception", [](const CallArgs& a) -> Value {
          throw CallError{"raise_exception: " +
                          (a.positional.empty() ? std::string() : ToString(a.positional[0]))};
        }));
    auto scope = std::make_shared<Scope>();
    scope->parent = globals;
    if (context.is(K::kObject)) {
      for (const auto& [k, v] : context.object().items) scope->Set(k, v);
    }
    std::string out;
    if (RenderBlock(program_.body, scope, out) != Flow::kNormal) {
      throw InvalidInput(program_.where + ": {% break %} or {% continue %} outside a loop");
    }
    return out;
  }

 private:
  [[noreturn]] void Fail(const Node& n, const std::string& what) const {
    throw InvalidInput(program_.Locate(n.pos) + ": " + what);
  }

  static Value Range(const CallArgs& a) {
    CheckArgs(a, 3, {}, "range");
    if (a.positional.empty()) throw CallError{"range expects at least 1 argument"};
    int64_t start = 0, stop = 0, step = 1;
    if (a.positional.size() == 1) {
      stop = RequireInt(a.positional[0], "range's stop");
    } else {
      start = RequireInt(a.positional[0], "range's start");
      stop = RequireInt(a.positional[1], "range's stop");
      if (a.positional.size() == 3) step = RequireInt(a.positional[2], "range's step");
    }
    if (step == 0) throw CallError{"range's step must not be zero"};
    Array out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (static_cast<int64_t>(out.size()) >= kMaxRange) {
        throw CallError{"range of more than " + std::to_string(kMaxRange) + " numbers"};
      }
      out.push_back(Value::Int(i));
    }
    return Value::List(std::move(out));
  }

  static Value MakeNamespace(const CallArgs& a) {
    if (a.positional.size() > 1) throw CallError{"namespace takes at most 1 positional argument"};
    Object o;
    if (!a.positional.empty()) {
      const Value& init = a.positional[0];
      if (init.is(K::kObject)) {
        o = init.object();
      } else {
        throw CallError{"namespace's argument must be a dict, got " + init.TypeName()};
      }
    }
    for (const auto& [k, v] : a.keyword) o.Set(k, v);
    return Value::Namespace(std::move(o));
  }

  void Append(std::string& out, const std::string& text, const Node& at) const {
    if (out.size() + text.size() > kMaxOutput) Fail(at, "the rendered text exceeds 64 MiB");
    out += text;
  }

  Flow RenderBlock(const std::vector<NodePtr>& body, const ScopePtr& scope, std::string& out) {
    for (const NodePtr& n : body) {
      const Flow f = RenderStatement(*n, scope, out);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  Flow RenderStatement(const Node& n, const ScopePtr& scope, std::string& out) {
    switch (n.kind) {
      case Node::Kind::kText:
        Append(out, n.literal.str(), n);
        return Flow::kNormal;
      case Node::Kind::kOutput:
        Append(out, ToString(Eval(*n.kids[0], scope)), n);
        return Flow::kNormal;
      case Node::Kind::kIf:
        return RenderBlock(Eval(*n.kids[0], scope).Truthy() ? n.body : n.alt, scope, out);
      case Node::Kind::kFor:
        RenderFor(n, scope, out);
        return Flow::kNormal;
      case Node::Kind::kSet: {
        Value v;
        if (n.kids[1]) {
          v = Eval(*n.kids[1], scope);
        } else {
          std::string captured;
          if (RenderBlock(n.body, scope, captured) != Flow::kNormal) {
            Fail(n, "{% break %} or {% continue %} inside {% set %}");
          }
          v = Value::Str(std::move(captured));
        }
        Assign(*n.kids[0], std::move(v), scope);
        return Flow::kNormal;
      }
      case Node::Kind::kMacro:
        DefineMacro(n, scope);
        return Flow::kNormal;
      case Node::Kind::kBreak:
        return Flow::kBreak;
      case Node::Kind::kContinue:
        return Flow::kContinue;
      default:
        Fail(n, "an expression where a statement was expected");
    }
  }

  void Assign(const Node& target, Value v, const ScopePtr& scope) {
    if (target.kind == Node::Kind::kName) {
      scope->Set(target.name, std::move(v));
    } else if (target.kind == Node::Kind::kTuple) {
      if (!v.is(K::kArray) || v.array().size() != target.kids.size()) {
        Fail(target, "cannot unpack a " + v.TypeName() + " into " +
                         std::to_string(target.kids.size()) + " names");
      }
      for (size_t i = 0; i < target.kids.size(); ++i) {
        if (target.kids[i]->kind != Node::Kind::kName)
          Fail(*target.kids[i], "can only unpack into names");
        scope->Set(target.kids[i]->name, v.array()[i]);
      }
    } else {
      const Value object = Eval(*target.kids[0], scope);
      if (!object.is(K::kNamespace)) {
        Fail(target,
             "cannot set an attribute of a " + object.TypeName() + " (only of a namespace())");
      }
      object.mutable_object().Set(target.kids[1]->literal.str(), std::move(v));
    }
  }

  void RenderFor(const Node& n, const ScopePtr& scope, std::string& out) {
    Array candidates;
    try {
      candidates = Items(Eval(*n.kids[1], scope), "for");
    } catch (const CallError& e) {
      Fail(*n.kids[1], e.message);
    }
    auto loop_scope = std::make_shared<Scope>();
    loop_scope->parent = scope;
    const Node& target = *n.kids[0];
    Array items;
    for (const Value& item : candidates) {
      if (n.kids[2]) {
        auto test_scope = std::make_shared<Scope>();
        test_scope->parent = loop_scope;
        Assign(target, item, test_scope);
        if (!Eval(*n.kids[2], test_scope).Truthy()) continue;
      } else if (target.kind == Node::Kind::kTuple) {
        if (!item.is(K::kArray) || item.array().size() != target.kids.size()) {
          Fail(target, "cannot unpack a " + item.TypeName() + " into " +
                           std::to_string(target.kids.size()) + " names");
        }
      }
      items.push_back(item);
    }
    const auto length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      Object loop;
      loop.Set("index", Value::Int(i + 1));
      loop.Set("index0", Value::Int(i));
      loop.Set("revindex", Value::Int(length - i));
      loop.Set("revindex0", Value::Int(length - i - 1));
      loop.Set("first", Value::Bool(i == 0));
      loop.Set("last", Value::Bool(i == length - 1));
      loop.Set("length", Value::Int(length));
      loop.Set("previtem", i > 0 ? items[i - 1] : Value());
      loop.Set("nextitem", i + 1 < length ? items[i + 1] : Value());
      loop_scope->Set("loop", Value::Dict(std::move(loop)));
      Assign(target, items[i], loop_scope);
      if (RenderBlock(n.body, loop_scope, out) == Flow::kBreak) break;
    }
    if (items.empty() && RenderBlock(n.alt, loop_scope, out) != Flow::kNormal) {
      Fail(n, "{% break %} or {% continue %} in a for loop's else block");
    }
  }

  void DefineMacro(const Node& n, const ScopePtr& scope) {
    const Node* node = &n;
    std::weak_ptr<Scope> weak = scope;
    scope->Set(n.name, Value::Function(n.name, [this, node, weak](const CallArgs& a) -> Value {
                 const ScopePtr defining = weak.lock();
                 if (!defining)
                   throw CallError{"macro '" + node->name + "' called after its scope ended"};
                 if (a.positional.size() > node->keywords.size()) {
                   throw CallError{"macro '" + node->name + "' takes at most " +
                                   std::to_string(node->keywords.size()) + " argument(s)"};
                 }
                 if (++depth_ > kMaxCallDepth) {
                   --depth_;
                   throw CallError{"macro calls nested more than " + std::to_string(kMaxCallDepth) +
                                   " deep"};
                 }
                 auto call_scope = std::make_shared<Scope>();
                 call_scope->parent = defining;
                 for (const auto& [k, v] : a.keyword) {
                   if (std::find(node->keywords.begin(), node->keywords.end(), k) ==
                       node->keywords.end()) {
                     --depth_;
                     throw CallError{"macro '" + node->name + "' has no parameter '" + k + "'"};
                   }
                 }
                 std::string out;
                 try {
                   for (size_t i = 0; i < node->keywords.size(); ++i) {
                     Value v = Arg(a, i, node->keywords[i]);
                     if (v.undefined() && node->kids[i]) v = Eval(*node->kids[i], call_scope);
                     call_scope->Set(node->keywords[i], std::move(v));
                   }
                   if (RenderBlock(node->body, call_scope, out) != Flow::kNormal) {
                     Fail(*node, "{% break %} or {% continue %} outside a loop in a macro");
                   }
                 } catch (...) {
                   --depth_;
                   throw;
                 }
                 --depth_;
                 return Value::Str(std::move(out));
               }));
  }

  Value Eval(const Node& n, const ScopePtr& scope) {
    switch (n.kind) {
      case Node::Kind::kLiteral:
        return n.literal;
      case Node::Kind::kName: {
        if (n.name == "true" || n.name == "True") return Value::Bool(true);
        if (n.name == "false" || n.name == "False") return Value::Bool(false);
        if (n.name == "none" || n.name == "None") return Value::None();
        const Value* v = scope->Lookup(n.name);
        return v ? *v : Value();
      }
      case Node::Kind::kList:
      case Node::Kind::kTuple: {
        Array a;
        for (const NodePtr& k : n.kids) a.push_back(Eval(*k, scope));
        return Value::List(std::move(a));
      }
      case Node::Kind::kDict: {
        Object o;
        for (size_t i = 0; i + 1 < n.kids.size(); i += 2) {
          const Value key = Eval(*n.kids[i], scope);
          if (!key.is(K::kString))
            Fail(*n.kids[i], "dict keys must be strings, got " + key.TypeName());
          o.Set(key.str(), Eval(*n.kids[i + 1], scope));
        }
        return Value::Dict(std::move(o));
      }
      case Node::Kind::kMember:
        return Member(n, Eval(*n.kids[0], scope), Eval(*n.kids[1], scope));
      case Node::Kind::kSlice:
        return Slice(n, scope);
      case Node::Kind::kCall:
        return Call(n, scope);
      case Node::Kind::kFilter: {
        const Value operand = Eval(*n.kids[0], scope);
        const CallArgs args = Arguments(n, scope);
        try {
          return Filter(n, operand, args, scope);
        } catch (const CallError& e) {
          Fail(n, "filter '" + n.name + "': " + e.message);
        }
      }
      case Node::Kind::kTest: {
        const Value operand = Eval(*n.kids[0], scope);
        const CallArgs args = Arguments(n, scope);
        try {
          return Value::Bool(Test(n, n.name, operand, args) != n.negate);
        } catch (const CallError& e) {
          Fail(n, "test '" + n.name + "': " + e.message);
        }
      }
      case Node::Kind::kUnary: {
        const Value v = Eval(*n.kids[0], scope);
        if (n.name == "not") return Value::Bool(!v.Truthy());
        if (!v.numeric()) Fail(n, "bad operand type for unary " + n.name + ": " + v.TypeName());
        if (n.name == "+") return v.is(K::kFloat) ? v : Value::Int(v.integer());
        return v.is(K::kFloat) ? Value::Float(-v.number()) : Value::Int(-v.integer());
      }
      case Node::Kind::kBinary:
        return Binary(n, scope);
      case Node::Kind::kTernary:
        return Eval(*n.kids[0], scope).Truthy() ? Eval(*n.kids[1], scope) : Eval(*n.kids[2], scope);
      case Node::Kind::kSelect:
        return Eval(*n.kids[1], scope).Truthy() ? Eval(*n.kids[0], scope) : Value();
      default:
        Fail(n, "a statement where an expression was expected");
    }
  }

  CallArgs Arguments(const Node& n, const ScopePtr& scope) {
    CallArgs a;
    for (size_t i = 1; i < n.kids.size(); ++i) {
      Value v = Eval(*n.kids[i], scope);
      if (n.keywords[i - 1].empty()) {
        a.positional.push_back(std::move(v));
      } else {
        a.keyword.emplace_back(n.keywords[i - 1], std::move(v));
      }
    }
    return a;
  }

  Value Member(const Node& n, const Value& object, const Value& key) {
    switch (object.kind()) {
      case K::kObject:
      case K::kNamespace: {
        if (!key.is(K::kString)) return Value();
        const Value* v = object.object().Find(key.str());
        return v ? *v : Value();
      }
      case K::kArray:
      case K::kString: {
        if (!key.is(K::kInt)) return Value();  // a method name: called by Call
        if (object.is(K::kArray)) {
          const auto size = static_cast<int64_t>(object.array().size());
          const int64_t i = key.integer() < 0 ? key.integer() + size : key.integer();
          return i >= 0 && i < size ? object.array()[static_cast<size_t>(i)] : Value();
        }
        const std::vector<char32_t> cps = CodePoints(object.str());
        const auto size = static_cast<int64_t>(cps.size());
        const int64_t i = key.integer() < 0 ? key.integer() + size : key.integer();
        if (i < 0 || i >= size) return Value();
        return Value::Str(FromCodePoints(cps, static_cast<size_t>(i), static_cast<size_t>(i) + 1));
      }
      case K::kUndefined:
      case K::kNone:
        return Value();
      default:
        (void)n;
        return Value();
    }
  }

  Value Slice(const Node& n, const ScopePtr& scope) {
    const Value object = Eval(*n.kids[0], scope);
    auto part = [&](size_t i) -> std::optional<int64_t> {
      if (!n.kids[i]) return std::nullopt;
      const Value v = Eval(*n.kids[i], scope);
      if (v.is(K::kNone) || v.undefined()) return std::nullopt;
      if (!v.is(K::kInt)) Fail(*n.kids[i], "slice indices must be integers, got " + v.TypeName());
      return v.integer();
    };
    const auto start = part(1), stop = part(2), step_opt = part(3);
    const int64_t step = step_opt.value_or(1);
    if (step == 0) Fail(n, "slice step cannot be zero");
    std::vector<char32_t> cps;
    int64_t len = 0;
    if (object.is(K::kArray)) {
      len = static_cast<int64_t>(object.array().size());
    } else if (object.is(K::kString)) {
      cps = CodePoints(object.str());
      len = static_cast<int64_t>(cps.size());
    } else {
      Fail(n, "cannot slice a " + object.TypeName());
    }
    // Python's slice.indices.
    auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
      if (!v) return fallback;
      int64_t x = *v;
      if (x < 0) x += len;
      if (step > 0) return std::clamp<int64_t>(x, 0, len);
      return std::clamp<int64_t>(x, -1, len - 1);
    };
    const int64_t b = clamp(start, step > 0 ? 0 : len - 1);
    const int64_t e = clamp(stop, step > 0 ? len : -1);
    Array items;
    std::string text;
    for (int64_t i = b; step > 0 ? i < e : i > e; i += step) {
      if (object.is(K::kArray)) {
        items.push_back(object.array()[static_cast<size_t>(i)]);
      } else {
        AppendUtf8(text, cps[static_cast<size_t>(i)]);
      }
    }
    return object.is(K::kArray) ? Value::List(std::move(items)) : Value::Str(std::move(text));
  }

  Value Call(const Node& n, const ScopePtr& scope) {
    const Node& callee = *n.kids[0];
    const CallArgs args = Arguments(n, scope);
    try {
      if (callee.kind == Node::Kind::kMember && callee.kids[1]->kind == Node::Kind::kLiteral &&
          callee.kids[1]->literal.is(K::kString)) {
        const Value object = Eval(*callee.kids[0], scope);
        const std::string& name = callee.kids[1]->literal.str();
        if (object.is(K::kObject) || object.is(K::kNamespace)) {
          const Value* member = object.object().Find(name);
          if (member != nullptr && member->is(K::kCallable)) return member->callable().call(args);
        }
        return Method(callee, object, name, args);
      }
      const Value fn = Eval(callee, scope);
      if (!fn.is(K::kCallable)) {
        if (callee.kind == Node::Kind::kName && fn.undefined()) {
          Fail(callee, "unsupported function '" + callee.name +
                           "' (supported: namespace, range, raise_exception, macros)");
        }
        Fail(callee, "a " + fn.TypeName() + " is not callable");
      }
      return fn.callable().call(args);
    } catch (const CallError& e) {
      Fail(n, e.message);
    }
  }

  Value Method(const Node& at, const Value& object, const std::string& name, const CallArgs& a) {
    if (object.is(K::kString)) {
      const std::string& s = object.str();
      const std::string what = "str." + name + "()";
      if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
        CheckArgs(a, 0, {}, what);
        if (name == "upper") return Value::Str(Upper(s));
        if (name == "lower") return Value::Str(Lower(s));
        if (name == "title") return Value::Str(TitleMethod(s));
        return Value::Str(Capitalize(s));
      }
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        CheckArgs(a, 1, {}, what);
        return Value::Str(Strip(s, Arg(a, 0, ""), name != "rstrip", name != "lstrip"));
      }
      if (name == "startswith" || name == "endswith") {
        CheckArgs(a, 1, {}, what);
        if (a.positional.empty()) throw CallError{what + " takes 1 argument"};
        return Value::Bool(StartsOrEndsWith(s, a.positional[0], name == "startswith", what));
      }
      if (name == "split") {
        CheckArgs(a, 2, {"sep", "maxsplit"}, what);
        return Split(s, Arg(a, 0, "sep"),
                     RequireInt(Arg(a, 1, "maxsplit", Value::Int(-1)), "maxsplit"));
      }
      if (name == "replace") {
        CheckArgs(a, 3, {"count"}, what);
        if (a.positional.size() < 2) throw CallError{what + " takes 2 or 3 arguments"};
        return Value::Str(Replace(s, RequireString(a.positional[0], "replace's old"),
                                  RequireString(a.positional[1], "replace's new"),
                                  RequireInt(Arg(a, 2, "count", Value::Int(-1)), "count")));
      }
      Fail(at, "unsupported method '" + name + "' of a str (supported: " + kSupportedStringMethods +
                   ")");
    }
    if (object.is(K::kObject)) {
      const std::string what = "dict." + name + "()";
      if (name == "get") {
        CheckArgs(a, 2, {}, what);
        if (a.positional.empty()) throw CallError{what + " takes 1 or 2 arguments"};
        const Value& key = a.positional[0];
        const Value* v = key.is(K::kString) ? object.object().Find(key.str()) : nullptr;
        return v ? *v : a.positional.size() > 1 ? a.positional[1] : Value::None();
      }
      if (name == "items") {
        CheckArgs(a, 0, {}, what);
        return PairsOf(object.object());
      }
      if (name == "keys" || name == "values") {
        CheckArgs(a, 0, {}, what);
        Array out;
        for (const auto& [k, v] : object.object().items)
          out.push_back(name == "keys" ? Value::Str(k) : v);
        return Value::List(std::move(out));
      }
      Fail(at, "unsupported method '" + name + "' of a dict (supported: " + kSupportedDictMethods +
                   ")");
    }
    if (object.undefined()) Fail(at, "'" + name + "' of an undefined value is not callable");
    Fail(at, "unsupported method '" + name + "' of a " + object.TypeName());
  }

  Value Binary(const Node& n, const ScopePtr& scope) {
    const std::string& op = n.name;
    const Value a = Eval(*n.kids[0], scope);
    if (op == "and") return a.Truthy() ? Eval(*n.kids[1], scope) : a;
    if (op == "or") return a.Truthy() ? a : Eval(*n.kids[1], scope);
    const Value b = Eval(*n.kids[1], scope);
    if (op == "==") return Value::Bool(Equal(a, b));
    if (op == "!=") return Value::Bool(!Equal(a, b));
    if (op == "~") return Value::Str(ToString(a) + ToString(b));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.is(K::kString)) {
        if (!a.is(K::kString))
          Fail(n, "'in <string>' requires a string on the left, got " + a.TypeName());
        found = b.str().find(a.str()) != std::string::npos;
      } else if (b.is(K::kArray)) {
        found = std::any_of(b.array().begin(), b.array().end(),
                            [&](const Value& x) { return Equal(a, x); });
      } else if (b.is(K::kObject)) {
        found = a.is(K::kString) && b.object().Find(a.str()) != nullptr;
      } else if (!b.undefined()) {
        Fail(n, "'in' needs a string, list or dict on the right, got " + b.TypeName());
      }
      return Value::Bool(found == (op == "in"));
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c = 0;
      try {
        c = Compare(a, b, /*case_sensitive=*/true);
      } catch (const CallError& e) {
        Fail(n, "'" + op + "': " + e.message);
      }
      if (op == "<") return Value::Bool(c < 0);
      if (op == ">") return Value::Bool(c > 0);
      if (op == "<=") return Value::Bool(c <= 0);
      return Value::Bool(c >= 0);
    }
    if (a.numeric() && b.numeric()) return Arithmetic(n, a, b);
    if (op == "+") {
      if (a.is(K::kArray) && b.is(K::kArray)) {
        Array out = a.array();
        out.insert(out.end(), b.array().begin(), b.array().end());
        return Value::List(std::move(out));
      }
      if ((a.is(K::kString) || b.is(K::kString)) && !a.undefined() && !b.undefined()) {
        return Value::Str(ToString(a) + ToString(b));
      }
    }
    if (op == "*" && (a.is(K::kString) || a.is(K::kArray)) && b.is(K::kInt)) {
      if (a.is(K::kString) &&
          static_cast<double>(a.str().size()) * std::max<int64_t>(b.integer(), 0) > kMaxOutput) {
        Fail(n, "the repeated string exceeds 64 MiB");
      }
      std::string s;
      Array items;
      for (int64_t i = 0; i < b.integer(); ++i) {
        if (a.is(K::kString)) {
          s += a.str();
        } else {
          items.insert(items.end(), a.array().begin(), a.array().end());
          if (items.size() > static_cast<size_t>(kMaxRange))
            Fail(n, "the repeated list is too long");
        }
      }
      return a.is(K::kString) ? Value::Str(std::move(s)) : Value::List(std::move(items));
    }
    Fail(n, "unsupported operand types for " + op + ": " + a.TypeName() + " and " + b.TypeName());
  }

  Value Arithmetic(const Node& n, const Value& a, const Value& b) {
    const std::string& op = n.name;
    const bool floats = a.is(K::kFloat) || b.is(K::kFloat);
    if (op == "/") {
      if (b.number() == 0.0) Fail(n, "division by zero");
      return Value::Float(a.number() / b.number());
    }
    if (op == "**") {
      if (!floats && b.integer() >= 0) {
        const double r = std::pow(a.number(), b.number());
        if (std::abs(r) > 9.0e18) Fail(n, "the power is too large");
        int64_t x = 1;
        for (int64_t i = 0; i < b.integer(); ++i) x *= a.integer();
        return Value::Int(x);
      }
      return Value::Float(std::pow(a.number(), b.number()));
    }
    if (floats) {
      const double x = a.number(), y = b.number();
      if (op == "+") return Value::Float(x + y);
      if (op == "-") return Value::Float(x - y);
      if (op == "*") return Value::Float(x * y);
      if (y == 0.0) Fail(n, "division by zero");
      if (op == "//") return Value::Float(std::floor(x / y));
      if (op == "%") {
        double r = std::fmod(x, y);
        if (r != 0.0 && ((r < 0) != (y < 0))) r += y;
        return Value::Float(r);
      }
    } else {
      const int64_t x = a.integer(), y = b.integer();
      if (op == "+") return Value::Int(x + y);
      if (op == "-") return Value::Int(x - y);
      if (op == "*") return Value::Int(x * y);
      if (y == 0) Fail(n, "division by zero");
      // Python floors toward negative infinity.
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {
        --q;
        r += y;
      }
      if (op == "//") return Value::Int(q);
      if (op == "%") return Value::Int(r);
    }
    Fail(n, "unsupported operator " + op);
  }

  bool Test(const Node& at, const std::string& name, const Value& v, const CallArgs& a) {
    if (name == "defined") return !v.undefined();
    if (name == "undefined") return v.undefined();
    if (name == "none") return v.is(K::kNone);
    if (name == "string") return v.is(K::kString);
    if (name == "number") return v.is(K::kInt) || v.is(K::kFloat);
    if (name == "integer") return v.is(K::kInt);
    if (name == "float") return v.is(K::kFloat);
    if (name == "boolean") return v.is(K::kBool);
    if (name == "true") return v.is(K::kBool) && v.boolean();
    if (name == "false") return v.is(K::kBool) && !v.boolean();
    if (name == "mapping") return v.is(K::kObject);
    if (name == "iterable") return v.is(K::kArray) || v.is(K::kString) || v.is(K::kObject);
    if (name == "sequence") return v.is(K::kArray) || v.is(K::kString) || v.is(K::kObject);
    if (name == "callable") return v.is(K::kCallable);
    if (name == "lower") return v.is(K::kString) && Lower(v.str()) == v.str();
    if (name == "upper") return v.is(K::kString) && Upper(v.str()) == v.str();
    if (name == "odd" || name == "even") {
      const int64_t i = RequireInt(v, "the operand");
      return (((i % 2) + 2) % 2 == 1) == (name == "odd");
    }
    if (name == "divisibleby") {
      const int64_t d = RequireInt(Arg(a, 0, "num"), "divisibleby's argument");
      if (d == 0) throw CallError{"division by zero"};
      return RequireInt(v, "the operand") % d == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return Equal(v, Arg(a, 0, "b"));
    if (name == "sameas") {
      const Value other = Arg(a, 0, "other");
      if (v.kind() != other.kind()) return false;
      if (v.is(K::kNone) || v.undefined()) return true;
      if (v.is(K::kBool)) return v.boolean() == other.boolean();
      return Equal(v, other);
    }
    Fail(at, "unsupported test '" + name + "' (supported: " + kSupportedTests + ")");
  }

  Value Filter(const Node& at, const Value& v, const CallArgs& a, const ScopePtr& scope) {
    return ApplyFilter(at, at.name, v, a, scope);
  }

  Value ApplyFilter(const Node& at, const std::string& name, const Value& v, const CallArgs& a,
                    const ScopePtr& scope) {
    if (name == "safe") return v;
    if (name == "tojson") {
      CheckArgs(a, 1, {"indent", "ensure_ascii", "separators", "sort_keys"}, "tojson");
      JsonOptions o;
      const Value indent = Arg(a, 0, "indent");
      if (!indent.undefined() && !indent.is(K::kNone)) {
        o.indent = static_cast<int>(std::clamp<int64_t>(RequireInt(indent, "indent"), 0, 64));
        o.item_separator = ",";
      }
      o.ensure_ascii = Arg(a, 99, "ensure_ascii", Value::Bool(false)).Truthy();
      o.sort_keys = Arg(a, 99, "sort_keys", Value::Bool(false)).Truthy();
      const Value separators = Arg(a, 99, "separators");
      if (separators.is(K::kArray)) {
        if (separators.array().size() != 2) throw CallError{"separators must be (item, key)"};
        o.item_separator = RequireString(separators.array()[0], "the item separator");
        o.key_separator = RequireString(separators.array()[1], "the key separator");
      }
      return Value::Str(ToJson(v, o));
    }
    if (name == "length" || name == "count") {
      CheckArgs(a, 0, {}, name);
      switch (v.kind()) {
        case K::kString:
          return Value::Int(static_cast<int64_t>(CodePoints(v.str()).size()));
        case K::kArray:
          return Value::Int(static_cast<int64_t>(v.array().size()));
        case K::kObject:
        case K::kNamespace:
          return Value::Int(static_cast<int64_t>(v.object().items.size()));
        case K::kUndefined:
          return Value::Int(0);
        default:
          throw CallError{"a " + v.TypeName() + " has no length"};
      }
    }
    if (name == "default" || name == "d") {
      CheckArgs(a, 2, {"default_value", "boolean"}, name);
      const Value fallback = Arg(a, 0, "default_value", Value::Str(""));
      const bool boolean = Arg(a, 1, "boolean", Value::Bool(false)).Truthy();
      return v.undefined() || (boolean && !v.Truthy()) ? fallback : v;
    }
    if (name == "string") return Value::Str(ToString(v));
    if (name == "list") return Value::List(Items(v, "list"));
    if (name == "first" || name == "last") {
      const Array items = Items(v, name);
      if (items.empty()) return Value();
      return name == "first" ? items.front() : items.back();
    }
    if (name == "reverse") {
      if (v.is(K::kString)) {
        std::vector<char32_t> cps = CodePoints(v.str());
        std::reverse(cps.begin(), cps.end());
        return Value::Str(FromCodePoints(cps, 0, cps.size()));
      }
      Array items = Items(v, name);
      std::reverse(items.begin(), items.end());
      return Value::List(std::move(items));
    }
    if (name == "join") {
      CheckArgs(a, 2, {"d", "attribute"}, name);
      const std::string sep = RequireString(Arg(a, 0, "d", Value::Str("")), "join's separator");
      const Value attribute = Arg(a, 1, "attribute");
      std::string out;
      bool first = true;
      for (const Value& item : Items(v, name)) {
        if (!first) out += sep;
        first = false;
        out += ToString(attribute.undefined() ? item : Attribute(item, ToString(attribute)));
      }
      return Value::Str(std::move(out));
    }
    if (name == "sort" || name == "unique") {
      const bool sort = name == "sort";
      if (sort) {
        CheckArgs(a, 3, {"reverse", "case_sensitive", "attribute"}, name);
      } else {
        CheckArgs(a, 2, {"case_sensitive", "attribute"}, name);
      }
      const bool reverse = sort && Arg(a, 0, "reverse", Value::Bool(false)).Truthy();
      const bool case_sensitive =
          Arg(a, sort ? 1 : 0, "case_sensitive", Value::Bool(false)).Truthy();
      const Value attribute = Arg(a, sort ? 2 : 1, "attribute");
      auto key = [&](const Value& item) {
        return attribute.undefined() || attribute.is(K::kNone)
                   ? item
                   : Attribute(item, ToString(attribute));
      };
      Array items = Items(v, name);
      if (sort) {
        std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
          const int c = Compare(key(x), key(y), case_sensitive);
          return reverse ? c > 0 : c < 0;
        });
        return Value::List(std::move(items));
      }
      Array out;
      std::vector<Value> seen;
      for (const Value& item : items) {
        Value k = key(item);
        if (!case_sensitive && k.is(K::kString)) k = Value::Str(Lower(k.str()));
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equal(s, k); }))
          continue;
        seen.push_back(k);
        out.push_back(item);
      }
      return Value::List(std::move(out));
    }
    if (name == "dictsort") {
      CheckArgs(a, 3, {"case_sensitive", "by", "reverse"}, name);
      if (!v.is(K::kObject)) throw CallError{"dictsort needs a dict, got " + v.TypeName()};
      const bool case_sensitive = Arg(a, 0, "case_sensitive", Value::Bool(false)).Truthy();
      const std::string by = RequireString(Arg(a, 1, "by", Value::Str("key")), "by");
      if (by != "key" && by != "value") throw CallError{"by must be 'key' or 'value'"};
      const bool reverse = Arg(a, 2, "reverse", Value::Bool(false)).Truthy();
      Array pairs = PairsOf(v.object()).array();
      const size_t index = by == "key" ? 0 : 1;
      std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& x, const Value& y) {
        const int c = Compare(x.array()[index], y.array()[index], case_sensitive);
        return reverse ? c > 0 : c < 0;
      });
      return Value::List(std::move(pairs));
    }
    if (name == "items") {
      CheckArgs(a, 0, {}, name);
      if (v.undefined()) return Value::List({});
      if (!v.is(K::kObject)) throw CallError{"items needs a dict, got " + v.TypeName()};
      return PairsOf(v.object());
    }
    if (name == "upper" || name == "lower" || name == "capitalize" || name == "title" ||
        name == "trim") {
      CheckArgs(a, name == "trim" ? 1 : 0, {"chars"}, name);
      const std::string s = ToString(v);
      if (name == "upper") return Value::Str(Upper(s));
      if (name == "lower") return Value::Str(Lower(s));
      if (name == "capitalize") return Value::Str(Capitalize(s));
      if (name == "title") return Value::Str(TitleFilter(s));
      return Value::Str(Strip(s, Arg(a, 0, "chars"), true, true));
    }
    if (name == "replace") {
      CheckArgs(a, 3, {"old", "new", "count"}, name);
      return Value::Str(Replace(ToString(v), RequireString(Arg(a, 0, "old"), "replace's old"),
                                RequireString(Arg(a, 1, "new"), "replace's new"),
                                RequireInt(Arg(a, 2, "count", Value::Int(-1)), "count")));
    }
    if (name == "indent") {
      CheckArgs(a, 3, {"width", "first", "blank"}, name);
      const Value width = Arg(a, 0, "width", Value::Int(4));
      const std::string pad =
          width.is(K::kString)
              ? width.str()
              : std::string(
                    static_cast<size_t>(std::clamp<int64_t>(RequireInt(width, "width"), 0, 1024)),
                    ' ');
      const bool first = Arg(a, 1, "first", Value::Bool(false)).Truthy();
      const bool blank = Arg(a, 2, "blank", Value::Bool(false)).Truthy();
      const Value lines_value = Split(ToString(v), Value::Str("\n"), -1);
      std::string out;
      const Array& lines = lines_value.array();
      for (size_t i = 0; i < lines.size(); ++i) {
        if (i > 0) out += '\n';
        const std::string& line = lines[i].str();
        const bool indent = (i > 0 || first) && (blank || !line.empty());
        out += (indent ? pad : "") + line;
      }
      return Value::Str(std::move(out));
    }
    if (name == "int") {
      CheckArgs(a, 2, {"default", "base"}, name);
      const Value fallback = Arg(a, 0, "default", Value::Int(0));
      if (v.is(K::kFloat)) return Value::Int(static_cast<int64_t>(std::trunc(v.number())));
      if (v.numeric()) return Value::Int(v.integer());
      if (v.is(K::kString)) {
        try {
          size_t used = 0;
          const std::string t = Strip(v.str(), Value(), true, true);
          const int64_t i = std::stoll(t, &used, 10);
          if (used == t.size()) return Value::Int(i);
          const double d = std::stod(t, &used);
          if (used == t.size()) return Value::Int(static_cast<int64_t>(std::trunc(d)));
        } catch (const std::exception&) {
        }
      }
      return fallback;
    }
    if (name == "float") {
      CheckArgs(a, 1, {"default"}, name);
      const Value fallback = Arg(a, 0, "default", Value::Float(0.0));
      if (v.numeric()) return Value::Float(v.number());
      if (v.is(K::kString)) {
        try {
          size_t used = 0;
          const std::string t = Strip(v.str(), Value(), true, true);
          const double d = std::stod(t, &used);
          if (used == t.size()) return Value::Float(d);
        } catch (const std::exception&) {
        }
      }
      return fallback;
    }
    if (name == "abs") {
      if (v.is(K::kFloat)) return Value::Float(std::abs(v.number()));
      if (v.numeric()) return Value::Int(std::abs(v.integer()));
      throw CallError{"bad operand type for abs(): " + v.TypeName()};
    }
    if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
      const bool attr = name.ends_with("attr");
      const bool keep = name.starts_with("select");
      const size_t first = attr ? 1 : 0;
      if (attr && a.positional.empty()) throw CallError{name + " needs an attribute name"};
      const std::string attribute = attr ? RequireString(a.positional[0], "the attribute") : "";
      Array out;
      for (const Value& item : Items(v, name)) {
        const Value subject = attr ? Attribute(item, attribute) : item;
        bool result;
        if (a.positional.size() > first) {
          CallArgs rest;
          rest.positional.assign(a.positional.begin() + static_cast<ptrdiff_t>(first) + 1,
                                 a.positional.end());
          result = Test(at, RequireString(a.positional[first], "the test name"), subject, rest);
        } else {
          result = subject.Truthy();
        }
        if (result == keep) out.push_back(item);
      }
      return Value::List(std::move(out));
    }
    if (name == "map") {
      Array out;
      const Value attribute = Arg(a, 99, "attribute");
      if (!attribute.undefined()) {
        const Value fallback = Arg(a, 99, "default");
        for (const Value& item : Items(v, name)) {
          Value x = Attribute(item, ToString(attribute));
          out.push_back(x.undefined() ? fallback : x);
        }
        return Value::List(std::move(out));
      }
      if (a.positional.empty()) throw CallError{"map needs a filter name or attribute="};
      const std::string filter = RequireString(a.positional[0], "the filter name");
      CallArgs rest;
      rest.positional.assign(a.positional.begin() + 1, a.positional.end());
      rest.keyword = a.keyword;
      for (const Value& item : Items(v, name))
        out.push_back(ApplyFilter(at, filter, item, rest, scope));
      return Value::List(std::move(out));
    }
    Fail(at, "unsupported filter '" + name + "' (supported: " + kSupportedFilters + ")");
  }

  const Program& program_;
  int depth_ = 0;
};

}  // namespace

std::string Render(const Program& program, const Value& context) {
  return Renderer(program).Run(context);
}

}  // namespace lockstep::tokenizer::jinja
