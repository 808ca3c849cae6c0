// recipe_suggest.h: "did you mean" for an unknown recipe key.
#pragma once

#include <string>
#include <vector>

namespace g4 {

// The known key an unknown dotted key most likely meant, or "" if none is close. First a key with the same
// last component in another section (train.seq_len -> data.seq_len), else the key within a small edit
// distance (Levenshtein on the whole dotted key: at most 2, or a quarter of its length for long keys).
std::string closest_key(const std::string& unknown, const std::vector<std::string>& known);

}  // namespace g4
