#include "data/bpe_tokenizer.h"

#include <algorithm>
#include <climits>
#include <cstdio>

#include "core/error.h"
#include "io/json.h"

namespace g4 {

namespace {

const std::string kSpace = "\xe2\x96\x81";  // "▁"

std::size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xe) return 3;
  if ((lead >> 3) == 0x1e) return 4;
  return 1;  // invalid lead byte: one byte, handled by byte fallback
}

}  // namespace

BpeTokenizer BpeTokenizer::load(const std::string& path) {
  const Json doc = read_json_file(path);
  BpeTokenizer t;
  const Json& model = json_require(doc, "model", path);
  check(json_string(json_require(model, "type", path), "model.type", path) == "BPE",
        "only BPE tokenizers are supported (", path, ")");
  if (auto n = doc.find("normalizer"); n != doc.end() && !n->is_null()) {
    const bool ok = n->value("type", "") == "Replace" && n->contains("pattern") &&
                    (*n)["pattern"].value("String", "") == " " && n->value("content", "") == kSpace;
    check(ok, "unsupported normalizer ", json_excerpt(*n), " (only Gemma's Replace(' ', '▁')) (", path, ")");
  }
  if (auto p = doc.find("pre_tokenizer"); p != doc.end())
    check(p->is_null(), "unsupported pre_tokenizer (Gemma's tokenizer has none) (", path, ")");
  check(
      model.value("continuing_subword_prefix", Json()).is_null() || model["continuing_subword_prefix"] == "",
      "continuing_subword_prefix is not supported (", path, ")");
  const Json& vocab = json_require(model, "vocab", path);
  check(vocab.is_object(), "model.vocab must be an object (", path, ")");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const std::int64_t id = json_int(*it, "vocab", path);
    check(id >= 0 && id < (1 << 24), "vocab id ", id, " out of range (", path, ")");
    t.vocab_[it.key()] = id;
    if (static_cast<std::int64_t>(t.id_to_token_.size()) <= id)
      t.id_to_token_.resize(static_cast<std::size_t>(id) + 1);
    t.id_to_token_[static_cast<std::size_t>(id)] = it.key();
  }
  std::int64_t rank = 0;
  for (const Json& m : json_require(model, "merges", path)) {
    std::string a, b;
    if (m.is_array() && m.size() == 2) {
      a = json_string(m[0], "merges", path);
      b = json_string(m[1], "merges", path);
    } else {
      const std::string s = json_string(m, "merges", path);
      const auto sp = s.find(' ');
      check(sp != std::string::npos, "merge \"", s, "\" is not \"a b\" (", path, ")");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    }
    const auto ia = t.vocab_.find(a), ib = t.vocab_.find(b), ic = t.vocab_.find(a + b);
    check(ia != t.vocab_.end() && ib != t.vocab_.end() && ic != t.vocab_.end(), "merge \"", a, " ", b,
          "\" uses a token missing from the vocabulary (", path, ")");
    t.merges_.emplace(std::make_pair(ia->second, ib->second), std::make_pair(rank++, ic->second));
  }
  t.byte_fallback_ = model.value("byte_fallback", false);
  if (auto u = model.find("unk_token"); u != model.end() && u->is_string())
    t.unk_id_ = t.token_id(u->get<std::string>());
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    t.byte_ids_[b] = t.token_id(name);
  }
  if (auto added = doc.find("added_tokens"); added != doc.end() && added->is_array()) {
    for (const Json& a : *added) {
      const std::string content = json_string(json_require(a, "content", path), "added_tokens.content", path);
      const std::int64_t id = json_int(json_require(a, "id", path), "added_tokens.id", path);
      check(!content.empty(), "empty added token (", path, ")");
      t.added_.emplace_back(content, id);
      if (static_cast<std::int64_t>(t.id_to_token_.size()) <= id)
        t.id_to_token_.resize(static_cast<std::size_t>(id) + 1);
      t.id_to_token_[static_cast<std::size_t>(id)] = content;
    }
    std::stable_sort(t.added_.begin(), t.added_.end(),
                     [](const auto& x, const auto& y) { return x.first.size() > y.first.size(); });
  }
  return t;
}

std::int64_t BpeTokenizer::token_id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

void BpeTokenizer::encode_segment(const std::string& raw, std::vector<std::int64_t>& out) const {
  std::string text;  // normalised: " " → "▁"
  for (char c : raw) text += c == ' ' ? kSpace : std::string(1, c);
  // Initial symbols: one per UTF-8 character, or its bytes' fallback tokens.
  std::vector<std::int64_t> symbols;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = std::min(utf8_length(static_cast<unsigned char>(text[i])), text.size() - i);
    const auto it = vocab_.find(text.substr(i, n));
    if (it != vocab_.end()) {
      symbols.push_back(it->second);
    } else if (byte_fallback_ && std::all_of(text.begin() + static_cast<std::ptrdiff_t>(i),
                                             text.begin() + static_cast<std::ptrdiff_t>(i + n), [&](char c) {
                                               return byte_ids_[static_cast<unsigned char>(c)] >= 0;
                                             })) {
      for (std::size_t k = 0; k < n; ++k)
        symbols.push_back(byte_ids_[static_cast<unsigned char>(text[i + k])]);
    } else {
      check(unk_id_ >= 0, "character not in the vocabulary and no <unk> token");
      if (symbols.empty() || symbols.back() != unk_id_) symbols.push_back(unk_id_);  // fuse_unk
    }
    i += n;
  }
  // Repeatedly merge the adjacent pair of lowest rank (leftmost on ties), as the BPE model does.
  while (symbols.size() > 1) {
    std::int64_t best_rank = LLONG_MAX, best_id = -1;
    std::size_t best_at = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      const auto it = merges_.find({symbols[i], symbols[i + 1]});
      if (it != merges_.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        best_id = it->second.second;
        best_at = i;
      }
    }
    if (best_id < 0) break;
    symbols[best_at] = best_id;
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
  }
  out.insert(out.end(), symbols.begin(), symbols.end());
}

std::vector<std::int64_t> BpeTokenizer::encode(const std::string& text) const {
  std::vector<std::int64_t> ids;
  std::size_t start = 0, i = 0;
  while (i < text.size()) {
    const std::pair<std::string, std::int64_t>* match = nullptr;
    for (const auto& a : added_)
      if (text.compare(i, a.first.size(), a.first) == 0) {
        match = &a;
        break;  // longest first
      }
    if (!match) {
      ++i;
      continue;
    }
    if (i > start) encode_segment(text.substr(start, i - start), ids);
    ids.push_back(match->second);
    i += match->first.size();
    start = i;
  }
  if (start < text.size()) encode_segment(text.substr(start), ids);
  return ids;
}

std::string BpeTokenizer::decode(const std::vector<std::int64_t>& ids) const {
  std::string out;
  for (std::int64_t id : ids) {
    check(id >= 0 && id < vocab_size(), "token id ", id, " is out of range for the tokenizer");
    const std::string& tok = id_to_token_[static_cast<std::size_t>(id)];
    if (tok.size() == 6 && tok.rfind("<0x", 0) == 0 && tok.back() == '>') {
      out.push_back(static_cast<char>(std::stoi(tok.substr(3, 2), nullptr, 16)));
      continue;
    }
    for (std::size_t i = 0; i < tok.size();) {
      if (tok.compare(i, kSpace.size(), kSpace) == 0) {
        out.push_back(' ');
        i += kSpace.size();
      } else {
        out.push_back(tok[i++]);
      }
    }
  }
  return out;
}

}  // namespace g4
