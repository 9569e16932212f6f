// bitnet/runner/cli.hpp - command lines for the runner's front ends: flag tables, --help.
//
// A front end declares its options as a table of flag<Options> rows (names, argument, help
// text with the default, how the value is stored); parse_flags() applies argv to the options
// through the table and options_help() prints the same table, so --help always lists every
// flag with its default. Nothing here exits or prints: errors are usage_error with a one-line
// message; the program prints it and exits with status 2. parse_ids() reads token ids given on
// a command line or in a file.
#pragma once

#include <cerrno>       // errno for strtoll / strtod
#include <cmath>        // std::isfinite
#include <cstdint>      // fixed-width integers
#include <cstdio>       // std::snprintf for ranges in messages
#include <cstdlib>      // std::strtoll, std::strtoull, std::strtod
#include <limits>       // int32 range of token ids
#include <stdexcept>    // parse_ids' errors
#include <string>       // option values
#include <string_view>  // flag names
#include <vector>       // the flag table

namespace bitnet::run {
struct usage_error {
  std::string msg;
};


namespace cli {

inline std::int64_t parse_int(std::string_view flag, const std::string& v, std::int64_t lo, std::int64_t hi) {
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE || x < lo || x > hi)
    throw usage_error{std::string(flag) + ": expected an integer in [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "], got '" + v + "'"};
  return x;
}

inline float parse_float(std::string_view flag, const std::string& v, double lo, double hi) {
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(x) || x < lo || x > hi) {
    char range[64];
    std::snprintf(range, sizeof range, "[%g, %g]", lo, hi);
    throw usage_error{std::string(flag) + ": expected a number in " + range + ", got '" + v + "'"};
  }
  return static_cast<float>(x);
}

inline std::uint64_t parse_u64(std::string_view flag, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v[0] == '-' || *end != '\0' || errno == ERANGE)
    throw usage_error{std::string(flag) + ": expected a non-negative integer, got '" + v + "'"};
  return x;
}

// One row of a flag table: names ("-m, --model"), argument ("PATH", or "" for a switch),
// help text (with the default), and how the value is stored into the options O.
template <class O> struct flag {
  const char* names;
  const char* arg;
  const char* help;
  void (*apply)(O&, std::string_view name, const std::string& value);
};

inline bool matches(const char* names, std::string_view a) {
  std::string_view n(names);
  while (!n.empty()) {
    const auto comma = n.find(", ");
    if (n.substr(0, comma) == a) return true;
    if (comma == std::string_view::npos) break;
    n.remove_prefix(comma + 2);
  }
  return false;
}

// The "options:" lines of a --help text: names and argument in a 26-column left side.
template <class O> std::string options_help(const std::vector<flag<O>>& flags) {
  std::string s;
  for (const auto& f : flags) {
    std::string left = "  ";
    left.append(f.names);
    if (f.arg[0]) left.append(" ").append(f.arg);
    if (left.size() < 26)
      left.append(26 - left.size(), ' ');
    else
      left.append("\n").append(26, ' ');
    s.append(left).append(f.help).append("\n");
  }
  return s;
}

// Applies argv[1..argc) to o through the table: "--flag value", "--flag=value", "-f value";
// unknown flags, missing values and values given to switches are usage_errors.
template <class O> void parse_flags(int argc, const char* const* argv, const std::vector<flag<O>>& flags, O& o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    bool has_value = false;
    if (a.rfind("--", 0) == 0) {
      if (const auto eq = a.find('='); eq != std::string::npos) {
        value = a.substr(eq + 1);
        a.resize(eq);
        has_value = true;
      }
    }
    const flag<O>* f = nullptr;
    for (const auto& x : flags)
      if (matches(x.names, a)) f = &x;
    if (!f) throw usage_error{"unknown flag '" + a + "'"};
    if (f->arg[0]) {
      if (!has_value) {
        if (i + 1 >= argc) throw usage_error{a + " needs a value (" + f->arg + ")"};
        value = argv[++i];
      }
    } else if (has_value) {
      throw usage_error{a + " takes no value"};
    }
    f->apply(o, a, value);
  }
}

}  // namespace cli

// Decimal token ids separated by any mix of whitespace, commas and square brackets ("1 2 3",
// "1,2,3", "[1, 2, 3]"). `what` names the source in errors (std::invalid_argument).
inline std::vector<std::int32_t> parse_ids(std::string_view s, const std::string& what) {
  std::vector<std::int32_t> ids;
  std::size_t i = 0;
  const auto sep = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '[' || c == ']'; };
  while (i < s.size()) {
    if (sep(s[i])) {
      ++i;
      continue;
    }
    const std::size_t b = i;
    while (i < s.size() && !sep(s[i])) ++i;
    const std::string_view t = s.substr(b, i - b);
    std::int64_t v = 0;
    bool ok = t.size() <= 10;
    for (const char c : t) ok = ok && c >= '0' && c <= '9';
    if (ok)
      for (const char c : t) v = v * 10 + (c - '0');
    if (!ok || v > std::numeric_limits<std::int32_t>::max())
      throw std::invalid_argument(what + ": '" + std::string(t.substr(0, 32)) + "' at byte offset " + std::to_string(b) +
                                  " is not a token id (expected non-negative integers separated by spaces or commas)");
    ids.push_back(static_cast<std::int32_t>(v));
  }
  return ids;
}

}  // namespace bitnet::run
