// regex.h: <regex>, included with GCC 12's -Wmaybe-uninitialized silenced for its own text only: at -O2 with
// the sanitizers GCC 12 reports a false positive inside libstdc++'s regex compiler (std::function moved out
// of a _State). Include this instead of <regex> so that builds stay warning-free; our own code is unaffected.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
