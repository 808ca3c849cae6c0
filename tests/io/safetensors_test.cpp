#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "test_errors.h"
#include "test_paths.h"

namespace g4 {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A safetensors image from a raw header text and a data section.
std::string image(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + data;
}

std::string error_of(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, WritesAndReadsEveryDtype) {
  const std::string dir = test::scratch_dir("st_dtypes");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (DType d :
       {DType::bf16, DType::f16, DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean, DType::u8}) {
    Tensor t(d, {2, 3});
    for (std::size_t i = 0; i < t.nbytes(); ++i) t.bytes()[i] = static_cast<std::byte>(i * 7 + 1);
    tensors.emplace_back(std::string("t.") + std::string(dtype_name(d)), t);
  }
  write_safetensors(dir + "/a.safetensors", tensors);
  auto file = SafetensorsFile::open(dir + "/a.safetensors");
  ASSERT_EQ(file->tensors().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    const TensorInfo* info = file->find(name);
    ASSERT_NE(info, nullptr) << name;
    EXPECT_EQ(info->dtype, t.dtype());
    EXPECT_EQ(info->shape, t.shape());
    EXPECT_EQ(std::memcmp(file->view(*info).data, t.bytes(), t.nbytes()), 0) << name;
  }
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_FALSE(fs::exists(dir + "/a.safetensors.tmp"));
}

TEST(Safetensors, ZeroSizedAndScalarTensors) {
  const std::string dir = test::scratch_dir("st_empty");
  write_safetensors(dir + "/e.safetensors",
                    {{"empty", Tensor(DType::f32, {0, 4})}, {"scalar", Tensor(DType::f32, {})}});
  auto file = SafetensorsFile::open(dir + "/e.safetensors");
  EXPECT_EQ(file->find("empty")->shape, (Shape{0, 4}));
  EXPECT_EQ(file->find("scalar")->end - file->find("scalar")->begin, 4u);
}

struct BadCase {
  const char* name;
  std::string bytes;
  const char* expected_message;
};

TEST(Safetensors, RejectsBadFilesWithOneClearLine) {
  const std::string ok_entry = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::vector<BadCase> cases = {
      {"too_short", "abc", "too short"},
      {"header_past_end", image(ok_entry, std::string(8, '\0')).substr(0, 20),
       "runs past the end of the file"},
      {"invalid_json", image("{\"a\":", std::string(8, '\0')), "invalid JSON"},
      {"not_object", image("[1,2]", ""), "not a JSON object"},
      {"unknown_dtype", image(R"({"a":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", "xx"),
       "unknown dtype \"F8\""},
      {"offsets_out_of_range", image(ok_entry, std::string(4, '\0')), "run past the end of the data section"},
      {"size_mismatch",
       image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')), "needs 12"},
      {"overlap",
       image(
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
           std::string(12, '\0')),
       "overlap"},
      {"duplicate",
       image(
           R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           std::string(8, '\0')),
       "duplicate key \"a\""},
      {"negative_dim",
       image(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')),
       "negative dimension"},
      // Element counts and byte sizes that leave 64 bits (2^64 elements; 2^62 F32 elements = 2^64 bytes).
      {"numel_overflow",
       image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
             std::string(4, '\0')),
       "shape too large"},
      {"bytes_overflow",
       image(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}})",
             std::string(4, '\0')),
       "byte size overflows"},
      {"reversed_offsets",
       image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", std::string(4, '\0')),
       "not a valid range"},
      {"missing_shape", image(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", std::string(4, '\0')),
       "missing key \"shape\""},
      {"metadata_not_strings", image(R"({"__metadata__":{"x":1}})", ""), "not a string"},
  };
  const std::string dir = test::scratch_dir("st_bad");
  for (const BadCase& c : cases) {
    const std::string path = dir + "/" + c.name + ".safetensors";
    write_file(path, c.bytes);
    const std::string message = error_of(path);
    EXPECT_NE(message.find(c.expected_message), std::string::npos) << c.name << ": " << message;
    EXPECT_NE(message.find(path), std::string::npos) << c.name << " does not name the file: " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << c.name;
  }
}

TEST(Safetensors, TruncatedFileIsRejected) {
  const std::string dir = test::scratch_dir("st_trunc");
  write_safetensors(dir + "/w.safetensors", {{"w", Tensor(DType::f32, {16, 16})}});
  std::string bytes = read_file(dir + "/w.safetensors");
  write_file(dir + "/cut.safetensors", bytes.substr(0, bytes.size() - 100));
  EXPECT_NE(error_of(dir + "/cut.safetensors").find("truncated"), std::string::npos);
}

TEST(ShardedWriter, ShardsBySizeAndWritesAnIndex) {
  const std::string dir = test::scratch_dir("st_sharded");
  std::vector<TensorDecl> decls;
  std::vector<Tensor> data;
  for (int i = 0; i < 5; ++i) {
    decls.push_back({"layer." + std::to_string(i), DType::f32, {64}});  // 256 bytes each
    Tensor t(DType::f32, {64});
    for (int j = 0; j < 64; ++j) t.f32()[j] = static_cast<float>(i * 100 + j);
    data.push_back(t);
  }
  ShardedWriter writer(dir, decls, 600);  // two tensors per shard
  for (int i = 0; i < 5; ++i) writer.write(decls[i].name, data[i].bytes());
  writer.finish();
  EXPECT_EQ(writer.num_shards(), 3u);
  EXPECT_TRUE(fs::exists(dir + "/model-00003-of-00003.safetensors"));
  const Checkpoint ckpt = Checkpoint::open(dir);
  EXPECT_EQ(ckpt.names().size(), 5u);
  EXPECT_EQ(ckpt.read_f32("layer.4").f32()[3], 403.0f);
  EXPECT_NE(ckpt.file_of("layer.4").find("model-00003-of-00003"), std::string::npos);
}

TEST(Checkpoint, MissingShardIsNamed) {
  const std::string dir = test::scratch_dir("ck_missing");
  ShardedWriter writer(dir, {{"a", DType::f32, {64}}, {"b", DType::f32, {64}}}, 300);
  Tensor t(DType::f32, {64});
  writer.write("a", t.bytes());
  writer.write("b", t.bytes());
  writer.finish();
  fs::remove(dir + "/model-00002-of-00002.safetensors");
  try {
    Checkpoint::open(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing shard"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model-00002-of-00002.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, IndexNamingATensorTheShardLacks) {
  const std::string dir = test::scratch_dir("ck_lacks");
  write_safetensors(dir + "/s1.safetensors", {{"a", Tensor(DType::f32, {2})}});
  write_file(dir + "/model.safetensors.index.json",
             R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})");
  try {
    Checkpoint::open(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor b is listed"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, ShardNameCannotLeaveTheDirectory) {
  const std::string dir = test::scratch_dir("ck_escape");
  write_file(dir + "/model.safetensors.index.json", R"({"weight_map":{"a":"../x.safetensors"}})");
  EXPECT_THROW(Checkpoint::open(dir), Error);
}

TEST(Safetensors, WriterLeavesNoFileWhenAbandoned) {
  const std::string dir = test::scratch_dir("st_abandon");
  {
    SafetensorsWriter writer(dir + "/x.safetensors", {{"a", DType::f32, {2}}, {"b", DType::f32, {2}}});
    float v[2] = {1, 2};
    writer.write("a", v);
  }
  EXPECT_FALSE(fs::exists(dir + "/x.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/x.safetensors.tmp"));
}

TEST(SafetensorsWriter, TensorDeclarationsRefuseByteSizesThatWrap) {
  const TensorDecl decl{"model.embed_tokens.weight", DType::f32, {std::int64_t{1} << 62}};
  const std::string decl_error = test::error_of([&] { (void)decl.nbytes(); });
  EXPECT_NE(decl_error.find("tensor model.embed_tokens.weight: byte size overflows"), std::string::npos)
      << decl_error;
  EXPECT_EQ((TensorDecl{"x", DType::bf16, {3, 5}}.nbytes()), 30u);
}

}  // namespace
}  // namespace g4
