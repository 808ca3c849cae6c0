#include "core/gemma4_config.h"

namespace g4 {

std::string_view attention_kind_name(AttentionKind kind) {
  return kind == AttentionKind::sliding ? "sliding_attention" : "full_attention";
}

}  // namespace g4
