#include "data/documents.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/image_decode.h"
#include "data/image_processor.h"
#include "io/json.h"

namespace fs = std::filesystem;

namespace g4 {

bool Document::has_target() const {
  return std::find(counts.begin() + std::min<std::ptrdiff_t>(1, static_cast<std::ptrdiff_t>(counts.size())),
                   counts.end(), 1) != counts.end();
}

namespace {

// The tokenizer's own errors (a character it cannot encode) gain the place of the text.
std::vector<std::int64_t> encode(const DatasetOptions& o, const std::string& text, const std::string& where) {
  try {
    return o.tokenizer.encode(text);
  } catch (const Error& e) {
    fail(e.what(), " (", where, ")");
  }
}

void append(Document& d, const std::vector<std::int64_t>& ids, bool counts) {
  d.ids.insert(d.ids.end(), ids.begin(), ids.end());
  d.counts.insert(d.counts.end(), ids.size(), counts ? 1 : 0);
}

// An image part: read and sized now, so that a missing or corrupt image fails at load, naming the data line.
DocumentImage read_image_part(const Json& part, const std::string& where, const std::string& base_dir,
                              const DatasetOptions& o) {
  check(o.images.placeholder >= 0, "an image in the data, but the model takes no images (no vision_config) (",
        where, ")");
  for (const std::int64_t id : {o.images.begin, o.images.placeholder, o.images.end})
    check(id >= 0 && id < o.vocab_size, "the model's image token id ", id,
          " (boi_token_id, image_token_id, eoi_token_id of its config.json) is outside its vocabulary of ",
          o.vocab_size, " (", where, ")");
  const auto path = part.find("path");
  check(path != part.end() && path->is_string() && !path->get<std::string>().empty(),
        "an image part needs \"path\": a local file, relative to the data file (", where, ")");
  const fs::path file = fs::path(base_dir) / path->get<std::string>();
  try {
    const RgbImage image = read_image_file(file.string());
    const auto [h, w] = o.images.processor.do_resize
                            ? target_image_size(image.height, image.width, o.images.processor, file.string())
                            : std::array<std::int64_t, 2>{image.height, image.width};
    const std::int64_t p = o.images.processor.patch_size, k = o.images.processor.pooling_kernel_size;
    check(h % (p * k) == 0 && w % (p * k) == 0, file.string(), ": ", w, "x", h,
          " pixels is not a whole number of pooled patches (do_resize is off)");
    return DocumentImage{file.string(), (h / p) * (w / p) / (k * k)};
  } catch (const Error& e) {
    fail(e.what(), " (", where, ")");
  }
}

void append_chat(Document& d, const Json& messages, const std::string& where, const std::string& base_dir,
                 const DatasetOptions& o) {
  check(messages.is_array() && !messages.empty(), "\"messages\" must be a non-empty list (", where, ")");
  for (const Json& m : messages) {
    check(m.is_object(), "each message must be an object with \"role\" and \"content\" (", where, ")");
    std::string role = json_string(json_require(m, "role", where), "role", where);
    check(role == "user" || role == "system" || role == "model" || role == "assistant", "unknown role \"",
          role, "\" (user, system, model or assistant) (", where, ")");
    if (role == "assistant") role = "model";
    // A turn is its text tokenised in pieces between images: <|turn> and the image tokens are added tokens,
    // which a tokenizer splits at, so this equals tokenising the whole rendered conversation. In a model turn
    // every token after the header "<|turn>model\n" counts, image tokens never.
    std::vector<std::int64_t> turn;
    std::vector<std::uint8_t> is_image;
    std::string text = "<|turn>" + role + "\n";
    const auto flush_text = [&] {
      const auto ids = encode(o, text, where);
      for (std::int64_t id : ids)
        check(
            id != o.images.placeholder || o.images.placeholder < 0,
            "the text holds the image placeholder token itself; give images as {\"type\": \"image\"} parts (",
            where, ")");
      turn.insert(turn.end(), ids.begin(), ids.end());
      is_image.insert(is_image.end(), ids.size(), 0);
      text.clear();
    };
    const Json& content = json_require(m, "content", where);
    if (content.is_array()) {
      for (const Json& part : content) {
        check(part.is_object() && part.contains("type") && part["type"].is_string(),
              "each content part must be an object with \"type\" \"text\" or \"image\" (", where, ")");
        const std::string type = part["type"].get<std::string>();
        if (type == "text") {
          text += json_string(json_require(part, "text", where), "text", where);
        } else if (type == "image") {
          flush_text();
          const DocumentImage image = read_image_part(part, where, base_dir, o);
          turn.push_back(o.images.begin);
          turn.insert(turn.end(), static_cast<std::size_t>(image.soft_tokens), o.images.placeholder);
          turn.push_back(o.images.end);
          is_image.insert(is_image.end(), static_cast<std::size_t>(image.soft_tokens) + 2, 1);
          d.images.push_back(image);
        } else {
          fail("unknown content part type \"", one_line(type), "\" (text or image) (", where, ")");
        }
      }
    } else {
      text += json_string(content, "content", where);
    }
    text += "<turn|>\n";
    flush_text();
    std::size_t header = 0;
    if (role == "model") {
      const auto head = encode(o, "<|turn>model\n", where);
      header = std::equal(head.begin(), head.end(), turn.begin(),
                          turn.begin() + std::min(head.size(), turn.size()))
                   ? head.size()
                   : 1;
    }
    const std::size_t before = d.ids.size();
    append(d, turn, role == "model");
    for (std::size_t i = 0; i < header && before + i < d.counts.size(); ++i) d.counts[before + i] = 0;
    for (std::size_t i = 0; i < is_image.size(); ++i)
      if (is_image[i]) d.counts[before + i] = 0;
  }
}

std::string string_field(const Json& doc, const char* key, const std::string& where) {
  const auto it = doc.find(key);
  check(it != doc.end(), "a \"prompt\" line needs \"prompt\" and \"completion\" (", where, ")");
  check(it->is_string(), "\"", key, "\" must be a string, got ", json_excerpt(*it), " (", where, ")");
  return it->get<std::string>();
}

// The EOS counts unless the document is a chat (the model's turn ends with <turn|>, its own end).
Document parse_line(const std::string& line, const std::string& where, const std::string& base_dir,
                    const DatasetOptions& o) {
  const Json doc = parse_json_strict(line, where);
  check(doc.is_object(),
        "a data line must be a JSON object with \"text\", \"input_ids\", \"messages\" or \"prompt\" and "
        "\"completion\" (",
        where, ")");
  Document d;
  append(d, {o.tokenizer.bos}, false);
  if (auto it = doc.find("text"); it != doc.end()) {
    check(it->is_string(), "\"text\" must be a string (", where, ")");
    append(d, encode(o, it->get<std::string>(), where), true);
  } else if (auto mt = doc.find("messages"); mt != doc.end()) {
    append_chat(d, *mt, where, base_dir, o);
  } else if (auto jt = doc.find("input_ids"); jt != doc.end()) {
    check(jt->is_array(), "\"input_ids\" must be a list of integers (", where, ")");
    std::vector<std::int64_t> ids;
    for (const Json& v : *jt) {
      check(v.is_number_integer(), "\"input_ids\" holds a non-integer ", json_excerpt(v), " (", where, ")");
      ids.push_back(v.get<std::int64_t>());
    }
    append(d, ids, true);
  } else if (doc.contains("prompt") || doc.contains("completion")) {
    // TRL's completion-only loss: the prompt is context, the completion the target.
    append(d, encode(o, string_field(doc, "prompt", where), where), false);
    append(d, encode(o, string_field(doc, "completion", where), where), true);
  } else {
    fail("a data line needs \"text\", \"input_ids\", \"messages\" or \"prompt\" and \"completion\" (", where,
         ")");
  }
  append(d, {o.tokenizer.eos}, !doc.contains("messages"));
  return d;
}

Document text_document(const std::string& text, const std::string& where, const DatasetOptions& o) {
  Document d;
  append(d, {o.tokenizer.bos}, false);
  append(d, encode(o, require_utf8(text, where), where), true);
  append(d, {o.tokenizer.eos}, true);
  return d;
}

bool blank(const std::string& line) {
  return line.find_first_not_of(" \t\r\f\v") == std::string::npos;
}

// Checks ids and length, then keeps the document (truncated if allowed).
void keep(DocumentSource& out, Document d, const std::string& where, const DatasetOptions& o) {
  for (std::int64_t id : d.ids)
    check(id >= 0 && id < o.vocab_size, "token id ", id, " is out of range for vocab_size ", o.vocab_size,
          " (", where, ")");
  if (static_cast<std::int64_t>(d.ids.size()) > o.seq_len) {
    check(o.truncate, "document at ", where, " has ", d.ids.size(), " tokens, more than data.seq_len ",
          o.seq_len, " (set data.truncate=true to cut it)");
    if (!d.images.empty()) {  // the last image must end inside the row: an image is never cut
      const auto last_end = std::find(d.ids.rbegin(), d.ids.rend(), o.images.end);
      const std::int64_t end = static_cast<std::int64_t>(d.ids.rend() - last_end);  // one past <image|>
      check(end <= o.seq_len, "document at ", where, " has an image whose tokens end at ", end,
            ", beyond data.seq_len ", o.seq_len,
            ": truncation would cut it (raise data.seq_len, or lower the ",
            "image processor's max_soft_tokens)");
    }
    d.ids.resize(static_cast<std::size_t>(o.seq_len));
    d.counts.resize(static_cast<std::size_t>(o.seq_len));
    ++out.truncated;
  }
  out.documents.push_back(std::move(d));
}

std::ifstream open_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open data file ", path, ": ", std::strerror(errno));
  return in;
}

void read_jsonl(DocumentSource& out, const std::string& path, const DatasetOptions& o) {
  std::ifstream in = open_file(path);
  std::string line;
  for (std::int64_t number = 1; std::getline(in, line); ++number) {
    if (blank(line)) continue;  // blank lines are allowed
    const std::string where = path + ":" + std::to_string(number);
    keep(out, parse_line(line, where, fs::path(path).parent_path().string(), o), where, o);
  }
}

void read_text(DocumentSource& out, const std::string& path, const DatasetOptions& o) {
  std::ifstream in = open_file(path);
  std::string line, text;
  std::int64_t start = 0;  // line number where `text` begins; 0: no document open
  const auto close = [&] {
    if (start > 0) {
      const std::string where = path + ":" + std::to_string(start);
      keep(out, text_document(text, where, o), where, o);
    }
    text.clear();
    start = 0;
  };
  for (std::int64_t number = 1; std::getline(in, line); ++number) {
    if (blank(line)) {
      close();
      continue;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    text += start > 0 ? "\n" + line : line;
    if (start == 0) start = number;
  }
  close();
}

bool is_text_file(const std::string& path) {
  return path.size() >= 4 && path.compare(path.size() - 4, 4, ".txt") == 0;
}

}  // namespace

DocumentSource read_documents(const std::string& path, const DatasetOptions& o) {
  DocumentSource out;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    // increment(ec) rather than a range-for, whose ++ throws std::filesystem_error.
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
      if (std::error_code file_ec;
          is_text_file(it->path().filename().string()) && it->is_regular_file(file_ec))
        files.push_back(it->path().string());
    check(!ec, "cannot list data directory ", path, ": ", ec.message());
    check(!files.empty(), "no .txt files in data directory ", path);
    std::sort(files.begin(), files.end());
    for (const std::string& f : files) read_text(out, f, o);
  } else if (is_text_file(path)) {
    read_text(out, path, o);
  } else {
    read_jsonl(out, path, o);
  }
  return out;
}

}  // namespace g4
