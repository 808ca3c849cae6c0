// loss_plot.h: a PNG line plot of training (and eval) loss against the step, with no image library: an
// 8-bit RGB image, zlib "stored" deflate blocks, CRC-32 and Adler-32 written by hand. Written atomically.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace g4 {

void write_loss_plot(const std::string& path, const std::vector<std::pair<double, double>>& train,
                     const std::vector<std::pair<double, double>>& eval);

}  // namespace g4
