// Malformed GGUF corpus: named mutations of one valid writer output, each of which must
// end in a gguf::error whose message contains an expected fragment (and, where the test can
// locate it independently, the expected byte offset). Plus: every truncation of the valid
// file, and a deterministic random-corruption smoke run (no crash, only gguf::error).
#include <bitnet/gguf.hpp>

#include <gtest/gtest.h>

#include <algorithm>   // std::search
#include <cstdint>     // fixed-width integers
#include <cstring>     // std::memcpy
#include <functional>  // mutation functions
#include <optional>    // expected offsets
#include <random>      // corruption smoke test
#include <set>         // unique mutation names
#include <stdexcept>   // std::logic_error for test bugs
#include <string>      // names and fragments
#include <vector>      // buffers

namespace {

namespace gguf = bitnet::gguf;
using bitnet::tensor_type;
using bytes_t = std::vector<std::uint8_t>;

// ---- the valid base file ----
// Metadata covers every value type; three tensors of different types. The last tensor's
// size is a multiple of 32, so the file ends exactly at the last data byte and every
// proper prefix is invalid.
bytes_t base_file() {
  gguf::writer w;
  w.set("general.architecture", "llama");
  w.set_alignment(32);
  w.set_u8("test.u8", 1);
  w.set_i8("test.i8", -1);
  w.set_u16("test.u16", 2);
  w.set_i16("test.i16", -2);
  w.set_u32("test.u32", 3);
  w.set_i32("test.i32", -3);
  w.set_f32("test.f32", 0.5f);
  w.set_bool("test.bool", true);
  w.set_string("test.str", "hello");
  w.set_u64("test.u64", 4);
  w.set_i64("test.i64", -4);
  w.set_f64("test.f64", 0.25);
  w.set_array("test.arr_str", std::vector<std::string>{"a", "bc"});
  w.set_array("test.arr_i32", std::vector<std::int32_t>{1, 2, 3});
  w.set_array("test.arr_bool", std::vector<bool>{true, false});
  bytes_t a(8 * 2 * 4, 0x11), b(2 * 34, 0x22), c(16 * 2, 0x33);
  w.add_tensor("a.weight", tensor_type::f32, {8, 2}, a);
  w.add_tensor("b.weight", tensor_type::q8_0, {32, 2}, b);
  w.add_tensor("c.weight", tensor_type::f16, {16}, c);
  return w.to_bytes();
}

// ---- independent locators (byte search, not the reader) ----
// Offset of the u64 length prefix of the string `s` (first occurrence).
std::size_t find_str(const bytes_t& f, std::string_view s) {
  bytes_t pat(8);
  for (int i = 0; i < 8; ++i) pat[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(s.size()) >> (8 * i));
  pat.insert(pat.end(), s.begin(), s.end());
  const auto it = std::search(f.begin(), f.end(), pat.begin(), pat.end());
  if (it == f.end()) throw std::logic_error("test bug: string not found: " + std::string(s));
  return static_cast<std::size_t>(it - f.begin());
}
std::size_t after_str(const bytes_t& f, std::string_view s) { return find_str(f, s) + 8 + s.size(); }

void put(bytes_t& f, std::size_t pos, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) f.at(pos + i) = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint64_t get(const bytes_t& f, std::size_t pos, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(f.at(pos + i)) << (8 * i);
  return v;
}
// Tensor info fields of `name` in the base layout (n_dims, ne..., type, offset).
struct info_pos {
  std::size_t record, n_dims, ne0, type, offset;
};
info_pos tensor_info_at(const bytes_t& f, std::string_view name) {
  info_pos p{};
  p.record = find_str(f, name);
  p.n_dims = p.record + 8 + name.size();
  p.ne0 = p.n_dims + 4;
  p.type = p.ne0 + 8 * get(f, p.n_dims, 4);
  p.offset = p.type + 4;
  return p;
}
// Replace [pos, pos+len) with `with`.
void splice(bytes_t& f, std::size_t pos, std::size_t len, const bytes_t& with) {
  f.erase(f.begin() + static_cast<std::ptrdiff_t>(pos), f.begin() + static_cast<std::ptrdiff_t>(pos + len));
  f.insert(f.begin() + static_cast<std::ptrdiff_t>(pos), with.begin(), with.end());
}

struct mutation {
  std::string name;
  std::function<void(bytes_t&)> apply;
  std::string fragment;                                // must appear in what()
  std::function<std::optional<std::size_t>(const bytes_t&)> offset = nullptr;  // expected error offset (base file)
  std::optional<bitnet::id_convention> force = std::nullopt;
};

std::vector<mutation> mutations() {
  auto at_key = [](std::string_view k) { return [k](const bytes_t& f) -> std::optional<std::size_t> { return find_str(f, k); }; };
  auto at_tensor = [](std::string_view n) {
    return [n](const bytes_t& f) -> std::optional<std::size_t> { return tensor_info_at(f, n).record; };
  };
  auto at = [](std::size_t o) { return [o](const bytes_t&) -> std::optional<std::size_t> { return o; }; };
  std::vector<mutation> m;
  // header
  m.push_back({"empty_file", [](bytes_t& f) { f.clear(); }, "file is 0 bytes, too small for the 24-byte GGUF header", at(0)});
  m.push_back({"truncated_header", [](bytes_t& f) { f.resize(12); }, "too small for the 24-byte GGUF header", at(0)});
  m.push_back({"bad_magic", [](bytes_t& f) { f[3] = 'L'; }, "bad magic 'GGUL' (47 47 55 4c), expected 'GGUF'", at(0)});
  m.push_back({"version_0", [](bytes_t& f) { put(f, 4, 0, 4); }, "invalid GGUF version 0 (supported: 2 and 3)", at(4)});
  m.push_back({"version_1", [](bytes_t& f) { put(f, 4, 1, 4); }, "GGUF version 1 is not supported", at(4)});
  m.push_back({"version_4", [](bytes_t& f) { put(f, 4, 4, 4); }, "unsupported GGUF version 4", at(4)});
  m.push_back({"version_byte_swapped", [](bytes_t& f) { put(f, 4, 0x03000000u, 4); },
               "GGUF version 0x03000000 looks byte-swapped", at(4)});
  m.push_back({"huge_kv_count", [](bytes_t& f) { put(f, 16, 1ull << 60, 8); }, "metadata count 1152921504606846976 cannot fit",
               at(16)});
  m.push_back({"huge_tensor_count", [](bytes_t& f) { put(f, 8, 1ull << 40, 8); }, "tensor count 1099511627776 cannot fit",
               at(8)});
  m.push_back({"negative_tensor_count", [](bytes_t& f) { put(f, 8, ~0ull, 8); }, "tensor count 18446744073709551615 cannot fit",
               at(8)});
  // Counts a little too large: the parser would read the next record as one more entry (the first
  // tensor info as a key, the data as a tensor info); the error names the count instead.
  const auto u64_at = [](const bytes_t& f, std::size_t o) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(f[o + static_cast<std::size_t>(i)]) << (8 * i);
    return v;
  };
  m.push_back({"kv_count_one_too_many", [u64_at](bytes_t& f) { put(f, 16, u64_at(f, 16) + 1, 8); },
               "the metadata count at offset 16 is 18 but the file holds 17 metadata entries", at(16)});
  m.push_back({"tensor_count_one_too_many", [u64_at](bytes_t& f) { put(f, 8, u64_at(f, 8) + 1, 8); },
               "the tensor count at offset 8 is 4 but the file holds 3 tensor infos", at(8)});
  m.push_back({"both_counts_two_too_many",
               [u64_at](bytes_t& f) {
                 put(f, 8, u64_at(f, 8) + 2, 8);
                 put(f, 16, u64_at(f, 16) + 2, 8);
               },
               "the metadata count at offset 16 is 19 but the file holds 17 metadata entries; the tensor count at offset 8 "
               "is 5 but the file holds 3 tensor infos",
               at(16)});
  // metadata
  m.push_back({"key_length_past_eof", [](bytes_t& f) { put(f, find_str(f, "test.u8"), 1u << 29, 8); },
               "key length 536870912 exceeds the", at_key("test.u8")});
  m.push_back({"key_length_over_1gib", [](bytes_t& f) { put(f, find_str(f, "test.u8"), 1ull << 40, 8); },
               "key length 1099511627776 exceeds the 1 GiB limit", at_key("test.u8")});
  m.push_back({"empty_key", [](bytes_t& f) { splice(f, find_str(f, "test.u8"), 15, {0, 0, 0, 0, 0, 0, 0, 0}); },
               "metadata entry 2: empty key", at_key("test.u8")});
  m.push_back({"string_value_past_eof", [](bytes_t& f) { put(f, after_str(f, "test.str") + 4, f.size(), 8); },
               "key 'test.str': value length", [](const bytes_t& f) -> std::optional<std::size_t> { return after_str(f, "test.str") + 4; }});
  m.push_back({"bad_value_type", [](bytes_t& f) { put(f, after_str(f, "test.u32"), 13, 4); },
               "key 'test.u32': invalid value type 13",
               [](const bytes_t& f) -> std::optional<std::size_t> { return after_str(f, "test.u32"); }});
  m.push_back({"nested_array", [](bytes_t& f) { put(f, after_str(f, "test.arr_i32") + 4, 9, 4); },
               "key 'test.arr_i32': arrays of arrays are not supported"});
  m.push_back({"bad_array_elem_type", [](bytes_t& f) { put(f, after_str(f, "test.arr_i32") + 4, 77, 4); },
               "invalid array element type 77"});
  m.push_back({"huge_array_count", [](bytes_t& f) { put(f, after_str(f, "test.arr_i32") + 8, 1ull << 62, 8); },
               "array of 4611686018427387904 i32 elements cannot fit"});
  m.push_back({"huge_string_array_count", [](bytes_t& f) { put(f, after_str(f, "test.arr_str") + 8, 1ull << 62, 8); },
               "array of 4611686018427387904 strings cannot fit"});
  m.push_back({"string_element_past_eof",
               [](bytes_t& f) { put(f, after_str(f, "test.arr_str") + 16 + 9, 1u << 30, 8); },
               "key 'test.arr_str': string element 1 length 1073741824 exceeds"});
  m.push_back({"bad_bool", [](bytes_t& f) { f[after_str(f, "test.bool") + 4] = 2; }, "key 'test.bool': bool value is 2, must be 0 or 1",
               [](const bytes_t& f) -> std::optional<std::size_t> { return after_str(f, "test.bool") + 4; }});
  m.push_back({"bad_bool_in_array", [](bytes_t& f) { f[after_str(f, "test.arr_bool") + 16 + 1] = 7; },
               "key 'test.arr_bool': bool element 1 is 7, must be 0 or 1"});
  m.push_back({"duplicate_key", [](bytes_t& f) { f[find_str(f, "test.i8") + 8 + 5] = 'u'; },  // test.i8 -> test.u8
               "key 'test.u8': duplicate key (first defined at offset", at_key("test.i8")});
  m.push_back({"alignment_not_u32", [](bytes_t& f) { put(f, after_str(f, "general.alignment"), 5, 4); },
               "key 'general.alignment': must be of type u32, got i32", at_key("general.alignment")});
  m.push_back({"alignment_not_power_of_two", [](bytes_t& f) { put(f, after_str(f, "general.alignment") + 4, 48, 4); },
               "key 'general.alignment': 48 is not a non-zero power of two", at_key("general.alignment")});
  m.push_back({"alignment_zero", [](bytes_t& f) { put(f, after_str(f, "general.alignment") + 4, 0, 4); },
               "key 'general.alignment': 0 is not a non-zero power of two", at_key("general.alignment")});
  // tensor infos
  m.push_back({"tensor_name_too_long",
               [](bytes_t& f) {
                 bytes_t s(8 + 64, 'n');  // length prefix + 64-byte name
                 put(s, 0, 64, 8);
                 splice(f, find_str(f, "b.weight"), 16, s);
               },
               "name is 64 bytes, the limit is 63", at_tensor("b.weight")});
  m.push_back({"empty_tensor_name", [](bytes_t& f) { splice(f, find_str(f, "b.weight"), 16, {0, 0, 0, 0, 0, 0, 0, 0}); },
               "tensor info 1: the tensor name is empty", at_tensor("b.weight")});
  m.push_back({"duplicate_tensor", [](bytes_t& f) { f[find_str(f, "b.weight") + 8] = 'a'; },
               "tensor 'a.weight': duplicate tensor name (first defined at offset", at_tensor("b.weight")});
  m.push_back({"n_dims_5", [](bytes_t& f) { put(f, tensor_info_at(f, "a.weight").n_dims, 5, 4); },
               "tensor 'a.weight': n_dims is 5, at most 4", [](const bytes_t& f) -> std::optional<std::size_t> {
                 return tensor_info_at(f, "a.weight").n_dims;
               }});
  m.push_back({"negative_dim", [](bytes_t& f) { put(f, tensor_info_at(f, "a.weight").ne0, ~0ull, 8); },
               "tensor 'a.weight': dimension ne[0] is -1, expected 0 .. 9223372036854775807"});
  m.push_back({"element_count_overflow",
               [](bytes_t& f) {
                 const auto p = tensor_info_at(f, "a.weight");
                 put(f, p.ne0, 1ull << 32, 8);
                 put(f, p.ne0 + 8, 1ull << 32, 8);
               },
               "tensor 'a.weight': element count of shape [4294967296, 4294967296] overflows int64", at_tensor("a.weight")});
  m.push_back({"byte_size_overflow",
               [](bytes_t& f) {
                 const auto p = tensor_info_at(f, "a.weight");
                 put(f, p.ne0, 1ull << 31, 8);
                 put(f, p.ne0 + 8, 1ull << 31, 8);  // 2^62 f32 elements -> 2^64 bytes
               },
               "tensor 'a.weight': F32 [2147483648, 2147483648]: byte size overflows", at_tensor("a.weight")});
  m.push_back({"unknown_type_id", [](bytes_t& f) { put(f, tensor_info_at(f, "a.weight").type, 3, 4); },
               "tensor 'a.weight': unknown type id 3", at_tensor("a.weight")});
  m.push_back({"unknown_type_id_huge", [](bytes_t& f) { put(f, tensor_info_at(f, "c.weight").type, 0xFFFFFFFFu, 4); },
               "tensor 'c.weight': unknown type id 4294967295", at_tensor("c.weight")});
  m.push_back({"fork_id_when_forced_upstream", [](bytes_t& f) { put(f, tensor_info_at(f, "a.weight").type, 36, 4); },
               "tensor 'a.weight': unknown type id 36 under the upstream convention", at_tensor("a.weight"),
               bitnet::id_convention::upstream});
  m.push_back({"ne0_not_multiple_of_block", [](bytes_t& f) { put(f, tensor_info_at(f, "b.weight").ne0, 48, 8); },
               "tensor 'b.weight': ne[0] = 48 is not a multiple of Q8_0's block size 32", at_tensor("b.weight")});
  m.push_back({"tl2_too_narrow", [](bytes_t& f) { put(f, tensor_info_at(f, "b.weight").type, 39, 4); },
               "tensor 'b.weight': TL2 [32, 2]: TL2 needs ne[0] >= 256", at_tensor("b.weight"), bitnet::id_convention::bitnet});
  m.push_back({"misaligned_offset",
               [](bytes_t& f) {
                 const auto p = tensor_info_at(f, "b.weight");
                 put(f, p.offset, get(f, p.offset, 8) + 4, 8);
               },
               "tensor 'b.weight': offset 68 is not a multiple of the alignment 32", at_tensor("b.weight")});
  m.push_back({"data_past_eof",
               [](bytes_t& f) {
                 const auto p = tensor_info_at(f, "c.weight");
                 put(f, p.offset, get(f, p.offset, 8) + 32, 8);
               },
               "tensor 'c.weight': data [", at_tensor("c.weight")});
  m.push_back({"offset_far_past_eof", [](bytes_t& f) { put(f, tensor_info_at(f, "c.weight").offset, 1ull << 62, 8); },
               "tensor 'c.weight': data starts at", at_tensor("c.weight")});
  m.push_back({"overlapping_tensors", [](bytes_t& f) { put(f, tensor_info_at(f, "c.weight").offset, 64, 8); },
               "overlaps tensor 'b.weight'", at_tensor("c.weight")});
  m.push_back({"id39_without_arch",
               [](bytes_t& f) {
                 f[find_str(f, "general.architecture") + 8 + 19] = 'X';  // key renamed: no architecture
                 put(f, tensor_info_at(f, "c.weight").type, 39, 4);
               },
               "type id 39 is TL2 in bitnet.cpp files and MXFP4 upstream", at_tensor("c.weight")});
  // truncations in every region (the full sweep is in TruncatedAtEveryByte)
  m.push_back({"truncated_in_key", [](bytes_t& f) { f.resize(find_str(f, "test.i64") + 10); },
               "key length 8 exceeds the 2 bytes left"});
  m.push_back({"truncated_in_value", [](bytes_t& f) { f.resize(after_str(f, "test.f64") + 4 + 3); },
               "key 'test.f64': unexpected end of file reading value: need 8 bytes, 3 left"});
  m.push_back({"truncated_in_array", [](bytes_t& f) { f.resize(after_str(f, "test.arr_i32") + 16 + 5); },
               "array of 3 i32 elements cannot fit in the 5 bytes left"});
  m.push_back({"truncated_in_tensor_info", [](bytes_t& f) { f.resize(tensor_info_at(f, "b.weight").ne0 + 4); },
               "tensor 'b.weight': unexpected end of file reading dimension: need 8 bytes, 4 left"});
  m.push_back({"truncated_in_padding",
               [](bytes_t& f) { f.resize(tensor_info_at(f, "c.weight").offset + 8 + 1); },
               "past the end of the file"});
  m.push_back({"truncated_in_data", [](bytes_t& f) { f.pop_back(); }, "tensor 'c.weight': data ["});
  return m;
}

class GgufCorpus : public ::testing::TestWithParam<mutation> {};

TEST_P(GgufCorpus, MutationIsRejectedWithItsMessage) {
  const mutation& mu = GetParam();
  const bytes_t valid = base_file();
  bytes_t f = valid;
  mu.apply(f);
  ASSERT_NE(f, valid) << "mutation changed nothing";
  gguf::file::options opts;
  opts.force_convention = mu.force;
  try {
    (void)gguf::file::from_memory(f, "corpus.gguf", opts);
    FAIL() << mu.name << ": accepted";
  } catch (const gguf::error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(mu.fragment), std::string::npos) << mu.name << ": got: " << what;
    EXPECT_EQ(what.rfind("corpus.gguf: ", 0), 0u) << what;
    EXPECT_EQ(e.file(), "corpus.gguf");
    ASSERT_TRUE(e.offset().has_value()) << what;  // every container error names its byte offset
    EXPECT_NE(what.find("offset " + std::to_string(*e.offset()) + ": "), std::string::npos) << what;
    EXPECT_LE(*e.offset(), f.size()) << what;
    if (mu.offset) {
      const auto expect = mu.offset(valid);
      if (expect) {
        EXPECT_EQ(*e.offset(), *expect) << mu.name << ": " << what;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Mutations, GgufCorpus, ::testing::ValuesIn(mutations()),
                         [](const ::testing::TestParamInfo<mutation>& i) { return i.param.name; });

TEST(GgufCorpusMeta, AtLeastThirtyNamedMutations) {
  const auto m = mutations();
  EXPECT_GE(m.size(), 30u);
  std::set<std::string> names;
  for (const auto& x : m) EXPECT_TRUE(names.insert(x.name).second) << "duplicate mutation name " << x.name;
}

TEST(GgufCorpusMeta, BaseFileIsValidAndLaidOutAsTheMutationsAssume) {
  const bytes_t b = base_file();
  const auto f = gguf::file::from_memory(b, "base.gguf");
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[2].offset + f.tensors()[2].nbytes + f.data_offset(), b.size());
  EXPECT_EQ(f.tensors()[1].offset, 64u);
  // The padding before the data section must be non-empty for the truncated_in_padding case.
  const auto infos_end = tensor_info_at(b, "c.weight").offset + 8;
  EXPECT_GT(f.data_offset(), infos_end + 1);
  EXPECT_EQ(f.find("test.u8")->offset, find_str(b, "test.u8"));
  EXPECT_EQ(f.tensor("b.weight").info_offset, find_str(b, "b.weight"));
}

TEST(GgufCorpusMeta, TruncatedAtEveryByteIsRejected) {
  const bytes_t b = base_file();
  for (std::size_t n = 0; n < b.size(); ++n) {
    try {
      (void)gguf::file::from_memory(bytes_t(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n)), "cut.gguf");
      ADD_FAILURE() << "prefix of " << n << " bytes accepted";
    } catch (const gguf::error& e) {
      ASSERT_TRUE(e.offset().has_value()) << e.what();
      EXPECT_LE(*e.offset(), n) << e.what();
    }
  }
}

// Random corruption: the reader either accepts the file (then every accessor works and every
// tensor lies inside the file) or throws gguf::error. Anything else (crash, other exception,
// sanitizer report) fails the test.
TEST(GgufCorpusMeta, RandomCorruptionOnlyEverThrowsGgufError) {
  const bytes_t b = base_file();
  std::mt19937 rng(12345);
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    bytes_t f = b;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const std::size_t pos = rng() % f.size();
      switch (rng() % 3) {
        case 0: f[pos] = static_cast<std::uint8_t>(rng()); break;
        case 1: f[pos] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
        default: f[pos] = (rng() & 1) ? 0xFF : 0x00; break;
      }
    }
    if (rng() % 8 == 0) f.resize(rng() % (f.size() + 1));
    try {
      const auto g = gguf::file::from_memory(f, "rand.gguf");
      ++accepted;
      for (const auto& kv : g.metadata()) (void)g.value_summary(kv.key, 100);
      for (const auto& t : g.tensors()) {
        ASSERT_GE(t.data, g.bytes());
        ASSERT_LE(t.data + t.nbytes, g.bytes() + g.size());
      }
    } catch (const gguf::error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);  // e.g. flips inside tensor data or string contents
}

}  // namespace
