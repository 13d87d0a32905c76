#include "svg_writer.h"

#include <cmath>
#include <cstdio>

namespace lockstep::viz {

std::string Num(double v) {
  char buf[32];
  const double r = std::round(v * 10.0) / 10.0;
  std::snprintf(buf, sizeof(buf), "%.1f", r == 0.0 ? 0.0 : r);
  std::string s = buf;
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Thousands(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

Svg::Svg(double width, double height) : width_(width), height_(height) {}

void Svg::Rect(double x, double y, double w, double h, std::string_view cls, std::string_view fill,
               std::string_view attrs, std::string_view title) {
  body_ += "<rect class=\"";
  body_ += cls;
  body_ += "\" x=\"" + Num(x) + "\" y=\"" + Num(y) + "\" width=\"" + Num(w) + "\" height=\"" +
           Num(h) + "\" fill=\"";
  body_ += fill;
  body_ += "\"";
  if (!attrs.empty()) {
    body_ += ' ';
    body_ += attrs;
  }
  if (title.empty()) {
    body_ += "/>\n";
  } else {
    body_ += "><title>" + Escape(title) + "</title></rect>\n";
  }
}

void Svg::Text(double x, double y, std::string_view text, double size, std::string_view attrs) {
  body_ += "<text x=\"" + Num(x) + "\" y=\"" + Num(y) + "\" font-size=\"" + Num(size) + "\"";
  if (!attrs.empty()) {
    body_ += ' ';
    body_ += attrs;
  }
  body_ += ">" + Escape(text) + "</text>\n";
}

void Svg::Line(double x1, double y1, double x2, double y2, std::string_view cls,
               std::string_view attrs) {
  body_ += "<line class=\"";
  body_ += cls;
  body_ += "\" x1=\"" + Num(x1) + "\" y1=\"" + Num(y1) + "\" x2=\"" + Num(x2) + "\" y2=\"" +
           Num(y2) + "\" " + std::string(attrs) + "/>\n";
}

std::string Svg::Finish() const {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
         Num(width_) + "\" height=\"" + Num(height_) + "\" viewBox=\"0 0 " + Num(width_) + " " +
         Num(height_) +
         "\" font-family=\"sans-serif\">\n"
         "<rect x=\"0\" y=\"0\" width=\"" +
         Num(width_) + "\" height=\"" + Num(height_) + "\" fill=\"#ffffff\"/>\n" + body_ +
         "</svg>\n";
}

}  // namespace lockstep::viz
