// libFuzzer target for the GGUF reader (and, on accepted input, the writer).
//
// Each input is parsed three times: convention decided from the file, forced bitnet, forced
// upstream. Rejection must be a gguf::error (anything else escapes and is reported). An
// accepted file has every accessor exercised and every tensor byte touched (ASan checks the
// bounds), and is then re-written with the writer and read back: the round trip must give
// the same metadata records and tensor bytes, else the target traps.
#include <bitnet/gguf.hpp>

#include <cstdint>  // fixed-width integers
#include <cstdlib>  // std::abort on round-trip mismatch
#include <cstring>  // std::memcmp
#include <optional> // the parsed file, if accepted
#include <span>     // shapes for the writer
#include <string>   // keys
#include <vector>   // input copy

namespace {

namespace gguf = bitnet::gguf;

void check(bool ok) {
  if (!ok) std::abort();
}

template <class F>
void expect_maybe_error(F&& f) {  // a typed getter may legitimately refuse (wrong type or range)
  try {
    f();
  } catch (const gguf::error&) {
  }
}

// Metadata: the getter that fits each record (range errors allowed), and the mismatching
// getters for the first few records only (exceptions are slow under ASan).
void exercise_metadata(const gguf::file& f) {
  std::size_t i = 0;
  for (const auto& kv : f.metadata()) {
    const bool all = i++ < 4;
    check(f.has(kv.key) && f.type_of(kv.key) == kv.type);
    (void)f.value_summary(kv.key, 16);
    const auto t = kv.type;
    if (all || gguf::is_integer(t)) {
      expect_maybe_error([&] { (void)f.get_uint(kv.key); });
      expect_maybe_error([&] { (void)f.get_int(kv.key); });
    }
    if (all || gguf::is_float(t)) expect_maybe_error([&] { (void)f.get_float(kv.key); });
    if (all || t == gguf::value_type::boolean) expect_maybe_error([&] { (void)f.get_bool(kv.key); });
    if (all || t == gguf::value_type::string) expect_maybe_error([&] { (void)f.get_string(kv.key); });
    if (t != gguf::value_type::array) continue;
    check(f.array_size(kv.key) == kv.count && f.array_type(kv.key) == kv.elem_type);
    const auto e = kv.elem_type;
    if (all || e == gguf::value_type::string)
      expect_maybe_error([&] { check(f.get_string_array(kv.key).size() == kv.count); });
    if (all || gguf::is_float(e)) {
      expect_maybe_error([&] { check(f.get_float_array(kv.key).size() == kv.count); });
      expect_maybe_error([&] { check(f.get_double_array(kv.key).size() == kv.count); });
    }
    if (all || gguf::is_integer(e)) {
      expect_maybe_error([&] { check(f.get_int_array(kv.key).size() == kv.count); });
      expect_maybe_error([&] { check(f.get_uint_array(kv.key).size() == kv.count); });
    }
    if (all || e == gguf::value_type::boolean)
      expect_maybe_error([&] { check(f.get_bool_array(kv.key).size() == kv.count); });
  }
}

void exercise_tensors(const gguf::file& f) {
  unsigned sum = 0;
  for (const auto& t : f.tensors()) {
    check(f.find_tensor(t.name) == &t);
    (void)t.n_elements();
    for (std::uint8_t b : t.bytes()) sum += b;
  }
  volatile unsigned sink = sum;
  (void)sink;
}

void round_trip(const gguf::file& f, bool was_forced) {
  gguf::writer w(f.convention());
  for (const auto& kv : f.metadata()) w.copy_kv(f, kv.key);
  for (const auto& t : f.tensors())
    w.add_tensor_ref(t.name, t.type, gguf::shape(std::span<const std::uint64_t>(t.ne.data(), t.n_dims)), t.bytes());
  const std::vector<std::uint8_t> out = w.to_bytes();
  gguf::file::options o;
  o.force_convention = f.convention();
  const auto g = gguf::file::from_memory(out, "round-trip", o);
  if (!was_forced) check(gguf::file::from_memory(out, "round-trip").convention() == f.convention());
  check(g.version() == 3 && g.alignment() == f.alignment());
  check(g.metadata().size() == f.metadata().size());
  for (std::size_t i = 0; i < f.metadata().size(); ++i) {
    const auto& a = f.metadata()[i];
    const auto& b = g.metadata()[i];
    check(a.key == b.key && a.type == b.type && a.elem_type == b.elem_type && a.count == b.count);
    check(a.end - a.value_offset == b.end - b.value_offset);
    check(std::memcmp(f.bytes() + a.value_offset, g.bytes() + b.value_offset, a.end - a.value_offset) == 0);
  }
  check(g.tensors().size() == f.tensors().size());
  for (std::size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& a = f.tensors()[i];
    const auto& b = g.tensors()[i];
    check(a.name == b.name && a.n_dims == b.n_dims && a.ne == b.ne && a.type == b.type &&
          a.raw_type_id == b.raw_type_id && a.nbytes == b.nbytes);
    check(a.nbytes == 0 || std::memcmp(a.data, b.data, a.nbytes) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bool metadata_done = false;  // metadata does not depend on the convention
  for (int mode = 0; mode < 3; ++mode) {
    gguf::file::options o;
    if (mode == 1) o.force_convention = bitnet::id_convention::bitnet;
    if (mode == 2) o.force_convention = bitnet::id_convention::upstream;
    std::optional<gguf::file> f;
    try {
      f.emplace(gguf::file::from_memory(std::vector<std::uint8_t>(data, data + size), "fuzz.gguf", o));
    } catch (const gguf::error&) {
      continue;  // rejected: fine
    }
    if (!metadata_done) exercise_metadata(*f);
    metadata_done = true;
    exercise_tensors(*f);
    round_trip(*f, mode != 0);  // a gguf::error here is a writer/reader disagreement and escapes
  }
  return 0;
}
