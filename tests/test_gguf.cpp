// GGUF reader/writer: round trips, accessors and their errors, type-id conventions,
// writer checks, and byte-exact agreement with the worked examples of shared/spec/gguf.md.
#include <bitnet/gguf.hpp>

#include <gtest/gtest.h>

#include <algorithm>    // std::equal, std::search
#include <bit>          // std::bit_cast for exact float comparisons
#include <cmath>        // std::isnan
#include <cstdint>      // fixed-width integers
#include <cstdio>       // std::remove
#include <limits>       // extreme values
#include <optional>     // optional architecture
#include <random>       // deterministic tensor bytes
#include <string>       // names
#include <vector>       // buffers

namespace {

namespace gguf = bitnet::gguf;
using bitnet::tensor_type;

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

std::uint64_t pad(std::uint64_t x, std::uint64_t a) { return (x + a - 1) / a * a; }

std::vector<std::uint8_t> le(std::uint64_t v, int n) {
  std::vector<std::uint8_t> out;
  for (int i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  return out;
}

// Error message of `f()`, or "" if it did not throw gguf::error.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const gguf::error& e) {
    return e.what();
  }
  return "";
}

TEST(GgufWriter, ScalarsRoundTripWithTheirTypes) {
  gguf::writer w;
  w.set_u8("t.u8", std::uint8_t{255});
  w.set_i8("t.i8", std::int8_t{-128});
  w.set_u16("t.u16", std::uint16_t{65535});
  w.set_i16("t.i16", std::int16_t{-32768});
  w.set_u32("t.u32", 4000000000u);
  w.set_i32("t.i32", std::numeric_limits<std::int32_t>::min());
  w.set_u64("t.u64", std::numeric_limits<std::uint64_t>::max());
  w.set_i64("t.i64", std::numeric_limits<std::int64_t>::min());
  w.set_f32("t.f32", -0.0f);
  w.set_f32("t.nan", std::bit_cast<float>(0x7fc00123u));
  w.set_f64("t.f64", 0.1);
  w.set_bool("t.true", true);
  w.set_bool("t.false", false);
  w.set_string("t.str", std::string_view("a\0b\xff", 4));
  w.set_string("t.empty", "");
  const auto f = gguf::file::from_memory(w.to_bytes(), "scalars.gguf");

  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 15u);
  EXPECT_EQ(f.type_of("t.u8"), gguf::value_type::u8);
  EXPECT_EQ(f.type_of("t.i8"), gguf::value_type::i8);
  EXPECT_EQ(f.type_of("t.u16"), gguf::value_type::u16);
  EXPECT_EQ(f.type_of("t.i16"), gguf::value_type::i16);
  EXPECT_EQ(f.type_of("t.u32"), gguf::value_type::u32);
  EXPECT_EQ(f.type_of("t.i32"), gguf::value_type::i32);
  EXPECT_EQ(f.type_of("t.u64"), gguf::value_type::u64);
  EXPECT_EQ(f.type_of("t.i64"), gguf::value_type::i64);
  EXPECT_EQ(f.type_of("t.f32"), gguf::value_type::f32);
  EXPECT_EQ(f.type_of("t.f64"), gguf::value_type::f64);
  EXPECT_EQ(f.type_of("t.true"), gguf::value_type::boolean);
  EXPECT_EQ(f.type_of("t.str"), gguf::value_type::string);

  EXPECT_EQ(f.get_uint("t.u8"), 255u);
  EXPECT_EQ(f.get_int("t.i8"), -128);
  EXPECT_EQ(f.get_uint("t.u16"), 65535u);
  EXPECT_EQ(f.get_int("t.i16"), -32768);
  EXPECT_EQ(f.get_uint("t.u32"), 4000000000u);
  EXPECT_EQ(f.get_int("t.i32"), std::numeric_limits<std::int32_t>::min());
  EXPECT_EQ(f.get_uint("t.u64"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(f.get_int("t.i64"), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(std::bit_cast<std::uint64_t>(f.get_float("t.f32")), std::bit_cast<std::uint64_t>(-0.0));
  EXPECT_EQ(std::bit_cast<std::uint32_t>(static_cast<float>(f.get_float("t.nan"))), 0x7fc00123u);
  EXPECT_EQ(f.get_float("t.f64"), 0.1);
  EXPECT_TRUE(f.get_bool("t.true"));
  EXPECT_FALSE(f.get_bool("t.false"));
  EXPECT_EQ(f.get_string("t.str"), std::string_view("a\0b\xff", 4));
  EXPECT_EQ(f.get_string("t.empty"), "");
  // Integers are widened for the other integer getter and for get_float.
  EXPECT_EQ(f.get_int("t.u32"), 4000000000);
  EXPECT_EQ(f.get_float("t.i16"), -32768.0);
}

TEST(GgufWriter, GenericSetPicksTheTypeFromTheCppType) {
  gguf::writer w;
  w.set("a", std::uint8_t{1});
  w.set("b", std::int16_t{-2});
  w.set("c", 3);            // int -> i32
  w.set("d", 4u);           // unsigned -> u32
  w.set("e", std::int64_t{-5});
  w.set("f", std::uint64_t{6});
  w.set("g", 7.5f);
  w.set("h", 8.25);
  w.set("i", true);
  w.set("j", "text");
  w.set("k", std::string("more"));
  const auto f = gguf::file::from_memory(w.to_bytes(), "generic.gguf");
  EXPECT_EQ(f.type_of("a"), gguf::value_type::u8);
  EXPECT_EQ(f.type_of("b"), gguf::value_type::i16);
  EXPECT_EQ(f.type_of("c"), gguf::value_type::i32);
  EXPECT_EQ(f.type_of("d"), gguf::value_type::u32);
  EXPECT_EQ(f.type_of("e"), gguf::value_type::i64);
  EXPECT_EQ(f.type_of("f"), gguf::value_type::u64);
  EXPECT_EQ(f.type_of("g"), gguf::value_type::f32);
  EXPECT_EQ(f.type_of("h"), gguf::value_type::f64);
  EXPECT_EQ(f.type_of("i"), gguf::value_type::boolean);
  EXPECT_EQ(f.type_of("j"), gguf::value_type::string);
  EXPECT_EQ(f.get_string("k"), "more");
  EXPECT_EQ(f.get_float("g"), 7.5);
  EXPECT_EQ(f.get_float("h"), 8.25);
  EXPECT_EQ(f.get_int("b"), -2);
}

TEST(GgufWriter, SettingAKeyAgainReplacesItInPlace) {
  gguf::writer w;
  w.set_u32("first", 1);
  w.set_u32("second", 2);
  w.set_string("first", "now a string");
  const auto f = gguf::file::from_memory(w.to_bytes(), "replace.gguf");
  ASSERT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata()[0].key, "first");
  EXPECT_EQ(f.get_string("first"), "now a string");
  EXPECT_EQ(f.get_uint("second"), 2u);
}

TEST(GgufWriter, ArraysOfEveryElementTypeRoundTrip) {
  gguf::writer w;
  const std::vector<std::uint8_t> u8{0, 1, 255};
  const std::vector<std::int8_t> i8{-128, 0, 127};
  const std::vector<std::uint16_t> u16{0, 65535};
  const std::vector<std::int16_t> i16{-32768, 32767};
  const std::vector<std::uint32_t> u32{1, 2, 4000000000u};
  const std::vector<std::int32_t> i32{-1, 0, 2147483647};
  const std::vector<std::uint64_t> u64{0, 1ull << 40};
  const std::vector<std::int64_t> i64{-(1ll << 40), 5};
  const std::vector<float> f32{1.5f, -2.25f, 1e-30f};
  const std::vector<double> f64{0.1, -1e300};
  const std::vector<bool> bools{true, false, true};
  const std::vector<std::string> strs{"", "a", std::string("\0x", 2), "\xe2\x96\x81hi"};
  w.set_array("a.u8", u8);
  w.set_array("a.i8", i8);
  w.set_array("a.u16", u16);
  w.set_array("a.i16", i16);
  w.set_array("a.u32", u32);
  w.set_array("a.i32", i32);
  w.set_array("a.u64", u64);
  w.set_array("a.i64", i64);
  w.set_array("a.f32", f32);
  w.set_array("a.f64", f64);
  w.set_array("a.bool", bools);
  w.set_array("a.str", strs);
  w.set_array_f32("a.empty", {});
  const auto f = gguf::file::from_memory(w.to_bytes(), "arrays.gguf");

  EXPECT_EQ(f.type_of("a.u8"), gguf::value_type::array);
  EXPECT_EQ(f.array_type("a.u8"), gguf::value_type::u8);
  EXPECT_EQ(f.array_type("a.i64"), gguf::value_type::i64);
  EXPECT_EQ(f.array_type("a.bool"), gguf::value_type::boolean);
  EXPECT_EQ(f.array_type("a.str"), gguf::value_type::string);
  EXPECT_EQ(f.array_size("a.u32"), 3u);
  EXPECT_EQ(f.array_size("a.empty"), 0u);
  EXPECT_EQ(f.get_int_array("a.u8"), (std::vector<std::int64_t>{0, 1, 255}));
  EXPECT_EQ(f.get_int_array("a.i8"), (std::vector<std::int64_t>{-128, 0, 127}));
  EXPECT_EQ(f.get_uint_array("a.u16"), (std::vector<std::uint64_t>{0, 65535}));
  EXPECT_EQ(f.get_int_array("a.i16"), (std::vector<std::int64_t>{-32768, 32767}));
  EXPECT_EQ(f.get_uint_array("a.u32"), (std::vector<std::uint64_t>{1, 2, 4000000000u}));
  EXPECT_EQ(f.get_int_array("a.i32"), (std::vector<std::int64_t>{-1, 0, 2147483647}));
  EXPECT_EQ(f.get_uint_array("a.u64"), (std::vector<std::uint64_t>{0, 1ull << 40}));
  EXPECT_EQ(f.get_int_array("a.i64"), (std::vector<std::int64_t>{-(1ll << 40), 5}));
  EXPECT_EQ(f.get_float_array("a.f32"), f32);
  EXPECT_EQ(f.get_double_array("a.f64"), f64);
  EXPECT_EQ(f.get_double_array("a.f32")[2], static_cast<double>(1e-30f));
  EXPECT_EQ(f.get_bool_array("a.bool"), bools);
  const auto s = f.get_string_array("a.str");
  ASSERT_EQ(s.size(), strs.size());
  for (std::size_t i = 0; i < s.size(); ++i) EXPECT_EQ(s[i], strs[i]) << i;
  EXPECT_TRUE(f.get_float_array("a.empty").empty());
}

TEST(GgufWriter, TensorsRoundTripWithRunningSumOffsets) {
  gguf::writer w;
  w.set("general.architecture", "llama");
  struct spec {
    const char* name;
    tensor_type type;
    gguf::shape ne;
    std::size_t bytes;  // computed here from the block table of gguf.md 7.1
  };
  const std::vector<spec> specs{
      {"f32.vec", tensor_type::f32, {7}, 7 * 4},
      {"f16.mat", tensor_type::f16, {3, 5}, 15 * 2},
      {"q8.mat", tensor_type::q8_0, {64, 3}, 2 * 3 * 34},
      {"q4.mat", tensor_type::q4_0, {32, 1, 2}, 2 * 18},
      {"bf16.4d", tensor_type::bf16, {2, 2, 2, 2}, 16 * 2},
      {"q6k.mat", tensor_type::q6_k, {256, 2}, 2 * 210},
      {"tq2.mat", tensor_type::tq2_0, {512, 1}, 2 * 66},
      {"tq1.mat", tensor_type::tq1_0, {256, 3}, 3 * 54},
      {"empty", tensor_type::f32, {0, 4}, 0},
  };
  std::vector<std::vector<std::uint8_t>> data;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    data.push_back(random_bytes(specs[i].bytes, static_cast<unsigned>(i)));
    w.add_tensor(specs[i].name, specs[i].type, specs[i].ne, data.back());
  }
  const auto bytes = w.to_bytes();
  const auto f = gguf::file::from_memory(bytes, "tensors.gguf");
  ASSERT_EQ(f.tensors().size(), specs.size());
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  std::uint64_t expect_offset = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const auto& t = f.tensors()[i];
    SCOPED_TRACE(specs[i].name);
    EXPECT_EQ(t.name, specs[i].name);
    EXPECT_EQ(t.type, specs[i].type);
    EXPECT_EQ(t.raw_type_id, *bitnet::type_id(specs[i].type, bitnet::id_convention::upstream));
    EXPECT_EQ(t.n_dims, specs[i].ne.n_dims);
    EXPECT_EQ(t.ne, specs[i].ne.ne);
    EXPECT_EQ(t.nbytes, specs[i].bytes);
    EXPECT_EQ(t.offset, expect_offset);
    expect_offset += pad(specs[i].bytes, 32);
    EXPECT_EQ(t.data, f.bytes() + f.data_offset() + t.offset);
    EXPECT_TRUE(std::equal(t.bytes().begin(), t.bytes().end(), data[i].begin(), data[i].end()));
    EXPECT_EQ(&f.tensor(specs[i].name), &t);
  }
  EXPECT_EQ(f.tensors()[1].n_elements(), 15u);
  EXPECT_EQ(f.tensors()[4].n_elements(), 16u);
  EXPECT_EQ(f.data_offset() + expect_offset, bytes.size());
  EXPECT_EQ(f.find_tensor("missing"), nullptr);
  EXPECT_NE(error_of([&] { (void)f.tensor("missing"); }).find("tensors.gguf: tensor 'missing' not found"),
            std::string::npos);
}

TEST(GgufWriter, AlignmentKeyControlsTheLayout) {
  gguf::writer w;
  w.set_alignment(64);
  const auto a = random_bytes(10 * 4, 1);
  const auto b = random_bytes(3 * 4, 2);
  w.add_tensor("a", tensor_type::f32, {10}, a);
  w.add_tensor("b", tensor_type::f32, {3}, b);
  const auto f = gguf::file::from_memory(w.to_bytes(), "aligned.gguf");
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get_uint("general.alignment"), 64u);
  EXPECT_EQ(f.type_of("general.alignment"), gguf::value_type::u32);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.tensors()[1].offset, 64u);
  EXPECT_NE(error_of([&] { w.set_alignment(48); }).find("48 is not a non-zero power of two"), std::string::npos);
  EXPECT_NE(error_of([&] { w.set_alignment(0); }).find("not a non-zero power of two"), std::string::npos);
  gguf::writer bad;
  bad.set_i32("general.alignment", 32);
  EXPECT_NE(error_of([&] { (void)bad.to_bytes(); }).find("general.alignment must be of type u32"), std::string::npos);
}

TEST(GgufWriter, WriteStreamsTheSameBytesAndOpenMapsThem) {
  gguf::writer w;
  w.set("general.architecture", "bitnet");
  w.set_alignment(128);
  const auto big = random_bytes(256 * 9 / 4 + 32, 5);  // I2_S [256, 9]: n/4 + 32 bytes (gguf.md 7.2)
  const auto small = random_bytes(5 * 2, 6);
  w.add_tensor_ref("w", tensor_type::i2_s, {256, 9}, big);
  w.add_tensor("n", tensor_type::f16, {5}, std::vector<std::uint8_t>(small));  // moved in
  const std::string path = std::string(BITNET_BINARY_DIR) + "/test_gguf_write.gguf";
  w.write(path);
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  ASSERT_NE(fp, nullptr);
  std::vector<std::uint8_t> on_disk;
  for (int c; (c = std::fgetc(fp)) != EOF;) on_disk.push_back(static_cast<std::uint8_t>(c));
  std::fclose(fp);
  EXPECT_EQ(on_disk, w.to_bytes());

  auto f = gguf::file::open(path);
  EXPECT_TRUE(f.memory_mapped());
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.size(), on_disk.size());
  EXPECT_EQ(f.tensor("w").type, tensor_type::i2_s);
  EXPECT_EQ(f.tensor("w").raw_type_id, 36u);
  EXPECT_EQ(f.tensor("n").offset % 128, 0u);
  const std::uint8_t* before = f.tensor("w").data;
  // Moving the file keeps tensor pointers and indexes valid.
  gguf::file moved = std::move(f);
  EXPECT_EQ(moved.tensor("w").data, before);
  EXPECT_TRUE(std::equal(big.begin(), big.end(), moved.tensor("w").data));
  EXPECT_TRUE(std::equal(small.begin(), small.end(), moved.tensor("n").data));
  EXPECT_EQ(moved.get_string("general.architecture"), "bitnet");
  std::remove(path.c_str());

  EXPECT_NE(error_of([] { (void)gguf::file::open("/nonexistent/x.gguf"); }).find("/nonexistent/x.gguf: cannot open"),
            std::string::npos);
  EXPECT_NE(error_of([] { (void)gguf::file::open(BITNET_BINARY_DIR); }).find("not a regular file"),
            std::string::npos);
}

TEST(GgufWriter, RejectsInconsistentTensors) {
  gguf::writer w;
  const auto b64 = random_bytes(64, 1);
  EXPECT_NE(error_of([&] { w.add_tensor("t", tensor_type::f32, {15}, b64); })
                .find("gguf writer: tensor 't': 64 bytes given, F32 of this shape needs 60"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("t", tensor_type::q8_0, {16, 2}, b64); })
                .find("not a multiple of the type's block size"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor(std::string(64, 'x'), tensor_type::f32, {16}, b64); })
                .find("name is 64 bytes, the limit is 63"),
            std::string::npos);
  w.add_tensor(std::string(63, 'x'), tensor_type::f32, {16}, b64);  // 63 is allowed
  EXPECT_NE(error_of([&] { w.add_tensor(std::string(63, 'x'), tensor_type::f32, {16}, b64); })
                .find("duplicate tensor name"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("m", tensor_type::f32, {1, 2, 3, 4, 5}, b64); })
                .find("at most 4 dimensions"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.set_u32("", 1); }).find("empty metadata key"), std::string::npos);
  // Shapes from signed variables are accepted when non-negative.
  const int k = 16, m = -2;
  const std::int64_t r = 1;
  w.add_tensor("from_int", tensor_type::f32, {k, r}, b64);
  EXPECT_NE(error_of([&] { w.add_tensor("neg", tensor_type::f32, {k, m}, b64); }).find("negative dimension -2"),
            std::string::npos);

  gguf::writer up(bitnet::id_convention::upstream);
  EXPECT_NE(error_of([&] { up.add_tensor("q", tensor_type::i2_s, {256}, random_bytes(96, 1)); })
                .find("type I2_S has no id under the upstream convention"),
            std::string::npos);
  gguf::writer fork;
  EXPECT_NE(error_of([&] { fork.add_tensor("q", tensor_type::mxfp4, {32}, random_bytes(17, 1)); })
                .find("type MXFP4 has no id under the bitnet convention"),
            std::string::npos);
}

TEST(GgufWriter, CopyKvCopiesRecordsVerbatim) {
  gguf::writer w;
  w.set_array("a", std::vector<std::string>{"x", "yz"});
  w.set_f64("b", 2.5);
  const auto src = gguf::file::from_memory(w.to_bytes(), "src.gguf");
  gguf::writer copy;
  for (const auto& kv : src.metadata()) copy.copy_kv(src, kv.key);
  EXPECT_EQ(copy.to_bytes(), w.to_bytes());
  EXPECT_NE(error_of([&] { copy.copy_kv(src, "nope"); }).find("key 'nope' not found in src.gguf"), std::string::npos);
}

// ---- accessor errors ----

class GgufAccessors : public ::testing::Test {
 protected:
  static gguf::file make() {
    gguf::writer w;
    w.set_u32("n.u32", 7);
    w.set_i32("n.neg", -3);
    w.set_u64("n.big", std::numeric_limits<std::uint64_t>::max());
    w.set_string("s", "hello");
    w.set_bool("flag", true);
    w.set_array("arr.i32", std::vector<std::int32_t>{1, -2});
    w.set_array("arr.u64", std::vector<std::uint64_t>{1ull << 63});
    return gguf::file::from_memory(w.to_bytes(), "acc.gguf");
  }
  gguf::file f = make();
};

TEST_F(GgufAccessors, TypeErrorsNameFileOffsetKeyExpectedAndActual) {
  const std::string m = error_of([&] { (void)f.get_string("n.u32"); });
  const std::string expect =
      "acc.gguf: offset " + std::to_string(f.find("n.u32")->offset) + ": key 'n.u32': expected string, got u32";
  EXPECT_EQ(m, expect);
  EXPECT_NE(error_of([&] { (void)f.get_uint("s"); }).find("key 's': expected an integer, got string"),
            std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.get_bool("n.u32"); }).find("key 'n.u32': expected bool, got u32"),
            std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.get_float("flag"); }).find("key 'flag': expected a number, got bool"),
            std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.get_uint("arr.i32"); }).find("expected an integer, got array of i32"),
            std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.array_size("s"); }).find("key 's': expected array, got string"), std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.get_float_array("arr.i32"); })
                .find("key 'arr.i32': expected array of f32 or f64, got array of i32"),
            std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.get_string_array("arr.i32"); }).find("expected array of string, got array of i32"),
            std::string::npos);
}

TEST_F(GgufAccessors, RangeChecks) {
  EXPECT_EQ(f.get_int("n.neg"), -3);
  EXPECT_NE(error_of([&] { (void)f.get_uint("n.neg"); }).find("key 'n.neg': value -3 is negative"), std::string::npos);
  EXPECT_EQ(f.get_uint("n.big"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_NE(error_of([&] { (void)f.get_int("n.big"); }).find("does not fit in int64"), std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.get_uint_array("arr.i32"); }).find("element 1 = -2 is negative"),
            std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.get_int_array("arr.u64"); }).find("element 0 = 9223372036854775808 does not fit"),
            std::string::npos);
}

TEST_F(GgufAccessors, MissingKeysAndDefaults) {
  EXPECT_FALSE(f.has("nope"));
  EXPECT_EQ(error_of([&] { (void)f.get_uint("nope"); }), "acc.gguf: key 'nope' not found");
  EXPECT_NE(error_of([&] { (void)f.type_of("nope"); }).find("not found"), std::string::npos);
  EXPECT_EQ(f.get_uint_or("nope", 11), 11u);
  EXPECT_EQ(f.get_int_or("nope", -11), -11);
  EXPECT_EQ(f.get_float_or("nope", 0.5), 0.5);
  EXPECT_EQ(f.get_bool_or("nope", true), true);
  EXPECT_EQ(f.get_string_or("nope", "d"), "d");
  EXPECT_EQ(f.get_uint_or("n.u32", 11), 7u);
  EXPECT_EQ(f.get_string_or("s", "d"), "hello");
  // A present key of the wrong type is still an error.
  EXPECT_NE(error_of([&] { (void)f.get_uint_or("s", 1); }).find("expected an integer, got string"), std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.get_string_or("flag", ""); }).find("expected string, got bool"), std::string::npos);
}

TEST_F(GgufAccessors, ValueSummaryAbbreviatesArrays) {
  EXPECT_EQ(f.value_summary("n.u32"), "7");
  EXPECT_EQ(f.value_summary("s"), "\"hello\"");
  EXPECT_EQ(f.value_summary("flag"), "true");
  EXPECT_EQ(f.value_summary("arr.i32"), "[i32 x 2] 1, -2");
  EXPECT_EQ(f.value_summary("arr.i32", 1), "[i32 x 2] 1, ...");
  gguf::writer w;
  w.set_string("s", "a\xff\"\n\xc4\xa0\xe2\x96");  // invalid byte, quote, newline, valid U+0120, cut sequence
  const auto g = gguf::file::from_memory(w.to_bytes(), "esc.gguf");
  EXPECT_EQ(g.value_summary("s"), "\"a\\xff\\\"\\n\xc4\xa0\\xe2\\x96\"");
}

// ---- type-id conventions (gguf.md 7.1) ----

std::vector<std::uint8_t> file_with(std::optional<std::string> arch, bitnet::id_convention conv, tensor_type type,
                                    gguf::shape ne) {
  gguf::writer w(conv);
  if (arch) w.set("general.architecture", *arch);
  std::string why;
  const auto nb = bitnet::tensor_nbytes(type, ne.ne, &why);
  EXPECT_TRUE(nb.has_value()) << why;
  w.add_tensor("t", type, ne, random_bytes(static_cast<std::size_t>(*nb), 3));
  return w.to_bytes();
}

TEST(GgufConvention, BitnetArchReadsForkIds) {
  for (const char* arch : {"bitnet", "bitnet-25", "bitnet-b1.58"}) {
    SCOPED_TRACE(arch);
    gguf::writer w;  // bitnet convention by default
    w.set("general.architecture", arch);
    w.add_tensor("i2s", tensor_type::i2_s, {256, 4}, random_bytes(256 * 4 / 4 + 32, 1));
    w.add_tensor("tl1", tensor_type::tl1, {128, 4}, random_bytes(128 * 4 / 4 + 32, 2));
    // TL2 [3200, 3200] would be 2,167,520 bytes (gguf.md 7.2); use a small shape by the same formula:
    // t = (512-256)*2/3*5/8 + 256*2/2*4/8 = 106 + 128 = 234 -> pad 256 -> + 32 = 288.
    w.add_tensor("tl2", tensor_type::tl2, {512, 2}, random_bytes(288, 3));
    const auto f = gguf::file::from_memory(w.to_bytes(), "fork.gguf");
    EXPECT_EQ(f.convention(), bitnet::id_convention::bitnet);
    EXPECT_NE(f.convention_reason().find("a BitNet architecture"), std::string::npos);
    EXPECT_EQ(f.tensor("i2s").raw_type_id, 36u);
    EXPECT_EQ(f.tensor("i2s").type, tensor_type::i2_s);
    EXPECT_EQ(f.tensor("tl1").raw_type_id, 38u);
    EXPECT_EQ(f.tensor("tl1").type, tensor_type::tl1);
    EXPECT_EQ(f.tensor("tl2").raw_type_id, 39u);
    EXPECT_EQ(f.tensor("tl2").type, tensor_type::tl2);
    EXPECT_EQ(f.tensor("tl2").nbytes, 288u);
  }
}

TEST(GgufConvention, Id39IsMxfp4InANonBitnetFileAndTl2InABitnetFile) {
  // MXFP4 [512, 1]: 16 blocks x 17 bytes = 272. TL2 [512, 1]: (256/3*5/8 = 53) + 64 = 117 -> 128 + 32 = 160.
  const auto mx = gguf::file::from_memory(file_with("llama", bitnet::id_convention::upstream, tensor_type::mxfp4, {512, 1}),
                                          "mx.gguf");
  EXPECT_EQ(mx.convention(), bitnet::id_convention::upstream);
  EXPECT_NE(mx.convention_reason().find("'llama', not a BitNet architecture"), std::string::npos);
  EXPECT_EQ(mx.tensor("t").raw_type_id, 39u);
  EXPECT_EQ(mx.tensor("t").type, tensor_type::mxfp4);
  EXPECT_EQ(mx.tensor("t").nbytes, 272u);

  const auto tl2 = gguf::file::from_memory(file_with("bitnet-b1.58", bitnet::id_convention::bitnet, tensor_type::tl2, {512, 1}),
                                           "tl2.gguf");
  EXPECT_EQ(tl2.tensor("t").raw_type_id, 39u);
  EXPECT_EQ(tl2.tensor("t").type, tensor_type::tl2);
  EXPECT_EQ(tl2.tensor("t").nbytes, 160u);
}

TEST(GgufConvention, ForkOnlyIdsMakeAFileFork) {
  const auto f = gguf::file::from_memory(file_with("llama", bitnet::id_convention::bitnet, tensor_type::i2_s, {128, 1}),
                                         "i2s.gguf");
  EXPECT_EQ(f.convention(), bitnet::id_convention::bitnet);
  EXPECT_NE(f.convention_reason().find("tensor 't' has type id 36, which only bitnet.cpp defines"), std::string::npos);
  EXPECT_EQ(f.tensor("t").type, tensor_type::i2_s);
  // Forcing upstream makes the same id unknown.
  gguf::file::options up;
  up.force_convention = bitnet::id_convention::upstream;
  const std::string m = error_of([&] {
    (void)gguf::file::from_memory(file_with("llama", bitnet::id_convention::bitnet, tensor_type::i2_s, {128, 1}), "i2s.gguf",
                                  up);
  });
  EXPECT_NE(m.find("tensor 't': unknown type id 36 under the upstream convention (forced by the caller)"),
            std::string::npos)
      << m;
}

TEST(GgufConvention, UnclassifiableFileIsRejectedUnlessForced) {
  const auto bytes = file_with(std::nullopt, bitnet::id_convention::upstream, tensor_type::mxfp4, {32, 1});
  const std::string m = error_of([&] { (void)gguf::file::from_memory(bytes, "noarch.gguf"); });
  EXPECT_NE(m.find("type id 39 is TL2 in bitnet.cpp files and MXFP4 upstream"), std::string::npos) << m;
  EXPECT_NE(m.find("cannot classify"), std::string::npos) << m;
  gguf::file::options o;
  o.force_convention = bitnet::id_convention::upstream;
  const auto up = gguf::file::from_memory(bytes, "noarch.gguf", o);
  EXPECT_EQ(up.tensor("t").type, tensor_type::mxfp4);
  EXPECT_EQ(up.convention_reason(), "forced by the caller");
  o.force_convention = bitnet::id_convention::bitnet;
  EXPECT_NE(error_of([&] { (void)gguf::file::from_memory(bytes, "noarch.gguf", o); }).find("TL2 needs ne[0] >= 256"),
            std::string::npos);
}

TEST(GgufConvention, FilesWithoutClashingIdsAreUpstream) {
  const auto f = gguf::file::from_memory(file_with(std::nullopt, bitnet::id_convention::bitnet, tensor_type::q8_0, {32, 2}),
                                         "plain.gguf");
  EXPECT_EQ(f.convention(), bitnet::id_convention::upstream);
  EXPECT_NE(f.convention_reason().find("no tensor uses a type id in 36..39"), std::string::npos);
  EXPECT_EQ(f.tensor("t").type, tensor_type::q8_0);
}

// ---- byte-exact agreement with the worked examples in shared/spec/gguf.md ----

TEST(GgufSpecExamples, AlignmentKvBytes) {
  gguf::writer w;
  w.set_alignment(32);
  const auto b = w.to_bytes();
  // Header with 0 tensors and 1 KV, then the example bytes of gguf.md section 4.
  const std::vector<std::uint8_t> kv{0x11, 0, 0, 0, 0, 0, 0, 0, 'g', 'e', 'n', 'e', 'r', 'a', 'l', '.', 'a', 'l',
                                     'i', 'g', 'n', 'm', 'e', 'n', 't', 0x04, 0, 0, 0, 0x20, 0, 0, 0};
  ASSERT_EQ(b.size(), 24 + kv.size());
  EXPECT_EQ(std::vector<std::uint8_t>(b.begin(), b.begin() + 4), (std::vector<std::uint8_t>{0x47, 0x47, 0x55, 0x46}));
  EXPECT_EQ(std::vector<std::uint8_t>(b.begin() + 4, b.begin() + 8), le(3, 4));
  EXPECT_EQ(std::vector<std::uint8_t>(b.begin() + 8, b.begin() + 16), le(0, 8));
  EXPECT_EQ(std::vector<std::uint8_t>(b.begin() + 16, b.begin() + 24), le(1, 8));
  EXPECT_EQ(std::vector<std::uint8_t>(b.begin() + 24, b.end()), kv);
}

TEST(GgufSpecExamples, StringArrayBytes) {
  gguf::writer w;
  w.set_array("k", std::vector<std::string>{"!", "hi"});
  const auto b = w.to_bytes();
  const std::vector<std::uint8_t> tail{0x09, 0, 0, 0, 0x08, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0,
                                       0, 0, 0x21, 0x02, 0, 0, 0, 0, 0, 0, 0, 0x68, 0x69};
  ASSERT_GE(b.size(), tail.size());
  EXPECT_EQ(std::vector<std::uint8_t>(b.end() - static_cast<std::ptrdiff_t>(tail.size()), b.end()), tail);
}

TEST(GgufSpecExamples, I2sTensorInfoBytesAndSize) {
  gguf::writer w;
  w.set("general.architecture", "bitnet");
  std::vector<std::uint8_t> payload(1638432);  // gguf.md 7.2: I2_S 2560x2560 -> 1,638,432 B
  w.add_tensor_ref("blk.0.attn_q.weight", tensor_type::i2_s, {2560, 2560}, payload);
  w.add_tensor_ref("next", tensor_type::i2_s, {2560, 2560}, payload);
  const auto b = w.to_bytes();
  const std::vector<std::uint8_t> info{0x13, 0, 0, 0, 0, 0, 0, 0, 'b', 'l', 'k', '.', '0', '.', 'a', 't', 't', 'n',
                                       '_', 'q', '.', 'w', 'e', 'i', 'g', 'h', 't', 0x02, 0, 0, 0, 0x00, 0x0a, 0, 0,
                                       0, 0, 0, 0, 0x00, 0x0a, 0, 0, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  const auto it = std::search(b.begin(), b.end(), info.begin(), info.end());
  EXPECT_NE(it, b.end()) << "tensor info bytes of the worked example not found";
  const auto f = gguf::file::from_memory(b, "i2s.gguf");
  EXPECT_EQ(f.tensor("blk.0.attn_q.weight").nbytes, 1638432u);
  EXPECT_EQ(f.tensor("next").offset, 1638432u);  // "The next tensor's offset would be ... = 1638432"
}

TEST(GgufSpecExamples, Version2ParsesLikeVersion3) {
  gguf::writer w;
  w.set("general.name", "v2");
  w.add_tensor("t", tensor_type::f32, {4}, random_bytes(16, 1));
  auto b = w.to_bytes();
  b[4] = 2;
  const auto f = gguf::file::from_memory(b, "v2.gguf");
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.get_string("general.name"), "v2");
  EXPECT_EQ(f.tensor("t").nbytes, 16u);
}

}  // namespace
