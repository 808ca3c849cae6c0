#include "data/packed_dataset.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "core/error.h"
#include "io/json.h"

namespace g4 {

namespace {

// A tokenised document and which tokens count in the loss (as the label of the token before them).
struct Document {
  std::vector<std::int64_t> ids;
  std::vector<std::uint8_t> counts;
};

void append(Document& d, const std::vector<std::int64_t>& ids, bool counts) {
  d.ids.insert(d.ids.end(), ids.begin(), ids.end());
  d.counts.insert(d.counts.end(), ids.size(), counts ? 1 : 0);
}

void append_chat(Document& d, const Json& messages, const std::string& where, const DatasetOptions& o) {
  check(messages.is_array() && !messages.empty(), "\"messages\" must be a non-empty list (", where, ")");
  for (const Json& m : messages) {
    check(m.is_object(), "each message must be an object with \"role\" and \"content\" (", where, ")");
    std::string role = json_string(json_require(m, "role", where), "role", where);
    const std::string content = json_string(json_require(m, "content", where), "content", where);
    check(role == "user" || role == "system" || role == "model" || role == "assistant", "unknown role \"",
          role, "\" (user, system, model or assistant) (", where, ")");
    if (role == "assistant") role = "model";
    // Each turn is tokenised whole: turns are separated by the added token <|turn>, so this equals tokenising
    // the whole conversation. In a model turn every token after the header "<|turn>model\n" counts.
    const auto turn = o.codec.encode("<|turn>" + role + "\n" + content + "<turn|>\n");
    std::size_t header = 0;
    if (role == "model") {
      const auto head = o.codec.encode("<|turn>model\n");
      header = std::equal(head.begin(), head.end(), turn.begin(),
                          turn.begin() + std::min(head.size(), turn.size()))
                   ? head.size()
                   : 1;
    }
    const std::size_t before = d.ids.size();
    append(d, turn, role == "model");
    for (std::size_t i = 0; i < header && before + i < d.counts.size(); ++i) d.counts[before + i] = 0;
  }
}

Document parse_document(const std::string& line, const std::string& where, const DatasetOptions& o) {
  const Json doc = parse_json_strict(line, where);
  check(doc.is_object(), "a data line must be a JSON object with \"text\", \"input_ids\" or \"messages\" (",
        where, ")");
  Document d;
  append(d, {o.codec.bos}, false);
  if (auto it = doc.find("text"); it != doc.end()) {
    check(it->is_string(), "\"text\" must be a string (", where, ")");
    append(d, o.codec.encode(it->get<std::string>()), true);
  } else if (auto mt = doc.find("messages"); mt != doc.end()) {
    append_chat(d, *mt, where, o);
  } else if (auto jt = doc.find("input_ids"); jt != doc.end()) {
    check(jt->is_array(), "\"input_ids\" must be a list of integers (", where, ")");
    std::vector<std::int64_t> ids;
    for (const Json& v : *jt) {
      check(v.is_number_integer(), "\"input_ids\" holds a non-integer ", json_excerpt(v), " (", where, ")");
      ids.push_back(v.get<std::int64_t>());
    }
    append(d, ids, true);
  } else {
    fail("a data line needs \"text\", \"input_ids\" or \"messages\" (", where, ")");
  }
  append(d, {o.codec.eos}, !doc.contains("messages"));
  for (std::int64_t id : d.ids)
    check(id >= 0 && id < o.vocab_size, "token id ", id, " is out of range for vocab_size ", o.vocab_size,
          " (", where, ")");
  return d;
}

PackedRows pack(const std::vector<Document>& docs, std::int64_t L, std::int64_t pad_id) {
  PackedRows rows;
  rows.seq_len = L;
  std::int64_t filled = 0;  // tokens in the current row
  auto pad_row = [&] {
    for (; filled > 0 && filled < L; ++filled) {
      rows.input_ids.push_back(pad_id);
      rows.position_ids.push_back(rows.position_ids.back() + 1);
      rows.labels.push_back(-100);
    }
    filled = 0;
  };
  for (const Document& d : docs) {
    if (filled + static_cast<std::int64_t>(d.ids.size()) > L)
      pad_row();  // documents are not split across rows
    for (std::size_t i = 0; i < d.ids.size(); ++i) {
      rows.input_ids.push_back(d.ids[i]);
      rows.position_ids.push_back(static_cast<std::int64_t>(i));
      rows.labels.push_back(i == 0 || !d.counts[i] ? -100 : d.ids[i]);
    }
    filled += static_cast<std::int64_t>(d.ids.size());
    if (filled == L) filled = 0;
  }
  pad_row();
  return rows;
}

}  // namespace

Batch PackedRows::batch(std::int64_t first, std::int64_t count) const {
  Batch b;
  b.batch_size = count;
  b.seq_len = seq_len;
  b.explicit_position_ids = true;
  for (std::int64_t r = 0; r < count; ++r) {
    const std::int64_t row = (first + r) % rows();
    const auto at = [&](const std::vector<std::int64_t>& v) { return v.begin() + row * seq_len; };
    b.input_ids.insert(b.input_ids.end(), at(input_ids), at(input_ids) + seq_len);
    b.position_ids.insert(b.position_ids.end(), at(position_ids), at(position_ids) + seq_len);
    b.labels.insert(b.labels.end(), at(labels), at(labels) + seq_len);
  }
  return b;
}

PackedDataset load_packed_dataset(const std::string& path, const DatasetOptions& o) {
  check(o.seq_len >= 2, "data.seq_len must be at least 2");
  std::ifstream in(path);
  check(in.good(), "cannot open data file ", path, ": ", std::strerror(errno));
  PackedDataset out;
  std::vector<Document> docs;
  std::string line;
  for (std::int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are allowed
    Document d = parse_document(line, path + ":" + std::to_string(number), o);
    if (static_cast<std::int64_t>(d.ids.size()) > o.seq_len) {
      check(o.truncate, "document at ", path, ":", number, " has ", d.ids.size(),
            " tokens, more than data.seq_len ", o.seq_len, " (set data.truncate=true to cut it)");
      d.ids.resize(static_cast<std::size_t>(o.seq_len));
      d.counts.resize(static_cast<std::size_t>(o.seq_len));
      ++out.truncated;
    }
    docs.push_back(std::move(d));
  }
  check(!docs.empty(), "no documents in ", path, " (empty dataset)");
  out.documents = static_cast<std::int64_t>(docs.size());
  std::mt19937_64 rng(o.seed);
  std::shuffle(docs.begin(), docs.end(), rng);
  const auto held_out = static_cast<std::size_t>(static_cast<double>(docs.size()) * o.eval_fraction);
  check(held_out < docs.size(), "data.eval_fraction leaves no training documents");
  const std::vector<Document> eval_docs(docs.end() - static_cast<std::ptrdiff_t>(held_out), docs.end());
  docs.resize(docs.size() - held_out);
  out.train = pack(docs, o.seq_len, o.codec.pad);
  if (!eval_docs.empty()) out.eval = pack(eval_docs, o.seq_len, o.codec.pad);
  return out;
}

}  // namespace g4
