// A small SVG line-chart writer for the training curves (loss and kNN accuracy over steps), so a run
// leaves a picture without any plotting dependency.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace byol::apps {

struct Series {
  std::string title;  // panel title, e.g. "BYOL loss"
  std::string y_label;
  std::vector<std::pair<double, double>> points;  // (step, value)
};

// One panel per series, stacked vertically; written atomically (temp file + rename).
void write_svg_chart(const std::string& path, const std::string& heading, const std::vector<Series>& panels);

}  // namespace byol::apps
