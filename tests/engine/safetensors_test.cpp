#include "engine/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/bf16.h"
#include "tests/engine/temp_dir.h"

namespace engine {
namespace {

namespace fs = std::filesystem;

// One test's directory (tests/engine/temp_dir.h).
class TempDir : public sytest::EngineTempDir {
 public:
  TempDir() : EngineTempDir("safetensors") {}
};

// 8-byte little-endian length (the header's own unless `declared` is given) + header + data.
std::string image(const std::string& header, const std::string& data,
                  uint64_t declared = UINT64_MAX) {
  uint64_t n = declared == UINT64_MAX ? header.size() : declared;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + data;
}

void writeBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void expectMentions(const api::Status& status, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), api::ErrorCode::kIo);
  for (const std::string& p : parts) {
    EXPECT_NE(status.message().find(p), std::string::npos)
        << "'" << status.message() << "' does not mention '" << p << "'";
  }
}

// Opens a file holding `bytes` and returns the status.
api::Status openBytes(const TempDir& dir, const std::string& bytes, std::string* path = nullptr) {
  std::string p = dir.file("model.safetensors");
  writeBytes(p, bytes);
  if (path) *path = p;
  return SafetensorsFile::open(p).status();
}

// A one-tensor header for tensor "w" with the given fields spliced in.
std::string oneTensor(const std::string& dtype, const std::string& shape,
                      const std::string& offsets) {
  return R"({"w":{"dtype":)" + dtype + R"(,"shape":)" + shape + R"(,"data_offsets":)" + offsets +
         "}}";
}

TEST(SafetensorsFile, ReadsTensorsMetadataAndNamesInDataOrder) {
  TempDir dir;
  std::string data(12 + 8, '\0');
  const uint16_t bf[6] = {floatToBf16(1.0f), floatToBf16(-2.0f), floatToBf16(0.5f),
                          floatToBf16(3.0f), floatToBf16(0.0f),  floatToBf16(-0.25f)};
  const float f32[2] = {1.5f, -7.0f};
  std::memcpy(&data[8], bf, 12);  // "b" first in the data, "a" second
  std::memcpy(&data[0], f32, 8);
  std::string header = R"({"__metadata__":{"format":"pt"},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("a":{"dtype":"BF16","shape":[2,3],"data_offsets":[8,20]}})";
  std::string path = dir.file("m.safetensors");
  writeBytes(path, image(header, data));
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  const SafetensorsFile& f = **file;
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const TensorView* a = f.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kBF16);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->bytes, 12u);
  EXPECT_EQ(a->numel(), 6);
  uint16_t words[6];
  std::memcpy(words, a->data, sizeof words);
  EXPECT_EQ(bf16ToFloat(words[1]), -2.0f);
  EXPECT_EQ(bf16ToFloat(words[5]), -0.25f);
  const TensorView* b = f.find("b");
  ASSERT_NE(b, nullptr);
  // This hand-made header is not padded, so the data may be unaligned: read it bytewise.
  float second = 0;
  std::memcpy(&second, static_cast<const char*>(b->data) + 4, 4);
  EXPECT_EQ(second, -7.0f);
  EXPECT_EQ(f.find("c"), nullptr);
  EXPECT_EQ(f.fileBytes(), 8 + header.size() + data.size());
}

TEST(SafetensorsFile, AcceptsScalarAndZeroSizeTensors) {
  TempDir dir;
  std::string header = R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                       R"("z":{"dtype":"BF16","shape":[0,3],"data_offsets":[4,4]},)"
                       R"("z2":{"dtype":"BF16","shape":[3,0],"data_offsets":[0,0]}})";
  EXPECT_TRUE(openBytes(dir, image(header, std::string(4, '\0'))).ok());
}

TEST(SafetensorsFile, AcceptsAllFormatDtypes) {
  for (const char* name : {"BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
                           "F64", "I64", "U64", "F8_E4M3", "F8_E5M2"}) {
    std::optional<DType> d = parseDType(name);
    ASSERT_TRUE(d.has_value()) << name;
    EXPECT_EQ(dtypeName(*d), name);
  }
  EXPECT_EQ(dtypeSize(DType::kBF16), 2u);
  EXPECT_EQ(dtypeSize(DType::kF64), 8u);
  EXPECT_FALSE(parseDType("bf16").has_value());
}

TEST(SafetensorsFile, ReportsMissingFile) {
  TempDir dir;
  auto file = SafetensorsFile::open(dir.file("absent.safetensors"));
  expectMentions(file.status(), {"absent.safetensors"});
}

TEST(SafetensorsFile, RejectsFileShorterThanEightBytes) {
  TempDir dir;
  std::string path;
  expectMentions(openBytes(dir, "abcde", &path), {path, "shorter than"});
  expectMentions(openBytes(dir, "", &path), {path});
}

TEST(SafetensorsFile, RejectsAbsurdHeaderLength) {
  TempDir dir;
  std::string path;
  expectMentions(openBytes(dir, image("{}", "", 200'000'000), &path), {path, "absurd"});
  expectMentions(openBytes(dir, image("{}", "", UINT64_MAX - 1)), {"absurd"});
}

TEST(SafetensorsFile, RejectsHeaderLengthBeyondFile) {
  TempDir dir;
  std::string path;
  expectMentions(openBytes(dir, image("{}", "", 1000), &path), {path, "past the end"});
}

TEST(SafetensorsFile, RejectsHeaderThatIsNotJsonOrNotAnObject) {
  TempDir dir;
  std::string path;
  expectMentions(openBytes(dir, image("{\"w\": ", ""), &path), {path, "not valid JSON"});
  expectMentions(openBytes(dir, image("[1, 2]", "")), {"not a JSON object"});
  expectMentions(openBytes(dir, image("\"text\"", "")), {"not a JSON object"});
  expectMentions(openBytes(dir, image(std::string("{\"a\xff\":1}"), "")), {"not valid JSON"});
}

TEST(SafetensorsFile, RejectsDuplicateKeys) {
  TempDir dir;
  std::string header = R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                       R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})";
  std::string path;
  expectMentions(openBytes(dir, image(header, "ab"), &path), {path, "duplicate", "'w'"});
  std::string inner = R"({"w":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  expectMentions(openBytes(dir, image(inner, "a")), {"duplicate", "'dtype'"});
}

TEST(SafetensorsFile, RejectsDeeplyNestedHeader) {
  TempDir dir;
  std::string deep = R"({"w":{"dtype":"U8","shape":[[[[[1]]]]],"data_offsets":[0,1]}})";
  expectMentions(openBytes(dir, image(deep, "a")), {"deeper"});
}

TEST(SafetensorsFile, RejectsUnknownDtype) {
  TempDir dir;
  std::string path;
  expectMentions(openBytes(dir, image(oneTensor("\"BF17\"", "[1]", "[0,2]"), "ab"), &path),
                 {path, "tensor 'w'", "unknown dtype 'BF17'"});
  expectMentions(openBytes(dir, image(oneTensor("16", "[1]", "[0,2]"), "ab")),
                 {"tensor 'w'", "dtype"});
}

TEST(SafetensorsFile, RejectsShapeThatIsNotAListOfNonNegativeInts) {
  TempDir dir;
  for (const char* shape :
       {"[-1]", "[1.5]", "[\"2\"]", "2", "{}", "[true]", "[18446744073709551615]", "null"}) {
    std::string path;
    expectMentions(openBytes(dir, image(oneTensor("\"U8\"", shape, "[0,2]"), "ab"), &path),
                   {path, "tensor 'w'", "shape"});
  }
}

TEST(SafetensorsFile, RejectsMalformedDataOffsets) {
  TempDir dir;
  for (const char* offsets : {"[2,0]", "[0]", "[0,1,2]", "[0,-1]", "[0,1.0]", "\"0,1\"", "null"}) {
    std::string path;
    expectMentions(openBytes(dir, image(oneTensor("\"U8\"", "[1]", offsets), "ab"), &path),
                   {path, "tensor 'w'", "data_offsets"});
  }
  std::string missing = R"({"w":{"dtype":"U8","shape":[1]}})";
  expectMentions(openBytes(dir, image(missing, "a")), {"tensor 'w'", "data_offsets"});
}

TEST(SafetensorsFile, RejectsDataBeyondTheDataSection) {
  TempDir dir;
  std::string path;
  expectMentions(openBytes(dir, image(oneTensor("\"U8\"", "[4]", "[0,4]"), "abc"), &path),
                 {path, "tensor 'w'", "beyond the data section"});
}

TEST(SafetensorsFile, RejectsSizeOtherThanShapeTimesDtype) {
  TempDir dir;
  std::string path;
  expectMentions(openBytes(dir, image(oneTensor("\"BF16\"", "[2,2]", "[0,6]"), "abcdef"), &path),
                 {path, "tensor 'w'", "need 8"});
  // A shape whose element count overflows 64 bits, and one whose byte count does.
  expectMentions(
      openBytes(dir, image(oneTensor("\"F32\"", "[4294967296,4294967296]", "[0,4]"), "abcd")),
      {"tensor 'w'", "2^63 elements"});
  expectMentions(
      openBytes(dir, image(oneTensor("\"F32\"", "[2305843009213693952,2]", "[0,4]"), "abcd")),
      {"tensor 'w'", "2^64"});
}

TEST(SafetensorsFile, RejectsEmptyShapeWhoseOtherDimsOverflow) {
  TempDir dir;
  // A zero dim makes the tensor empty, but numel() still multiplies the dims before it.
  expectMentions(
      openBytes(dir, image(oneTensor("\"U8\"", "[9223372036854775807,2,0]", "[0,0]"), "")),
      {"tensor 'w'", "2^63 elements"});
  std::string fits = image(oneTensor("\"U8\"", "[4294967296,0,2147483647]", "[0,0]"), "");
  auto ok = SafetensorsFile::fromMemory(fits.data(), fits.size(), "mem");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ((*ok)->find("w")->numel(), 0);
}

TEST(SafetensorsFile, RejectsOverlappingTensors) {
  TempDir dir;
  std::string header = R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})";
  std::string path;
  expectMentions(openBytes(dir, image(header, std::string(12, 'x')), &path),
                 {path, "overlaps", "'a'", "'b'"});
  std::string inside =  // "c" lies wholly inside "a"
      R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
      R"("c":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})";
  expectMentions(openBytes(dir, image(inside, std::string(8, 'x'))), {"overlaps"});
}

TEST(SafetensorsFile, RejectsNonStringMetadata) {
  TempDir dir;
  expectMentions(openBytes(dir, image(R"({"__metadata__":{"n":1}})", "")), {"__metadata__"});
  expectMentions(openBytes(dir, image(R"({"__metadata__":[]})", "")), {"__metadata__"});
}

TEST(SafetensorsFile, ValidatesInMemoryImages) {
  std::string good = image(oneTensor("\"U8\"", "[2]", "[0,2]"), "ab");
  auto ok = SafetensorsFile::fromMemory(good.data(), good.size(), "mem");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(std::memcmp((*ok)->find("w")->data, "ab", 2), 0);
  std::string bad = image(oneTensor("\"U8\"", "[3]", "[0,3]"), "ab");
  expectMentions(SafetensorsFile::fromMemory(bad.data(), bad.size(), "mem").status(),
                 {"mem", "tensor 'w'"});
  expectMentions(SafetensorsFile::fromMemory("abc", 3, "mem").status(), {"mem"});
}

TEST(SafetensorsWriter, RoundTripsAndAlignsTheDataSection) {
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  std::vector<TensorSpec> specs = {{"y", DType::kF32, {2}}, {"x", DType::kBF16, {3}}};
  auto writer = SafetensorsWriter::create(path, specs, {{"format", "pt"}});
  ASSERT_TRUE(writer.ok()) << writer.status().message();
  const uint16_t x[3] = {floatToBf16(1), floatToBf16(2), floatToBf16(3)};
  const float y[2] = {4, 5};
  ASSERT_TRUE((*writer)->append(y, 8).ok());
  ASSERT_TRUE((*writer)->append(x, 4).ok());  // in pieces of any size
  ASSERT_TRUE((*writer)->append(reinterpret_cast<const char*>(x) + 4, 2).ok());
  ASSERT_TRUE((*writer)->finish().ok());

  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ((*file)->names(), (std::vector<std::string>{"y", "x"}));
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_EQ(bf16ToFloat(static_cast<const uint16_t*>((*file)->find("x")->data)[2]), 3.0f);
  EXPECT_EQ(static_cast<const float*>((*file)->find("y")->data)[1], 5.0f);
  const size_t data_start = (*file)->fileBytes() - 14;
  EXPECT_EQ(data_start % 8, 0u);
}

TEST(SafetensorsWriter, RejectsTooFewOrTooManyBytes) {
  TempDir dir;
  std::vector<TensorSpec> specs = {{"x", DType::kF32, {2}}};
  auto short_writer = SafetensorsWriter::create(dir.file("a.safetensors"), specs);
  ASSERT_TRUE(short_writer.ok());
  ASSERT_TRUE((*short_writer)->append("abcd", 4).ok());
  expectMentions((*short_writer)->finish(), {"a.safetensors", "4 tensor bytes written"});
  auto long_writer = SafetensorsWriter::create(dir.file("b.safetensors"), specs);
  ASSERT_TRUE(long_writer.ok());
  expectMentions((*long_writer)->append("0123456789", 10), {"more tensor bytes"});
  expectMentions(
      SafetensorsWriter::create(dir.file("c.safetensors"), {specs[0], specs[0]}).status(),
      {"duplicate"});
  std::vector<TensorSpec> misaligned = {{"b", DType::kBF16, {3}}, {"f", DType::kF32, {2}}};
  expectMentions(SafetensorsWriter::create(dir.file("d.safetensors"), misaligned).status(),
                 {"tensor 'f'", "byte 6"});
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(roundBf16(33.941125f), 34.0f);  // gemma-spec §6.2: bf16(sqrt(1152))
  EXPECT_EQ(roundBf16(25.298221f), 25.25f);
  EXPECT_EQ(roundBf16(73.321211f), 73.5f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(roundBf16(1.0f + 0x1p-8f), 1.0f);
  EXPECT_EQ(roundBf16(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);
  EXPECT_TRUE(std::isnan(roundBf16(std::nanf(""))));
  EXPECT_EQ(f16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(f16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(f16ToFloat(0x0001), 0x1p-24f);
  EXPECT_TRUE(std::isinf(f16ToFloat(0x7c00)));
}

}  // namespace
}  // namespace engine
