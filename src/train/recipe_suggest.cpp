#include "train/recipe_suggest.h"

#include <algorithm>

namespace g4 {

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string last_component(const std::string& key) {
  const auto dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

}  // namespace

std::string closest_key(const std::string& unknown, const std::vector<std::string>& known) {
  const std::string last = last_component(unknown);
  for (const std::string& k : known)
    if (last_component(k) == last) return k;
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, unknown.size() / 4) + 1;
  for (const std::string& k : known) {
    const std::size_t d = edit_distance(unknown, k);
    if (d < best_distance) best_distance = d, best = k;
  }
  return best;
}

}  // namespace g4
