// The chat-template parser: statements (set, if, for, macro, break, continue) and expressions
// with Jinja's precedence (if-else < or < and < not < comparisons and `in` < + - ~ < * / // % <
// ** < `is` tests < filters < unary sign < calls, attributes, subscripts, slices).
#include "jinja.h"
#include "lockstep/common/error.h"

namespace lockstep::tokenizer::jinja {
namespace {

constexpr const char* kSupportedStatements = "set, if/elif/else, for/else, macro, break, continue";

class Parser {
 public:
  Parser(const Program& program, std::vector<Token> tokens)
      : program_(program), tokens_(std::move(tokens)) {}

  std::vector<NodePtr> Run() {
    std::vector<NodePtr> body;
    while (i_ < tokens_.size()) {
      if (auto n = ParseAny()) body.push_back(std::move(n));
    }
    return body;
  }

 private:
  [[noreturn]] void Fail(size_t pos, const std::string& what) const {
    throw InvalidInput(program_.Locate(pos) + ": " + what);
  }
  size_t Here() const {
    if (i_ < tokens_.size()) return tokens_[i_].pos;
    return program_.source.size();
  }
  bool Is(TokenKind kind, size_t ahead = 0) const {
    return i_ + ahead < tokens_.size() && tokens_[i_ + ahead].kind == kind;
  }
  bool IsName(std::string_view name, size_t ahead = 0) const {
    return Is(TokenKind::kName, ahead) && tokens_[i_ + ahead].text == name;
  }
  const Token& Expect(TokenKind kind, const char* what) {
    if (!Is(kind)) {
      Fail(Here(), std::string("expected ") + what +
                       (i_ < tokens_.size() ? ", found '" + Describe(tokens_[i_]) + "'"
                                            : ", found the end of the template"));
    }
    return tokens_[i_++];
  }
  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kText:
        return "text";
      case TokenKind::kString:
        return "'" + t.text + "'";
      case TokenKind::kComment:
        return "comment";
      default:
        return t.text;
    }
  }
  void ExpectName(std::string_view name) {
    if (!IsName(name)) Fail(Here(), "expected '" + std::string(name) + "'");
    ++i_;
  }
  // {% NAME at the cursor, for one of `names`.
  bool IsStatement(std::initializer_list<std::string_view> names) const {
    if (!Is(TokenKind::kOpenStatement) || !Is(TokenKind::kName, 1)) return false;
    for (std::string_view n : names) {
      if (tokens_[i_ + 1].text == n) return true;
    }
    return false;
  }
  static NodePtr Make(Node::Kind kind, size_t pos) {
    auto n = std::make_unique<Node>();
    n->kind = kind;
    n->pos = pos;
    return n;
  }

  NodePtr ParseAny() {
    const Token& t = tokens_[i_];
    switch (t.kind) {
      case TokenKind::kComment:
        ++i_;
        return nullptr;
      case TokenKind::kText: {
        auto n = Make(Node::Kind::kText, t.pos);
        n->literal = Value::Str(t.text);
        ++i_;
        return n;
      }
      case TokenKind::kOpenStatement:
        return ParseStatement();
      case TokenKind::kOpenExpression: {
        ++i_;
        auto n = Make(Node::Kind::kOutput, t.pos);
        n->kids.push_back(ParseExpression());
        Expect(TokenKind::kCloseExpression, "'}}'");
        return n;
      }
      default:
        Fail(t.pos, "unexpected '" + Describe(t) + "'");
    }
  }

  // Statements until one of `ends` ({% NAME); the cursor stays on it.
  std::vector<NodePtr> ParseBlock(std::initializer_list<std::string_view> ends, size_t open_pos,
                                  const char* opener) {
    std::vector<NodePtr> body;
    while (!IsStatement(ends)) {
      if (i_ >= tokens_.size()) {
        std::string names;
        for (std::string_view e : ends) names += (names.empty() ? "" : " or ") + std::string(e);
        Fail(open_pos,
             std::string("{% ") + opener + " %} is never closed (expected {% " + names + " %})");
      }
      if (auto n = ParseAny()) body.push_back(std::move(n));
    }
    return body;
  }
  void ExpectEnd(std::string_view name) {
    Expect(TokenKind::kOpenStatement, "'{%'");
    ExpectName(name);
    Expect(TokenKind::kCloseStatement, "'%}'");
  }

  NodePtr ParseStatement() {
    const size_t open = tokens_[i_].pos;
    ++i_;  // {%
    if (!Is(TokenKind::kName)) Fail(Here(), "expected a statement name after '{%'");
    const std::string name = tokens_[i_].text;
    const size_t pos = tokens_[i_].pos;
    ++i_;
    if (name == "set") return ParseSet(pos);
    if (name == "if") {
      auto n = ParseIf(pos);
      ExpectEnd("endif");
      return n;
    }
    if (name == "for") {
      auto n = ParseFor(pos);
      ExpectEnd("endfor");
      return n;
    }
    if (name == "macro") {
      auto n = ParseMacro(pos);
      ExpectEnd("endmacro");
      return n;
    }
    if (name == "break" || name == "continue") {
      Expect(TokenKind::kCloseStatement, "'%}'");
      return Make(name == "break" ? Node::Kind::kBreak : Node::Kind::kContinue, pos);
    }
    (void)open;
    Fail(pos, "unsupported statement '" + name + "' (supported: " + kSupportedStatements + ")");
  }

  NodePtr ParseSet(size_t pos) {
    auto n = Make(Node::Kind::kSet, pos);
    n->kids.push_back(ParseExpressionSequence(/*primary=*/false));
    const Node& target = *n->kids[0];
    const bool ok =
        target.kind == Node::Kind::kName || target.kind == Node::Kind::kTuple ||
        (target.kind == Node::Kind::kMember && target.kids[1]->kind == Node::Kind::kLiteral &&
         target.kids[1]->literal.is(Value::Kind::kString));
    if (!ok)
      Fail(target.pos, "cannot assign to this expression (a name, names a, b, or ns.attribute)");
    if (Is(TokenKind::kEquals)) {
      ++i_;
      n->kids.push_back(ParseExpressionSequence(false));
      Expect(TokenKind::kCloseStatement, "'%}'");
    } else {
      Expect(TokenKind::kCloseStatement, "'=' or '%}'");
      n->kids.push_back(nullptr);
      n->body = ParseBlock({"endset"}, pos, "set");
      ExpectEnd("endset");
    }
    return n;
  }

  NodePtr ParseIf(size_t pos) {
    auto n = Make(Node::Kind::kIf, pos);
    n->kids.push_back(ParseExpression());
    Expect(TokenKind::kCloseStatement, "'%}'");
    n->body = ParseBlock({"elif", "else", "endif"}, pos, "if");
    if (IsStatement({"elif"})) {
      const size_t elif = tokens_[i_ + 1].pos;
      i_ += 2;
      n->alt.push_back(ParseIf(elif));
    } else if (IsStatement({"else"})) {
      i_ += 2;
      Expect(TokenKind::kCloseStatement, "'%}'");
      n->alt = ParseBlock({"endif"}, pos, "if");
    }
    return n;
  }

  NodePtr ParseFor(size_t pos) {
    auto n = Make(Node::Kind::kFor, pos);
    n->kids.push_back(ParseExpressionSequence(/*primary=*/true));
    const Node& target = *n->kids[0];
    bool names = target.kind == Node::Kind::kName;
    if (target.kind == Node::Kind::kTuple) {
      names = true;
      for (const NodePtr& k : target.kids) names = names && k->kind == Node::Kind::kName;
    }
    if (!names) Fail(target.pos, "a for loop's target must be a name or names (a, b)");
    if (!IsName("in")) Fail(Here(), "expected 'in' after the for loop's target");
    ++i_;
    NodePtr iterable = ParseExpression();
    if (iterable->kind == Node::Kind::kSelect) {
      // {% for x in xs if cond %}: a filter on the items.
      n->kids.push_back(std::move(iterable->kids[0]));
      n->kids.push_back(std::move(iterable->kids[1]));
    } else {
      n->kids.push_back(std::move(iterable));
      n->kids.push_back(nullptr);
    }
    Expect(TokenKind::kCloseStatement, "'%}'");
    n->body = ParseBlock({"endfor", "else"}, pos, "for");
    if (IsStatement({"else"})) {
      i_ += 2;
      Expect(TokenKind::kCloseStatement, "'%}'");
      n->alt = ParseBlock({"endfor"}, pos, "for");
    }
    return n;
  }

  NodePtr ParseMacro(size_t pos) {
    auto n = Make(Node::Kind::kMacro, pos);
    n->name = Expect(TokenKind::kName, "the macro's name").text;
    Expect(TokenKind::kOpenParen, "'(' after the macro's name");
    while (!Is(TokenKind::kCloseParen)) {
      const Token& param = Expect(TokenKind::kName, "a parameter name");
      n->keywords.push_back(param.text);
      if (Is(TokenKind::kEquals)) {
        ++i_;
        n->kids.push_back(ParseExpression());
      } else {
        if (!n->kids.empty() && n->kids.back() != nullptr) {
          Fail(param.pos, "a parameter without a default after one with a default");
        }
        n->kids.push_back(nullptr);
      }
      if (Is(TokenKind::kComma)) {
        ++i_;
      } else if (!Is(TokenKind::kCloseParen)) {
        Fail(Here(), "expected ',' or ')' in the macro's parameters");
      }
    }
    ++i_;
    Expect(TokenKind::kCloseStatement, "'%}'");
    n->body = ParseBlock({"endmacro"}, pos, "macro");
    return n;
  }

  // expr (, expr)* as a tuple when there is a comma.
  NodePtr ParseExpressionSequence(bool primary) {
    const size_t pos = Here();
    NodePtr first = primary ? ParsePrimary() : ParseExpression();
    if (!Is(TokenKind::kComma)) return first;
    auto tuple = Make(Node::Kind::kTuple, pos);
    tuple->kids.push_back(std::move(first));
    while (Is(TokenKind::kComma)) {
      ++i_;
      tuple->kids.push_back(primary ? ParsePrimary() : ParseExpression());
    }
    return tuple;
  }

  NodePtr ParseExpression() {
    NodePtr a = ParseOr();
    if (!IsName("if")) return a;
    const size_t pos = tokens_[i_].pos;
    ++i_;
    NodePtr test = ParseOr();
    if (IsName("else")) {
      ++i_;
      auto n = Make(Node::Kind::kTernary, pos);
      n->kids.push_back(std::move(test));
      n->kids.push_back(std::move(a));
      n->kids.push_back(ParseExpression());
      return n;
    }
    auto n = Make(Node::Kind::kSelect, pos);
    n->kids.push_back(std::move(a));
    n->kids.push_back(std::move(test));
    return n;
  }
  NodePtr Binary(std::string op, size_t pos, NodePtr a, NodePtr b) {
    auto n = Make(Node::Kind::kBinary, pos);
    n->name = std::move(op);
    n->kids.push_back(std::move(a));
    n->kids.push_back(std::move(b));
    return n;
  }
  // `and` / `or`: left-associative, operands by `next`.
  NodePtr ParseKeywordLevel(const char* keyword, NodePtr (Parser::*next)()) {
    NodePtr left = (this->*next)();
    while (IsName(keyword)) {
      const size_t pos = tokens_[i_++].pos;
      left = Binary(keyword, pos, std::move(left), (this->*next)());
    }
    return left;
  }
  NodePtr ParseOr() { return ParseKeywordLevel("or", &Parser::ParseAnd); }
  NodePtr ParseAnd() { return ParseKeywordLevel("and", &Parser::ParseNot); }
  NodePtr ParseNot() {
    if (IsName("not")) {
      auto n = Make(Node::Kind::kUnary, tokens_[i_++].pos);
      n->name = "not";
      n->kids.push_back(ParseNot());
      return n;
    }
    return ParseComparison();
  }
  NodePtr ParseComparison() {
    NodePtr left = ParseAdditive();
    while (true) {
      std::string op;
      const size_t pos = Here();
      if (IsName("not") && IsName("in", 1)) {
        op = "not in";
        i_ += 2;
      } else if (IsName("in")) {
        op = "in";
        ++i_;
      } else if (Is(TokenKind::kComparison)) {
        op = tokens_[i_++].text;
      } else {
        break;
      }
      left = Binary(op, pos, std::move(left), ParseAdditive());
    }
    return left;
  }
  // Left-associative binary operators of one precedence level: operands by `next`.
  NodePtr ParseLevel(TokenKind kind, NodePtr (Parser::*next)()) {
    NodePtr left = (this->*next)();
    while (Is(kind)) {
      const Token& op = tokens_[i_++];
      left = Binary(op.text, op.pos, std::move(left), (this->*next)());
    }
    return left;
  }
  NodePtr ParseAdditive() { return ParseLevel(TokenKind::kAdditive, &Parser::ParseMultiplicative); }
  NodePtr ParseMultiplicative() {
    return ParseLevel(TokenKind::kMultiplicative, &Parser::ParsePower);
  }
  NodePtr ParsePower() { return ParseLevel(TokenKind::kPower, &Parser::ParseTest); }
  NodePtr ParseTest() {
    NodePtr operand = ParseFilter();
    while (IsName("is")) {
      const size_t pos = tokens_[i_++].pos;
      auto n = Make(Node::Kind::kTest, pos);
      if (IsName("not")) {
        n->negate = true;
        ++i_;
      }
      // `none`, `true` and `false` are names here too.
      n->name = Expect(TokenKind::kName, "a test name after 'is'").text;
      n->kids.push_back(std::move(operand));
      if (Is(TokenKind::kOpenParen)) {
        ParseArguments(*n);
      } else if (StartsTestArgument()) {
        // `x is divisibleby 3`, `x is sameas true`: one argument without parentheses.
        n->keywords.emplace_back();
        n->kids.push_back(ParsePostfix(ParsePrimary()));
      }
      operand = std::move(n);
    }
    return operand;
  }
  bool StartsTestArgument() const {
    if (Is(TokenKind::kNumber) || Is(TokenKind::kString) || Is(TokenKind::kOpenBracket) ||
        Is(TokenKind::kOpenBrace)) {
      return true;
    }
    if (!Is(TokenKind::kName)) return false;
    for (const char* keyword : {"else", "or", "and", "if", "is", "in", "not"}) {
      if (tokens_[i_].text == keyword) return false;
    }
    return true;
  }
  NodePtr ParseFilter() {
    NodePtr operand = ParseUnary();
    while (Is(TokenKind::kPipe)) {
      ++i_;
      const Token& name = Expect(TokenKind::kName, "a filter name after '|'");
      auto n = Make(Node::Kind::kFilter, name.pos);
      n->name = name.text;
      n->kids.push_back(std::move(operand));
      if (Is(TokenKind::kOpenParen)) ParseArguments(*n);
      operand = std::move(n);
    }
    return operand;
  }
  NodePtr ParseUnary() {
    if ((Is(TokenKind::kUnary) || Is(TokenKind::kAdditive)) &&
        (tokens_[i_].text == "-" || tokens_[i_].text == "+")) {
      auto n = Make(Node::Kind::kUnary, tokens_[i_].pos);
      n->name = tokens_[i_++].text;
      n->kids.push_back(ParseUnary());
      return n;
    }
    return ParsePostfix(ParsePrimary());
  }
  // Arguments in parentheses, appended to n.kids with their keywords ("" when positional).
  void ParseArguments(Node& n) {
    Expect(TokenKind::kOpenParen, "'('");
    bool keyword_seen = false;
    while (!Is(TokenKind::kCloseParen)) {
      if (Is(TokenKind::kMultiplicative) || Is(TokenKind::kPower)) {
        Fail(Here(), "unsupported argument unpacking '" + tokens_[i_].text + "'");
      }
      if (Is(TokenKind::kName) && Is(TokenKind::kEquals, 1)) {
        n.keywords.push_back(tokens_[i_].text);
        i_ += 2;
        keyword_seen = true;
      } else {
        if (keyword_seen) Fail(Here(), "a positional argument after a keyword argument");
        n.keywords.emplace_back();
      }
      n.kids.push_back(ParseExpression());
      if (Is(TokenKind::kComma)) {
        ++i_;
      } else if (!Is(TokenKind::kCloseParen)) {
        Fail(Here(), "expected ',' or ')' in the arguments");
      }
    }
    ++i_;
  }
  NodePtr ParsePostfix(NodePtr object) {
    while (true) {
      if (Is(TokenKind::kDot)) {
        const size_t pos = tokens_[i_++].pos;
        auto n = Make(Node::Kind::kMember, pos);
        auto key = Make(Node::Kind::kLiteral, Here());
        if (Is(TokenKind::kName)) {
          key->literal = Value::Str(tokens_[i_++].text);
        } else if (Is(TokenKind::kNumber) && tokens_[i_].text.find('.') == std::string::npos) {
          key->literal = Value::Int(std::stoll(tokens_[i_++].text));
        } else {
          Fail(Here(), "expected an attribute name after '.'");
        }
        n->kids.push_back(std::move(object));
        n->kids.push_back(std::move(key));
        object = std::move(n);
      } else if (Is(TokenKind::kOpenBracket)) {
        object = ParseSubscript(std::move(object));
      } else if (Is(TokenKind::kOpenParen)) {
        auto n = Make(Node::Kind::kCall, object->pos);
        n->kids.push_back(std::move(object));
        ParseArguments(*n);
        object = std::move(n);
      } else {
        return object;
      }
    }
  }
  NodePtr ParseSubscript(NodePtr object) {
    const size_t pos = tokens_[i_++].pos;  // [
    std::vector<NodePtr> parts;
    bool slice = false;
    parts.emplace_back();
    while (!Is(TokenKind::kCloseBracket)) {
      if (i_ >= tokens_.size()) Fail(pos, "'[' is never closed");
      if (Is(TokenKind::kColon)) {
        ++i_;
        slice = true;
        parts.emplace_back();
        if (parts.size() > 3) Fail(pos, "a slice has at most three parts [start:stop:step]");
      } else {
        if (parts.back()) Fail(Here(), "expected ']' or ':'");
        parts.back() = ParseExpression();
      }
    }
    ++i_;
    if (!slice) {
      if (!parts[0]) Fail(pos, "expected an index in '[]'");
      auto n = Make(Node::Kind::kMember, pos);
      n->kids.push_back(std::move(object));
      n->kids.push_back(std::move(parts[0]));
      return n;
    }
    auto n = Make(Node::Kind::kSlice, pos);
    n->kids.push_back(std::move(object));
    parts.resize(3);
    for (NodePtr& p : parts) n->kids.push_back(std::move(p));
    return n;
  }

  NodePtr ParsePrimary() {
    if (i_ >= tokens_.size()) Fail(Here(), "the template ends inside an expression");
    const Token& t = tokens_[i_++];
    switch (t.kind) {
      case TokenKind::kNumber: {
        auto n = Make(Node::Kind::kLiteral, t.pos);
        if (t.text.find('.') != std::string::npos) {
          n->literal = Value::Float(std::stod(t.text));
        } else {
          try {
            n->literal = Value::Int(std::stoll(t.text));
          } catch (const std::out_of_range&) {
            Fail(t.pos, "the integer " + t.text + " is out of range");
          }
        }
        return n;
      }
      case TokenKind::kString: {
        std::string value = t.text;
        while (Is(TokenKind::kString)) value += tokens_[i_++].text;  // 'a' 'b' is 'ab'
        auto n = Make(Node::Kind::kLiteral, t.pos);
        n->literal = Value::Str(std::move(value));
        return n;
      }
      case TokenKind::kName: {
        auto n = Make(Node::Kind::kName, t.pos);
        n->name = t.text;
        return n;
      }
      case TokenKind::kOpenParen: {
        if (Is(TokenKind::kCloseParen)) {  // ()
          ++i_;
          return Make(Node::Kind::kTuple, t.pos);
        }
        NodePtr inner = ParseExpressionSequence(false);
        Expect(TokenKind::kCloseParen, "')'");
        return inner;
      }
      case TokenKind::kOpenBracket: {
        auto n = Make(Node::Kind::kList, t.pos);
        while (!Is(TokenKind::kCloseBracket)) {
          n->kids.push_back(ParseExpression());
          if (Is(TokenKind::kComma)) {
            ++i_;
          } else if (!Is(TokenKind::kCloseBracket)) {
            Fail(Here(), "expected ',' or ']' in a list");
          }
        }
        ++i_;
        return n;
      }
      case TokenKind::kOpenBrace: {
        auto n = Make(Node::Kind::kDict, t.pos);
        while (!Is(TokenKind::kCloseBrace)) {
          n->kids.push_back(ParseExpression());
          Expect(TokenKind::kColon, "':' between a key and its value");
          n->kids.push_back(ParseExpression());
          if (Is(TokenKind::kComma)) {
            ++i_;
          } else if (!Is(TokenKind::kCloseBrace)) {
            Fail(Here(), "expected ',' or '}' in a dict");
          }
        }
        ++i_;
        return n;
      }
      default:
        Fail(t.pos, "unexpected '" + Describe(t) + "' in an expression");
    }
  }

  const Program& program_;
  std::vector<Token> tokens_;
  size_t i_ = 0;
};

}  // namespace

void Parse(Program& program) { program.body = Parser(program, Lex(program)).Run(); }

}  // namespace lockstep::tokenizer::jinja
