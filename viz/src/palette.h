// Stage colours: hues a golden angle apart (neighbouring stages never look alike, any number of
// stages), two lightness levels alternating so adjacent stages also differ in brightness.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>

namespace lockstep::viz {

inline std::string Hsl(double h, double s, double l) {
  // HSL -> RGB hex, so every renderer shows the same colour.
  const double c = (1 - std::fabs(2 * l - 1)) * s;
  const double hp = std::fmod(h, 360.0) / 60.0;
  const double x = c * (1 - std::fabs(std::fmod(hp, 2.0) - 1));
  double r = 0, g = 0, b = 0;
  if (hp < 1)
    r = c, g = x;
  else if (hp < 2)
    r = x, g = c;
  else if (hp < 3)
    g = c, b = x;
  else if (hp < 4)
    g = x, b = c;
  else if (hp < 5)
    r = x, b = c;
  else
    r = c, b = x;
  const double m = l - c / 2;
  char buf[8];
  std::snprintf(buf, sizeof(buf), "#%02x%02x%02x", static_cast<int>(std::lround((r + m) * 255)),
                static_cast<int>(std::lround((g + m) * 255)),
                static_cast<int>(std::lround((b + m) * 255)));
  return buf;
}

inline std::string StageColor(int stage) {
  return Hsl(std::fmod(stage * 137.508, 360.0), 0.62, stage % 2 == 0 ? 0.52 : 0.66);
}

}  // namespace lockstep::viz
