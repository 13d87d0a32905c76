// A minimal SVG writer: elements appended as text with coordinates rounded to a tenth of a pixel
// (printf "%.1f" in the C locale: the same bytes on every run), text escaped for XML.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lockstep::viz {

std::string Num(double v);
std::string Escape(std::string_view text);
// "12,345" for readable figures.
std::string Thousands(int64_t v);

class Svg {
 public:
  Svg(double width, double height);
  // Appends raw markup (already escaped).
  void Raw(std::string_view markup) { body_ += markup; }
  // <rect>; `attrs` are extra attributes (e.g. `stroke="#000"`); a non-empty `title` becomes a
  // tooltip.
  void Rect(double x, double y, double w, double h, std::string_view cls, std::string_view fill,
            std::string_view attrs = "", std::string_view title = "");
  void Text(double x, double y, std::string_view text, double size, std::string_view attrs = "");
  void Line(double x1, double y1, double x2, double y2, std::string_view cls,
            std::string_view attrs);
  void SetHeight(double height) { height_ = height; }
  std::string Finish() const;

 private:
  double width_, height_;
  std::string body_;
};

}  // namespace lockstep::viz
