// bitnet-gguf - inspect GGUF files.
//
//   bitnet-gguf info FILE [--json] [--items N] [--convention bitnet|upstream]
//
// Exit codes: 0 ok, 1 the file could not be read (the reader's message is on
// stderr), 2 usage error. New subcommands: add a function and a row to kCommands.
#include <bitnet/gguf.hpp>

#include <algorithm>    // std::max, std::min
#include <array>        // per-type totals
#include <charconv>     // std::to_chars / from_chars
#include <cmath>        // std::isfinite for JSON numbers
#include <cstdint>      // fixed-width integers
#include <cstdio>       // std::printf, std::fprintf
#include <exception>    // std::exception in main
#include <optional>     // forced convention
#include <string>       // output assembly
#include <string_view>  // argument parsing
#include <vector>       // argument lists

namespace {

using bitnet::gguf::value_type;

// ---------------------------------------------------------------------------------------
// JSON output helpers

// Appends `s` as a JSON string; invalid UTF-8 bytes become U+FFFD.
void json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c == '"' || c == '\\') {
        out.push_back('\\');
        out.push_back(static_cast<char>(c));
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c < 0x20 || c == 0x7f) {
        out += "\\u00";
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 15]);
      } else {
        out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    const std::size_t len = bitnet::detail::gguf_utf8_len(s, i);
    if (len != 0) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out.push_back('"');
}

template <class F>
std::string number_text(F v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// One scalar element of type t at absolute file offset pos, as JSON; returns its size in bytes.
std::uint64_t json_element(std::string& out, const bitnet::gguf::file& f, value_type t, std::uint64_t pos) {
  const std::uint8_t* p = f.bytes() + pos;
  switch (t) {
    case value_type::string: {
      const std::uint64_t n = bitnet::detail::gguf_load_u64(p);
      json_string(out, std::string_view(reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n)));
      return 8 + n;
    }
    case value_type::boolean: out += *p ? "true" : "false"; return 1;
    case value_type::f32: out += number_text(bitnet::detail::gguf_load_f32(p)); return 4;
    case value_type::f64: out += number_text(bitnet::detail::gguf_load_f64(p)); return 8;
    default: {
      const auto v = bitnet::detail::gguf_load_int(t, p);
      out += bitnet::gguf::is_signed_integer(t) ? std::to_string(v.as_signed()) : std::to_string(v.bits);
      return bitnet::gguf::value_size(t);
    }
  }
}

std::string shape_text(const bitnet::gguf::tensor_info& t) {
  std::string s = "[";
  const std::uint32_t n = t.n_dims == 0 ? 1 : t.n_dims;
  for (std::uint32_t d = 0; d < n; ++d) {
    if (d) s += ", ";
    s += std::to_string(t.ne[d]);
  }
  return s + "]";
}

std::string human_bytes(std::uint64_t b) {
  char buf[32];
  if (b >= (std::uint64_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1 << 30));
  else if (b >= (std::uint64_t{1} << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1 << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.2f KiB", static_cast<double>(b) / 1024);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

struct type_total {
  std::uint64_t count = 0, bytes = 0;
};

std::array<type_total, bitnet::kTypeTraits.size()> totals_by_type(const bitnet::gguf::file& f) {
  std::array<type_total, bitnet::kTypeTraits.size()> tot{};
  for (const auto& t : f.tensors()) {
    auto& e = tot[static_cast<std::size_t>(t.type)];
    ++e.count;
    e.bytes += t.nbytes;
  }
  return tot;
}

// ---------------------------------------------------------------------------------------
// info

void info_text(const bitnet::gguf::file& f, std::size_t items) {
  std::string o;
  auto line = [&](const char* k, const std::string& v) { o += std::string(k) + std::string(12 - std::string_view(k).size(), ' ') + v + "\n"; };
  line("file", f.path() + " (" + std::to_string(f.size()) + " bytes)");
  line("version", std::to_string(f.version()));
  line("tensors", std::to_string(f.tensors().size()));
  line("metadata", std::to_string(f.metadata().size()) + " keys");
  line("alignment", std::to_string(f.alignment()) + (f.has("general.alignment") ? " (general.alignment)" : " (default)"));
  line("data", "starts at offset " + std::to_string(f.data_offset()));
  line("ids", std::string(bitnet::gguf::convention_name(f.convention())) + " convention: " + f.convention_reason());

  o += "\nmetadata:\n";
  std::size_t w = 0;
  for (const auto& kv : f.metadata()) w = std::max(w, kv.key.size());
  w = std::min<std::size_t>(w, 48);
  for (const auto& kv : f.metadata()) {
    const std::string key = bitnet::detail::gguf_printable(kv.key);
    o += "  " + key + std::string(key.size() < w ? w - key.size() : 0, ' ') + "  ";
    const std::string ty(bitnet::gguf::value_type_name(kv.type));
    o += ty + std::string(ty.size() < 7 ? 7 - ty.size() : 0, ' ') + " ";
    o += f.value_summary(kv.key, items == 0 ? SIZE_MAX : items) + "\n";
  }

  if (!f.tensors().empty()) {
    o += "\ntensors:\n";
    std::size_t nw = 4;
    for (const auto& t : f.tensors()) nw = std::max(nw, bitnet::detail::gguf_printable(t.name).size());
    char buf[512];
    std::snprintf(buf, sizeof buf, "  %5s  %-*s  %-6s  %-24s  %14s  %14s\n", "#", static_cast<int>(nw), "name", "type",
                  "shape", "bytes", "offset");
    o += buf;
    std::size_t i = 0;
    for (const auto& t : f.tensors()) {
      std::snprintf(buf, sizeof buf, "  %5zu  %-*s  %-6s  %-24s  %14llu  %14llu\n", i++, static_cast<int>(nw),
                    bitnet::detail::gguf_printable(t.name).c_str(), std::string(bitnet::type_name(t.type)).c_str(),
                    shape_text(t).c_str(), static_cast<unsigned long long>(t.nbytes),
                    static_cast<unsigned long long>(t.offset));
      o += buf;
    }
  }

  o += "\ntotals:\n";
  const auto tot = totals_by_type(f);
  std::uint64_t all = 0;
  for (std::size_t k = 0; k < tot.size(); ++k) {
    if (tot[k].count == 0) continue;
    all += tot[k].bytes;
    char buf[160];
    std::snprintf(buf, sizeof buf, "  %-6s  %6llu tensor%s  %14llu bytes  (%s)\n",
                  std::string(bitnet::kTypeTraits[k].name).c_str(), static_cast<unsigned long long>(tot[k].count),
                  tot[k].count == 1 ? " " : "s", static_cast<unsigned long long>(tot[k].bytes),
                  human_bytes(tot[k].bytes).c_str());
    o += buf;
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "  %-6s  %6zu tensor%s  %14llu bytes  (%s)\n", "all", f.tensors().size(),
                f.tensors().size() == 1 ? " " : "s", static_cast<unsigned long long>(all), human_bytes(all).c_str());
  o += buf;
  std::fwrite(o.data(), 1, o.size(), stdout);
}

void info_json(const bitnet::gguf::file& f, std::size_t items) {
  std::string o = "{";
  o += "\"file\":";
  json_string(o, f.path());
  o += ",\"size\":" + std::to_string(f.size());
  o += ",\"version\":" + std::to_string(f.version());
  o += ",\"tensor_count\":" + std::to_string(f.tensors().size());
  o += ",\"kv_count\":" + std::to_string(f.metadata().size());
  o += ",\"alignment\":" + std::to_string(f.alignment());
  o += std::string(",\"alignment_explicit\":") + (f.has("general.alignment") ? "true" : "false");
  o += ",\"data_offset\":" + std::to_string(f.data_offset());
  o += ",\"convention\":";
  json_string(o, bitnet::gguf::convention_name(f.convention()));
  o += ",\"convention_reason\":";
  json_string(o, f.convention_reason());

  o += ",\"metadata\":[";
  bool first = true;
  for (const auto& kv : f.metadata()) {
    o += first ? "{" : ",{";
    first = false;
    o += "\"key\":";
    json_string(o, kv.key);
    o += ",\"type\":";
    json_string(o, bitnet::gguf::value_type_name(kv.type));
    if (kv.type != value_type::array) {
      o += ",\"value\":";
      json_element(o, f, kv.type, kv.value_offset);
    } else {
      o += ",\"elem_type\":";
      json_string(o, bitnet::gguf::value_type_name(kv.elem_type));
      o += ",\"count\":" + std::to_string(kv.count);
      const std::uint64_t n = items == 0 ? kv.count : std::min<std::uint64_t>(kv.count, items);
      o += ",\"values\":[";
      std::uint64_t pos = kv.elements_offset();
      for (std::uint64_t i = 0; i < n; ++i) {
        if (i) o += ",";
        pos += json_element(o, f, kv.elem_type, pos);
      }
      o += "]";
      o += std::string(",\"truncated\":") + (n < kv.count ? "true" : "false");
    }
    o += "}";
  }
  o += "]";

  o += ",\"tensors\":[";
  first = true;
  for (const auto& t : f.tensors()) {
    o += first ? "{" : ",{";
    first = false;
    o += "\"name\":";
    json_string(o, t.name);
    o += ",\"type\":";
    json_string(o, bitnet::type_name(t.type));
    o += ",\"type_id\":" + std::to_string(t.raw_type_id);
    o += ",\"shape\":[";
    for (std::uint32_t d = 0; d < t.n_dims; ++d) {
      if (d) o += ",";
      o += std::to_string(t.ne[d]);
    }
    o += "],\"n_elements\":" + std::to_string(t.n_elements());
    o += ",\"bytes\":" + std::to_string(t.nbytes);
    o += ",\"offset\":" + std::to_string(t.offset);
    o += ",\"file_offset\":" + std::to_string(f.data_offset() + t.offset);
    o += "}";
  }
  o += "]";

  const auto tot = totals_by_type(f);
  std::uint64_t all = 0;
  o += ",\"totals\":{\"by_type\":[";
  first = true;
  for (std::size_t k = 0; k < tot.size(); ++k) {
    if (tot[k].count == 0) continue;
    all += tot[k].bytes;
    o += first ? "{" : ",{";
    first = false;
    o += "\"type\":";
    json_string(o, bitnet::kTypeTraits[k].name);
    o += ",\"count\":" + std::to_string(tot[k].count) + ",\"bytes\":" + std::to_string(tot[k].bytes) + "}";
  }
  o += "],\"tensors\":" + std::to_string(f.tensors().size()) + ",\"bytes\":" + std::to_string(all) + "}";
  o += "}\n";
  std::fwrite(o.data(), 1, o.size(), stdout);
}

constexpr const char* kInfoHelp =
    "usage: bitnet-gguf info FILE [options]\n"
    "\n"
    "Prints the header (version, counts, alignment, type-id convention and why),\n"
    "the metadata (long arrays abbreviated), a tensor table and totals per type.\n"
    "\n"
    "options:\n"
    "  --json                        one JSON object instead of text (default: text)\n"
    "  --items N                     array elements to show, 0 = all (default: 8)\n"
    "  --convention bitnet|upstream  read type ids 36..39 this way instead of deciding\n"
    "                                from the file (default: decide)\n"
    "  -h, --help                    this help\n";

int usage_error(const std::string& msg, const char* help) {
  std::fprintf(stderr, "bitnet-gguf: %s\n\n%s", msg.c_str(), help);
  return 2;
}

int cmd_info(const std::vector<std::string_view>& args) {
  bool json = false;
  std::size_t items = 8;
  std::optional<std::string> path;
  bitnet::gguf::file::options opts;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kInfoHelp, stdout);
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--items" || a == "--convention") {
      if (i + 1 >= args.size()) return usage_error(std::string(a) + " needs a value", kInfoHelp);
      const std::string_view v = args[++i];
      if (a == "--items") {
        auto r = std::from_chars(v.data(), v.data() + v.size(), items);
        if (r.ec != std::errc{} || r.ptr != v.data() + v.size())
          return usage_error("--items needs a non-negative integer, got '" + std::string(v) + "'", kInfoHelp);
      } else if (v == "bitnet") {
        opts.force_convention = bitnet::id_convention::bitnet;
      } else if (v == "upstream") {
        opts.force_convention = bitnet::id_convention::upstream;
      } else {
        return usage_error("--convention must be 'bitnet' or 'upstream', got '" + std::string(v) + "'", kInfoHelp);
      }
    } else if (!a.empty() && a[0] == '-') {
      return usage_error("unknown option '" + std::string(a) + "'", kInfoHelp);
    } else if (path) {
      return usage_error("more than one FILE given", kInfoHelp);
    } else {
      path = std::string(a);
    }
  }
  if (!path) return usage_error("info needs a FILE", kInfoHelp);
  try {
    const auto f = bitnet::gguf::file::open(*path, opts);
    if (json) info_json(f, items);
    else info_text(f, items);
  } catch (const bitnet::gguf::error& e) {
    std::fprintf(stderr, "bitnet-gguf: %s\n", e.what());
    return 1;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// dispatch

struct command {
  std::string_view name;
  std::string_view summary;
  int (*run)(const std::vector<std::string_view>& args);
};

constexpr command kCommands[] = {
    {"info", "print header, metadata, tensor table and totals of a GGUF file", cmd_info},
};

void print_help(std::FILE* to) {
  std::fprintf(to, "usage: bitnet-gguf COMMAND [ARGS...]\n\ncommands:\n");
  for (const auto& c : kCommands)
    std::fprintf(to, "  %-10.*s %.*s\n", static_cast<int>(c.name.size()), c.name.data(),
                 static_cast<int>(c.summary.size()), c.summary.data());
  std::fprintf(to, "\n'bitnet-gguf COMMAND --help' describes a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      print_help(stderr);
      return 2;
    }
    const std::string_view cmd = argv[1];
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
      print_help(stdout);
      return 0;
    }
    std::vector<std::string_view> args(argv + 2, argv + argc);
    for (const auto& c : kCommands)
      if (c.name == cmd) return c.run(args);
    std::fprintf(stderr, "bitnet-gguf: unknown command '%s'\n\n", argv[1]);
    print_help(stderr);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitnet-gguf: %s\n", e.what());
    return 1;
  }
}
