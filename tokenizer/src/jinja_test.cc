// The chat-template interpreter piece by piece: the lexer's whitespace rules, the parser's
// precedence and refusals, the evaluator's statements, operators, filters, tests and methods,
// and the places where we follow Python Jinja2 rather than the JavaScript reference.
#include "jinja.h"

#include <gtest/gtest.h>

#include "lockstep/common/error.h"
#include "lockstep/tokenizer/chat_template.h"

namespace lockstep::tokenizer {
namespace {

std::string R(std::string_view source, std::string_view context = "{}") {
  return ChatTemplate::Parse(source, "t").Render(context);
}

// The one-line error a template gets, or "" when it renders.
std::string ErrorOf(std::string_view source, std::string_view context = "{}") {
  try {
    R(source, context);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<jinja::TokenKind> Kinds(std::string_view source) {
  jinja::Program p;
  p.where = "t";
  p.source = std::string(source);
  std::vector<jinja::TokenKind> kinds;
  for (const jinja::Token& t : jinja::Lex(p)) kinds.push_back(t.kind);
  return kinds;
}

TEST(JinjaLexer, TokensOfStatementsAndExpressions) {
  using T = jinja::TokenKind;
  EXPECT_EQ(
      Kinds("a{{ x.y[0] | f(1) }}b"),
      (std::vector<T>{T::kText, T::kOpenExpression, T::kName, T::kDot, T::kName, T::kOpenBracket,
                      T::kNumber, T::kCloseBracket, T::kPipe, T::kName, T::kOpenParen, T::kNumber,
                      T::kCloseParen, T::kCloseExpression, T::kText}));
  // A sign after an operand is binary; elsewhere it makes a signed number.
  EXPECT_EQ(Kinds("{{ a - 1 }}"), (std::vector<T>{T::kOpenExpression, T::kName, T::kAdditive,
                                                  T::kNumber, T::kCloseExpression}));
  EXPECT_EQ(Kinds("{{ x[-1] }}"),
            (std::vector<T>{T::kOpenExpression, T::kName, T::kOpenBracket, T::kNumber,
                            T::kCloseBracket, T::kCloseExpression}));
  // "}}" inside a dict literal closes braces, not the expression.
  EXPECT_EQ(R("{{ {'a': {'b': 1}}['a']['b'] }}"), "1");
  EXPECT_EQ(R("{# a comment #}x{#- trimmed -#}  y"), "xy");
}

TEST(JinjaLexer, TrimBlocksAndLstripBlocksAsTransformersSetsThem) {
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: the indent before one.
  EXPECT_EQ(R("{% if true %}\n  yes\n  {% endif %}\nafter"), "  yes\nafter");
  // Not after an expression, and not spaces before an expression.
  EXPECT_EQ(R("{{ 'a' }}\n  {{ 'b' }}"), "a\n  b");
  // One trailing newline of the template is dropped.
  EXPECT_EQ(R("x\n"), "x");
  EXPECT_EQ(R("x\n\n"), "x\n");
  // Whitespace control strips every kind of whitespace on its side.
  EXPECT_EQ(R("a  \n {%- if true -%} \n\t b {%- endif -%}  {{- ' c ' -}}  d"), "ab c d");
}

TEST(JinjaParser, Precedence) {
  EXPECT_EQ(R("{{ 1 + 2 * 3 }}"), "7");
  EXPECT_EQ(R("{{ (1 + 2) * 3 }}"), "9");
  EXPECT_EQ(R("{{ 2 ** 3 ** 2 }}"), "64");  // Jinja's ** is left-associative
  EXPECT_EQ(R("{{ not 1 == 2 }}"), "True");
  EXPECT_EQ(R("{{ 'a' ~ 1 + 2 }}"), "a12");  // ~ and + at one level, as the reference has it
  EXPECT_EQ(R("{{ 1 if false else 2 if true else 3 }}"), "2");
  EXPECT_EQ(R("{{ 'x' if false }}|"), "|");
  EXPECT_EQ(R("{{ 'a' 'b' }}"), "ab");
  EXPECT_EQ(R("{{ -2 | abs }}"), "2");
  EXPECT_EQ(R("{{ 3 is odd and not 4 is odd }}"), "True");
  EXPECT_EQ(R("{{ 'b' in 'abc' and 'z' not in ['a'] }}"), "True");
}

TEST(JinjaParser, RefusalsNameTheConstructAndWhere) {
  EXPECT_EQ(ErrorOf("ok\n  {% include 'x' %}"),
            "t:2:6: unsupported statement 'include' (supported: set, if/elif/else, for/else, "
            "macro, break, continue)");
  EXPECT_EQ(ErrorOf("{{ x | wordwrap }}").substr(0, 34), "t:1:8: unsupported filter 'wordwra");
  EXPECT_EQ(ErrorOf("{{ 1 is prime }}").substr(0, 31), "t:1:6: unsupported test 'prime'");
  EXPECT_EQ(ErrorOf("{{ 'a'.zfill(3) }}").substr(0, 38), "t:1:7: unsupported method 'zfill' of a");
  EXPECT_EQ(ErrorOf("{{ cycler(1) }}").substr(0, 36), "t:1:4: unsupported function 'cycler'");
  EXPECT_EQ(ErrorOf("{% if x %}never closed"),
            "t:1:4: {% if %} is never closed (expected {% elif or else or endif %})");
  EXPECT_EQ(ErrorOf("{{ 'open }}"), "t:1:4: a string is never closed");
  EXPECT_EQ(ErrorOf("{{ f(*args) }}"), "t:1:6: unsupported argument unpacking '*'");
  EXPECT_EQ(ErrorOf("{% set 1 = 2 %}"),
            "t:1:8: cannot assign to this expression (a name, names a, b, or ns.attribute)");
  EXPECT_EQ(ErrorOf("{{ 1 }"), "t:1:6: expected '}}', found '}'");
}

TEST(JinjaRender, StatementsAndLoops) {
  const std::string messages = R"({"xs": [{"r": "a"}, {"r": "b"}, {"r": "c"}]})";
  EXPECT_EQ(R("{% for x in xs %}{{ loop.index }}{{ x.r }}{% if not loop.last %},{% endif %}"
              "{% endfor %}",
              messages),
            "1a,2b,3c");
  EXPECT_EQ(R("{% for x in xs %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}"
              "{{ loop.length }}{{ loop.previtem.r }}|{% endfor %}",
              messages),
            "03True3|12False3a|21False3b|");
  EXPECT_EQ(R("{% for x in xs if x.r != 'b' %}{{ x.r }}{{ loop.length }}{% endfor %}", messages),
            "a2c2");
  EXPECT_EQ(R("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for x in xs %}{% if loop.index == 2 %}{% break %}{% endif %}{{ x.r }}"
              "{% endfor %}",
              messages),
            "a");
  EXPECT_EQ(R("{% for x in xs %}{% if x.r == 'b' %}{% continue %}{% endif %}{{ x.r }}"
              "{% endfor %}",
              messages),
            "ac");
  EXPECT_EQ(R("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"),
            "a=1;b=2;");
  EXPECT_EQ(R("{% for k in {'z': 1, 'a': 2} %}{{ k }}{% endfor %}"), "za");
  // A set inside a loop stays in the loop; a namespace carries values out.
  EXPECT_EQ(R("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for x in [1, 2, 3] %}"
              "{% set n = n + x %}{% set ns.n = ns.n + x %}{% endfor %}{{ n }} {{ ns.n }}"),
            "0 6");
  EXPECT_EQ(R("{% set a, b = 1, 'two' %}{{ b }}{{ a }}"), "two1");
  EXPECT_EQ(R("{% set block %}in {{ 'side' }}{% endset %}[{{ block }}]"), "[in side]");
  EXPECT_EQ(R("{% if 0 %}a{% elif '' %}b{% elif [1] %}c{% else %}d{% endif %}"), "c");
  EXPECT_EQ(R("{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(5, 1, -2) %}{{ i }}"
              "{% endfor %}"),
            "01253");
}

TEST(JinjaRender, Macros) {
  EXPECT_EQ(R("{% macro greet(name, punct='!') %}hi {{ name }}{{ punct }}{% endmacro %}"
              "{{ greet('a') }} {{ greet('b', '?') }} {{ greet(punct='.', name='c') }}"),
            "hi a! hi b? hi c.");
  EXPECT_EQ(ErrorOf("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"),
            "t:1:34: macro 'm' takes at most 1 argument(s)");
  EXPECT_EQ(ErrorOf("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}").substr(0, 45),
            "t:1:19: macro calls nested more than 64 deep");
}

TEST(JinjaRender, ValuesPrintAsPythonPrintsThem) {
  // Here we follow Python Jinja2; the JavaScript reference prints true, null, 1 and [...] JSON.
  EXPECT_EQ(R("{{ true }} {{ none }} {{ 1.0 }} {{ 7 / 2 }} {{ 2.50 }}"), "True None 1.0 3.5 2.5");
  EXPECT_EQ(R("{{ [1, 'a', none, {'k': \"it's\"}] }}"), "[1, 'a', None, {'k': \"it's\"}]");
  EXPECT_EQ(R("{{ undefined_name }}|{{ x.y.z }}"), "|");
  EXPECT_EQ(R("{{ -7 // 2 }} {{ -7 % 3 }} {{ 7 // -2 }}"), "-4 2 -4");
  EXPECT_EQ(R("{{ 0.1 + 0.2 }} {{ 10000000000000000 * 1.0 }} {{ 0.00001 * 1 }}"),
            "0.30000000000000004 1e+16 1e-05");
}

TEST(JinjaRender, EqualityIsPythons) {
  // "" == false is False in Python (JavaScript's loose == says true).
  EXPECT_EQ(R("{{ '' == false }} {{ 1 == true }} {{ 1 == 1.0 }} {{ [1, 'a'] == [1, 'a'] }} "
              "{{ none == none }} {{ 'a' != 'b' }}"),
            "False True True True True True");
}

TEST(JinjaRender, StringMethods) {
  // strip with characters strips only those (the reference strips whitespace whatever it is given).
  EXPECT_EQ(R("[{{ '\\n  x \\n'.strip('\\n') }}]"), "[  x ]");
  EXPECT_EQ(R("[{{ '  x  '.strip() }}|{{ '  x  '.lstrip() }}|{{ '  x  '.rstrip() }}]"),
            "[x|x  |  x]");
  EXPECT_EQ(R("{{ 'a</think>b'.split('</think>')[-1] }} {{ ' a  b '.split() | length }} "
              "{{ 'a,b,c'.split(',', 1) }}"),
            "b 2 ['a', 'b,c']");
  EXPECT_EQ(R("{{ 'Hello'.startswith('He') }} {{ 'Hello'.endswith(('x', 'lo')) }}"), "True True");
  EXPECT_EQ(R("{{ 'aaa'.replace('a', 'b', 2) }} {{ 'ab'.replace('', '-') }}"), "bba -a-b-");
  EXPECT_EQ(R("{{ 'éa'.upper() }} {{ 'ÉA'.lower() }} {{ 'hello world'.title() }} "
              "{{ 'hELLO'.capitalize() }}"),
            "ÉA éa Hello World Hello");
  // Lengths, indices and slices count characters, not bytes or UTF-16 units.
  EXPECT_EQ(R("{{ 'h😀é' | length }} {{ 'h😀é'[1] }} {{ 'h😀é'[::-1] }} {{ 'abcdef'[1:5:2] }}"),
            "3 😀 é😀h bd");
}

TEST(JinjaRender, Filters) {
  EXPECT_EQ(R("{{ {'a': [1, 'é'], 'b': none} | tojson }}"), R"({"a": [1, "é"], "b": null})");
  EXPECT_EQ(R("{{ {'a': [1, 2]} | tojson(indent=2) }}"), "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
  EXPECT_EQ(R("{{ 'é\\n\"' | tojson(ensure_ascii=true) }}"), R"("\u00e9\n\"")");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}"), R"({"a": 2, "b": 1})");
  EXPECT_EQ(R("[{{ '  x\\n' | trim }}] {{ 'ab' | upper }} {{ [3, 1, 2] | sort | join(',') }} "
              "{{ ['b', 'A', 'a'] | unique | join }} {{ [1, 2] | reverse | list }}"),
            "[x] AB 1,2,3 bA [2, 1]");
  EXPECT_EQ(R("{{ [1, 2, 3] | first }}{{ [1, 2, 3] | last }} {{ 'x' | default('d') }} "
              "{{ nothing | default('d') }} {{ '' | default('d', true) }} {{ nothing | d(1) }}"),
            "13 x d d 1");
  EXPECT_EQ(R("{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent('> ', first=true) }}"),
            "a\n  b\n\n  c|> a\n> b");
  EXPECT_EQ(R("{{ '42' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '2.5' | float }} "
              "{{ -3 | abs }} {{ 5 | string }}"),
            "42 7 3 2.5 3 5");
  const std::string people = R"({"p": [{"n": "a", "age": 3}, {"n": "b"}, {"n": "c", "age": 1}]})";
  EXPECT_EQ(R("{{ p | selectattr('age', 'defined') | map(attribute='n') | join }} "
              "{{ p | rejectattr('age') | map(attribute='n') | list }} "
              "{{ p | selectattr('age', 'defined') | sort(attribute='age') | map(attribute='n') | "
              "join }} {{ p | map(attribute='age', default=0) | list }}",
              people),
            "ac ['b'] ca [3, 0, 1]");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2} | dictsort }} {{ {'x': 1} | items | list }} "
              "{{ ['a', 'b'] | map('upper') | join }} {{ [0, 1, 2] | select('odd') | list }}"),
            "[['a', 2], ['b', 1]] [['x', 1]] AB [1]");
  EXPECT_EQ(
      R("{{ 'ab cd-ef' | title }} {{ 'hELLO' | capitalize }} {{ 'aXb' | replace('X', '-') }}"),
      "Ab Cd-Ef Hello a-b");
}

TEST(JinjaRender, TestsAndMembership) {
  EXPECT_EQ(R("{{ x is defined }} {{ x is undefined }} {{ none is none }} {{ 'a' is string }} "
              "{{ 1 is number }} {{ 1.5 is integer }} {{ {} is mapping }} {{ [] is iterable }} "
              "{{ 4 is divisibleby(2) }} {{ true is true }} {{ 1 is sameas true }} "
              "{{ 9 is divisibleby 3 }} "
              "{{ 'abc' is lower }} {{ 'x' is not upper }}"),
            "False True True True True False True True True True False True True True");
  EXPECT_EQ(R("{{ 'k' in {'k': 1} }} {{ 2 in [1, 2] }} {{ 'x' in nothing }}"), "True True False");
  EXPECT_EQ(R("{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b', 'z') }} {{ {'a': 1}.keys() }} "
              "{{ {'a': 1}.values() }}"),
            "1 z ['a'] [1]");
}

TEST(JinjaRender, RaiseExceptionAndBadOperands) {
  EXPECT_EQ(ErrorOf("x{{ raise_exception('roles must alternate') }}"),
            "t:1:5: raise_exception: roles must alternate");
  EXPECT_EQ(ErrorOf("{{ 1 / 0 }}"), "t:1:6: division by zero");
  EXPECT_EQ(ErrorOf("{{ [] - 1 }}"), "t:1:7: unsupported operand types for -: list and int");
  EXPECT_EQ(ErrorOf("{{ 1 < 'a' }}"), "t:1:6: '<': cannot compare int with str");
  EXPECT_EQ(ErrorOf("{% for x in 3 %}{% endfor %}"), "t:1:13: for: a int is not iterable");
  EXPECT_EQ(ErrorOf("{% set x = 1 %}{% set x.y = 2 %}"),
            "t:1:24: cannot set an attribute of a int (only of a namespace())");
  EXPECT_EQ(ErrorOf("{{ range(2000000) | length }}"), "t:1:4: range of more than 1000000 numbers");
  EXPECT_EQ(ErrorOf("{{ x }}", "[1]"), "t: the context must be a JSON object");
}

TEST(ChatTemplate, RendersAConversationWithTheContextsVariables) {
  const char* chatml =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  const std::string messages =
      ChatTemplate::MessagesJson({{"system", "Be brief."}, {"user", "Hi \"there\" 😀"}});
  EXPECT_EQ(ChatTemplate::Parse(chatml).Render(R"({"messages": )" + messages +
                                               R"(, "add_generation_prompt": true})"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi \"there\" "
            "😀<|im_end|>\n<|im_start|>assistant\n");
}

}  // namespace
}  // namespace lockstep::tokenizer
