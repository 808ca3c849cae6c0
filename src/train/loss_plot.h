// loss_plot.h: the training run's loss.png, drawn with cairo: a 960x600 RGB plot on white with the step on x,
// the loss on the left y axis (train loss as a line, eval loss as a line with markers) and the learning rate
// on a right-hand y axis (thin dashed line, tick labels in scientific notation); ticks on round numbers, axis
// titles and a legend above the plot (series without points are left out of it).
//
// Robustness: points with a non-finite (or |v| > 1e300) coordinate are skipped and break their line there;
// one point, all-equal values or no points at all still give sane axes. Text uses cairo's toy font API with
// "sans-serif" (DejaVu Sans through fontconfig on Debian, whose fontconfig-config depends on a font; with no
// font at all cairo falls back to its built-in stroked font, still legible).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace g4 {

struct LossCurves {
  std::vector<std::pair<double, double>> train;  // (step, loss)
  std::vector<std::pair<double, double>> eval;   // (step, eval loss)
  std::vector<std::pair<double, double>> lr;     // (step, learning rate)
};

// Writes a PNG (atomically: temporary name in the same directory, then rename; a failure leaves no file and
// throws g4::Error naming the path).
void write_loss_plot(const std::string& path, const LossCurves& curves);

}  // namespace g4
