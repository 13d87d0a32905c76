// Chat-template values: construction, truthiness, printing (str, repr, JSON), equality, and the
// Unicode helpers of the string methods.
#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "jinja.h"
#include "lockstep/common/error.h"
#include "unicode.h"

namespace lockstep::tokenizer::jinja {

const Value* Object::Find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Object::Set(const std::string& key, Value value) {
  for (auto& [k, v] : items) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(key, std::move(value));
}

Value Value::Bool(bool b) {
  Value v(Kind::kBool);
  v.b_ = b;
  return v;
}
Value Value::Int(int64_t i) {
  Value v(Kind::kInt);
  v.i_ = i;
  return v;
}
Value Value::Float(double f) {
  Value v(Kind::kFloat);
  v.f_ = f;
  return v;
}
Value Value::Str(std::string s) {
  Value v(Kind::kString);
  v.s_ = std::move(s);
  return v;
}
Value Value::List(Array items) {
  Value v(Kind::kArray);
  v.array_ = std::make_shared<Array>(std::move(items));
  return v;
}
Value Value::Dict(Object object) {
  Value v(Kind::kObject);
  v.object_ = std::make_shared<Object>(std::move(object));
  return v;
}
Value Value::Namespace(Object object) {
  Value v(Kind::kNamespace);
  v.object_ = std::make_shared<Object>(std::move(object));
  return v;
}
Value Value::Function(std::string name, std::function<Value(const CallArgs&)> call) {
  Value v(Kind::kCallable);
  v.callable_ = std::make_shared<const Callable>(Callable{std::move(name), std::move(call)});
  return v;
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return b_;
    case Kind::kInt:
      return i_ != 0;
    case Kind::kFloat:
      return f_ != 0.0;
    case Kind::kString:
      return !s_.empty();
    case Kind::kArray:
      return !array_->empty();
    case Kind::kObject:
      return !object_->items.empty();
    case Kind::kNamespace:
    case Kind::kCallable:
      return true;
  }
  return false;
}

std::string Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kArray:
      return "list";
    case Kind::kObject:
      return "dict";
    case Kind::kNamespace:
      return "namespace";
    case Kind::kCallable:
      return "function";
  }
  return "?";
}

namespace {

// Python's repr of a float: the shortest digits that read back the same, "1.0" for whole
// numbers, exponent form from 1e16 and below 1e-4.
std::string FloatRepr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  // Shortest round-trip digits in scientific form, then laid out as Python's repr does.
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::scientific);
  std::string sci(buf, end);
  const size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::stoi(sci.substr(e + 1));
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits += c;
  }
  std::string out;
  if (exponent >= 16 || exponent < -4) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char ex[16];
    std::snprintf(ex, sizeof(ex), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += ex;
  } else if (exponent < 0) {
    out = "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  } else {
    const auto point = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= point) {
      out = digits + std::string(point - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, point) + "." + digits.substr(point);
    }
  }
  return negative ? "-" + out : out;
}

std::string StringRepr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

void JsonString(const std::string& s, bool ensure_ascii, std::string& out) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const auto u = static_cast<unsigned char>(s[i]);
    char buf[16];
    switch (s[i]) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20) {
          std::snprintf(buf, sizeof(buf), "\\u%04x", u);
          out += buf;
        } else if (u >= 0x80 && ensure_ascii) {
          size_t next = i;
          char32_t cp = NextCodePoint(s, next);
          auto unit = [&](unsigned v) {
            std::snprintf(buf, sizeof(buf), "\\u%04x", v);
            out += buf;
          };
          if (cp >= 0x10000) {
            cp -= 0x10000;
            unit(0xD800 + static_cast<unsigned>(cp >> 10));
            unit(0xDC00 + static_cast<unsigned>(cp & 0x3FF));
          } else {
            unit(static_cast<unsigned>(cp));
          }
          i = next;
          continue;
        } else {
          out += s[i];
        }
    }
    ++i;
  }
  out += '"';
}

void ToJsonInto(const Value& v, const JsonOptions& o, int depth, std::string& out) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::kUndefined:
    case K::kNone:
      out += "null";
      return;
    case K::kBool:
      out += v.boolean() ? "true" : "false";
      return;
    case K::kInt:
      out += std::to_string(v.integer());
      return;
    case K::kFloat:
      if (std::isnan(v.number())) {
        out += "NaN";
      } else if (std::isinf(v.number())) {
        out += v.number() > 0 ? "Infinity" : "-Infinity";
      } else {
        out += FloatRepr(v.number());
      }
      return;
    case K::kString:
      JsonString(v.str(), o.ensure_ascii, out);
      return;
    case K::kCallable:
      throw InvalidInput("tojson: a " + v.TypeName() + " is not JSON serializable");
    default:
      break;
  }
  const bool indent = o.indent >= 0;
  // json.dumps with indent uses "," between items unless told otherwise.
  const std::string& item_sep = o.item_separator;
  auto newline = [&](int d) {
    out += '\n';
    out.append(static_cast<size_t>(o.indent * d), ' ');
  };
  if (v.is(K::kArray)) {
    const Array& a = v.array();
    if (a.empty()) {
      out += "[]";
      return;
    }
    out += '[';
    for (size_t i = 0; i < a.size(); ++i) {
      if (i > 0) out += item_sep;
      if (indent) newline(depth + 1);
      ToJsonInto(a[i], o, depth + 1, out);
    }
    if (indent) newline(depth);
    out += ']';
    return;
  }
  std::vector<const std::pair<std::string, Value>*> items;
  for (const auto& item : v.object().items) items.push_back(&item);
  if (o.sort_keys) {
    std::stable_sort(items.begin(), items.end(),
                     [](const auto* a, const auto* b) { return a->first < b->first; });
  }
  if (items.empty()) {
    out += "{}";
    return;
  }
  out += '{';
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += item_sep;
    if (indent) newline(depth + 1);
    JsonString(items[i]->first, o.ensure_ascii, out);
    out += o.key_separator;
    ToJsonInto(items[i]->second, o, depth + 1, out);
  }
  if (indent) newline(depth);
  out += '}';
}

}  // namespace

std::string Repr(const Value& v) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::kString:
      return StringRepr(v.str());
    case K::kArray: {
      std::string out = "[";
      for (size_t i = 0; i < v.array().size(); ++i) {
        if (i > 0) out += ", ";
        out += Repr(v.array()[i]);
      }
      return out + "]";
    }
    case K::kObject: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, value] : v.object().items) {
        if (!first) out += ", ";
        first = false;
        out += StringRepr(key) + ": " + Repr(value);
      }
      return out + "}";
    }
    case K::kUndefined:
      return "Undefined";
    default:
      return ToString(v);
  }
}

std::string ToString(const Value& v) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::kUndefined:
      return "";
    case K::kNone:
      return "None";
    case K::kBool:
      return v.boolean() ? "True" : "False";
    case K::kInt:
      return std::to_string(v.integer());
    case K::kFloat:
      return FloatRepr(v.number());
    case K::kString:
      return v.str();
    case K::kArray:
    case K::kObject:
      return Repr(v);
    case K::kNamespace:
      return "<Namespace>";
    case K::kCallable:
      return "<function " + v.callable().name + ">";
  }
  return "";
}

bool Equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.numeric() && b.numeric()) {
    if (a.is(K::kFloat) || b.is(K::kFloat)) return a.number() == b.number();
    return a.integer() == b.integer();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::kUndefined:
    case K::kNone:
      return true;
    case K::kString:
      return a.str() == b.str();
    case K::kArray:
      return a.array().size() == b.array().size() &&
             std::equal(a.array().begin(), a.array().end(), b.array().begin(), Equal);
    case K::kObject: {
      if (a.object().items.size() != b.object().items.size()) return false;
      for (const auto& [key, value] : a.object().items) {
        const Value* other = b.object().Find(key);
        if (other == nullptr || !Equal(value, *other)) return false;
      }
      return true;
    }
    default:
      return &a.object() == &b.object();  // namespaces: identity
  }
}

std::string ToJson(const Value& v, const JsonOptions& options) {
  std::string out;
  ToJsonInto(v, options, 0, out);
  return out;
}

Value FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::None();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::Float(static_cast<double>(u));
      return Value::Int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::Str(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Array a;
      a.reserve(j.size());
      for (const auto& e : j) a.push_back(FromJson(e));
      return Value::List(std::move(a));
    }
    case nlohmann::ordered_json::value_t::object: {
      Object o;
      for (auto it = j.begin(); it != j.end(); ++it) o.Set(it.key(), FromJson(it.value()));
      return Value::Dict(std::move(o));
    }
    default:
      return Value();
  }
}

bool IsSpace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::vector<char32_t> CodePoints(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(NextCodePoint(s, i));
  return out;
}

std::string FromCodePoints(const std::vector<char32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end && i < cps.size(); ++i) AppendUtf8(out, cps[i]);
  return out;
}

namespace {

std::string MapCase(std::string_view s, utf8proc_int32_t (*map)(utf8proc_int32_t)) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    AppendUtf8(out, static_cast<char32_t>(map(static_cast<utf8proc_int32_t>(NextCodePoint(s, i)))));
  }
  return out;
}

}  // namespace

std::string Upper(std::string_view s) { return MapCase(s, utf8proc_toupper); }
std::string Lower(std::string_view s) { return MapCase(s, utf8proc_tolower); }

}  // namespace lockstep::tokenizer::jinja
