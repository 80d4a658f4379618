#include "apps/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/common.h"

namespace byol::apps {

namespace {
// Text for an SVG element: XML's special characters escaped, shortened to fit the chart's width.
std::string text(const std::string& s, size_t max_chars = 110) {
  std::string t = s.size() > max_chars ? s.substr(0, max_chars - 3) + "..." : s;
  std::string out;
  for (char c : t) {
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

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::abs(v) >= 1000 || v == std::floor(v) ? "%.0f" : "%.3g", v);
  return buf;
}
}  // namespace

void write_svg_chart(const std::string& path, const std::string& heading, const std::vector<Series>& panels) {
  const double W = 720, H = 240, left = 70, right = 20, top = 30, bottom = 40;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << 40 + H * panels.size()
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
         "fill=\"white\"/>\n"
      << "<text x=\"10\" y=\"24\" font-size=\"13\">" << text(heading) << "</text>\n";
  for (size_t p = 0; p < panels.size(); ++p) {
    const Series& s = panels[p];
    const double y0 = 40 + H * p;
    const double pw = W - left - right, ph = H - top - bottom;
    svg << "<text x=\"" << left << "\" y=\"" << y0 + 18 << "\" font-size=\"13\">" << text(s.title)
        << "</text>\n";
    svg << "<rect x=\"" << left << "\" y=\"" << y0 + top << "\" width=\"" << pw << "\" height=\"" << ph
        << "\" fill=\"none\" stroke=\"#888\"/>\n";
    if (s.points.empty()) {
      svg << "<text x=\"" << left + pw / 2 << "\" y=\"" << y0 + top + ph / 2
          << "\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n";
      continue;
    }
    double xmin = s.points.front().first, xmax = xmin, ymin = s.points.front().second, ymax = ymin;
    for (auto [x, y] : s.points) {
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      if (std::isfinite(y)) ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
    if (xmax == xmin) xmax = xmin + 1;
    if (ymax == ymin) ymax = ymin + 1, ymin -= 1;
    const double pad = 0.05 * (ymax - ymin);
    ymin -= pad, ymax += pad;
    auto X = [&](double x) { return left + (x - xmin) / (xmax - xmin) * pw; };
    auto Y = [&](double y) { return y0 + top + (1 - (y - ymin) / (ymax - ymin)) * ph; };
    for (int t = 0; t <= 4; ++t) {
      const double yv = ymin + (ymax - ymin) * t / 4, xv = xmin + (xmax - xmin) * t / 4;
      svg << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << Y(yv) << "\" y2=\"" << Y(yv)
          << "\" stroke=\"#eee\"/>\n<text x=\"" << left - 6 << "\" y=\"" << Y(yv) + 4
          << "\" text-anchor=\"end\">" << num(yv) << "</text>\n<text x=\"" << X(xv) << "\" y=\""
          << y0 + top + ph + 16 << "\" text-anchor=\"middle\">" << num(xv) << "</text>\n";
    }
    svg << "<text x=\"" << left + pw / 2 << "\" y=\"" << y0 + H - 6
        << "\" text-anchor=\"middle\">step</text>\n";
    svg << "<text transform=\"translate(16," << y0 + top + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
        << text(s.y_label)
        << "</text>\n<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"";
    for (auto [x, y] : s.points)
      if (std::isfinite(y)) svg << X(x) << "," << Y(y) << " ";
    svg << "\"/>\n";
    if (s.points.size() <= 50)
      for (auto [x, y] : s.points)
        if (std::isfinite(y))
          svg << "<circle cx=\"" << X(x) << "\" cy=\"" << Y(y) << "\" r=\"2.5\" fill=\"#1f77b4\"/>\n";
  }
  svg << "</svg>\n";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    BYOL_CHECK(out.good(), path, ": cannot write the chart (", tmp, ")");
    out << svg.str();
    BYOL_CHECK(out.good(), path, ": writing the chart failed");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace byol::apps
