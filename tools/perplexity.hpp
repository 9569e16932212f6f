// tools/perplexity.hpp - the reusable logic of bitnet-perplexity (see docs/perplexity.md).
//
//   plan_windows     which tokens each evaluation window holds and which targets it scores
//   running_stats    mean, variance and standard error of per-position values (Welford)
//   summarize_row    log-sum-exp and arg max of one row of logits, in double
//   kl_divergence    KL(base || this) of two rows of logits, in double, from stable log-softmax
//   parse_ids        token ids from "1, 2 3" / "[1,2,3]" text
//   logits_writer    the saved-logits file, written as it is produced (FILE.tmp, renamed at the end)
//   logits_reader    the same file, validated (size, fields, ids, checksum) before it is used
//
// Errors are `ppl::error` with a one-line what() naming the file or argument at fault.
// Nothing here prints.
#pragma once

#include <algorithm>    // std::min, std::max
#include <bit>          // std::endian
#include <cerrno>       // errno after fopen
#include <cmath>        // std::exp, std::log, std::sqrt, std::isfinite
#include <cstdint>      // fixed-width integers
#include <cstdio>       // std::FILE streaming
#include <cstring>      // std::memcpy, std::memcmp, std::strerror
#include <filesystem>   // file sizes, rename, temp-file cleanup
#include <limits>       // numeric limits
#include <stdexcept>    // std::runtime_error
#include <string>       // messages
#include <string_view>  // parsing
#include <vector>       // plans, ids, rows

#include <bitnet/runner/cli.hpp>  // parse_ids

namespace bitnet::ppl {

static_assert(std::endian::native == std::endian::little, "the logits file is little-endian; add byte swaps");

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ================================================================ windows
//
// The token sequence t[0..N) is scored in windows of at most n_ctx tokens. Every target
// t[1..N) is scored exactly once, predicted from the logits of the position before it:
//   window 0 holds t[0 .. min(n_ctx, N)) and scores all of its targets t[1 .. end): the first
//   tokens of the text are scored with the whole text before them as context;
//   window k > 0 ends `stride` tokens after the previous one (or at N) and starts n_ctx tokens
//   before its end; it scores only the targets the previous windows did not, each with at
//   least n_ctx - stride positions of context. With `bos_first`, its first token is replaced
//   by BOS (that token is context only, never a target's own position).
// A window evaluates its tokens [start, end - 1): the last token is only ever a target.
struct window {
  std::int64_t start = 0;         // absolute index of the window's first token
  std::int64_t first_target = 0;  // absolute index of the first target it scores
  std::int64_t end = 0;           // one past the last target it scores
  std::int64_t length() const noexcept { return end - start; }           // tokens in the window
  std::int64_t evaluated() const noexcept { return end - 1 - start; }    // tokens run through the model
  std::int64_t first_row() const noexcept { return first_target - 1 - start; }  // first scored position in the window
  std::int64_t scored() const noexcept { return end - first_target; }
  bool operator==(const window&) const = default;
};

// max_windows <= 0: all. Throws error if n_tokens < 2 or the stride cannot slide.
inline std::vector<window> plan_windows(std::int64_t n_tokens, std::int64_t n_ctx, std::int64_t stride, bool bos_first,
                                        std::int64_t max_windows = 0) {
  if (n_tokens < 2)
    throw error("the sequence has " + std::to_string(n_tokens) + " token" + (n_tokens == 1 ? "" : "s") +
                "; at least 2 are needed to score one position");
  if (n_ctx < 2) throw error("the context must hold at least 2 tokens, got " + std::to_string(n_ctx));
  std::vector<window> w;
  w.push_back({0, 1, std::min(n_ctx, n_tokens)});
  if (n_tokens > n_ctx) {
    const std::int64_t max_stride = n_ctx - 1 - (bos_first ? 1 : 0);
    if (stride < 1 || stride > max_stride)
      throw error("the stride must be in 1 .. " + std::to_string(max_stride) + " for a context of " +
                  std::to_string(n_ctx) + (bos_first ? " (the first position of later windows holds BOS)" : "") +
                  ", got " + std::to_string(stride));
  }
  while (w.back().end < n_tokens && (max_windows <= 0 || static_cast<std::int64_t>(w.size()) < max_windows)) {
    const std::int64_t prev = w.back().end, end = std::min(prev + stride, n_tokens);
    w.push_back({end - n_ctx, prev, end});
  }
  if (max_windows > 0 && static_cast<std::int64_t>(w.size()) > max_windows) w.resize(static_cast<std::size_t>(max_windows));
  return w;
}

// ================================================================ statistics

// Welford's running mean and sum of squared deviations (stable for long runs).
struct running_stats {
  std::int64_t n = 0;
  double mean = 0.0, m2 = 0.0, max = -std::numeric_limits<double>::infinity();
  std::int64_t argmax = -1;  // index (order of add) of the largest value

  void add(double x) noexcept {
    if (x > max) {
      max = x;
      argmax = n;
    }
    ++n;
    const double d = x - mean;
    mean += d / static_cast<double>(n);
    m2 += d * (x - mean);
  }
  // Sample variance (n - 1 in the denominator); NaN for n < 2.
  double variance() const noexcept {
    return n < 2 ? std::numeric_limits<double>::quiet_NaN() : m2 / static_cast<double>(n - 1);
  }
  // Standard error of the mean, sqrt(variance / n); NaN for n < 2.
  double std_error() const noexcept { return std::sqrt(variance() / static_cast<double>(n)); }
};

// Perplexity exp(mean NLL) and its standard error by the delta method:
// se(exp(m)) ~= exp(m) * se(m).
struct perplexity_estimate {
  double ppl, se;
};
inline perplexity_estimate perplexity(const running_stats& nll) noexcept {
  const double p = std::exp(nll.mean);
  return {p, p * nll.std_error()};
}

// ================================================================ rows of logits

struct row_summary {
  double max = 0.0;      // largest logit
  double lse = 0.0;      // log(sum(exp(x))), computed as max + log(sum(exp(x - max)))
  std::int32_t argmax = 0;  // lowest id among the largest logits
};

// Non-finite logits give a non-finite lse (the caller checks).
inline row_summary summarize_row(const float* x, std::int64_t n) noexcept {
  row_summary r;
  r.max = static_cast<double>(x[0]);
  for (std::int64_t i = 1; i < n; ++i)
    if (static_cast<double>(x[i]) > r.max) {
      r.max = static_cast<double>(x[i]);
      r.argmax = static_cast<std::int32_t>(i);
    }
  double s = 0.0;
  for (std::int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - r.max);
  r.lse = r.max + std::log(s);
  return r;
}

// -log softmax(x)[target]
inline double nll(const float* x, const row_summary& r, std::int32_t target) noexcept {
  return r.lse - static_cast<double>(x[target]);
}

// KL(P || Q) = sum_v P(v) (log P(v) - log Q(v)) in nats, P = softmax(base), Q = softmax(cur),
// with log P(v) = base[v] - lse(base) (likewise Q). Identical rows give exactly 0.
inline double kl_divergence(const float* base, const row_summary& rb, const float* cur, const row_summary& rc,
                            std::int64_t n) noexcept {
  double kl = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double lp = static_cast<double>(base[i]) - rb.lse, lq = static_cast<double>(cur[i]) - rc.lse;
    kl += std::exp(lp) * (lp - lq);
  }
  return kl;
}

// ================================================================ token ids from text

// Decimal ids separated by any mix of whitespace, commas and square brackets ("1 2 3",
// "1,2,3", "[1, 2, 3]"): the runner's parse_ids, its errors as ppl::error. `what` names the
// source in errors.
inline std::vector<std::int32_t> parse_ids(std::string_view s, const std::string& what) {
  try {
    return run::parse_ids(s, what);
  } catch (const std::invalid_argument& e) {
    throw error(e.what());
  }
}

// ================================================================ the logits file
//
// Little-endian, in this order (docs/perplexity.md):
//   offset  0  char[8]  magic "BNLOGITS"
//           8  u32      version = 1
//          12  u32      header size in bytes = 64
//          16  u32      n_vocab
//          20  u32      n_ctx     the window size of the run
//          24  u32      stride    its stride
//          28  i32      bos       the id put at the start of windows after the first, -1 = none
//          32  u64      n_tokens  the tokens the run evaluated, t[0 .. n_tokens)
//          40  u64      n_positions = n_tokens - 1: row r holds the logits that predict t[r + 1]
//          48  u8[16]   zero
//          64  i32      tokens[n_tokens]
//               f32      logits[n_positions][n_vocab]
//               u64      FNV-1a 64 of every byte before it
// The file is exactly that long; the reader rejects anything else.

inline constexpr char kMagic[8] = {'B', 'N', 'L', 'O', 'G', 'I', 'T', 'S'};
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::uint32_t kHeaderBytes = 64;

struct logits_header {
  std::uint32_t n_vocab = 0, n_ctx = 0, stride = 0;
  std::int32_t bos = -1;
  std::uint64_t n_tokens = 0, n_positions = 0;
};

struct fnv1a64 {
  std::uint64_t h = 0xcbf29ce484222325ull;
  void update(const void* p, std::size_t n) noexcept {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
};

namespace detail {

template <class T> void put(unsigned char* dst, T v) noexcept { std::memcpy(dst, &v, sizeof v); }
template <class T> T get(const unsigned char* src) noexcept {
  T v;
  std::memcpy(&v, src, sizeof v);
  return v;
}

inline void encode_header(const logits_header& h, unsigned char (&b)[kHeaderBytes]) noexcept {
  std::memset(b, 0, sizeof b);
  std::memcpy(b, kMagic, 8);
  put<std::uint32_t>(b + 8, kVersion);
  put<std::uint32_t>(b + 12, kHeaderBytes);
  put<std::uint32_t>(b + 16, h.n_vocab);
  put<std::uint32_t>(b + 20, h.n_ctx);
  put<std::uint32_t>(b + 24, h.stride);
  put<std::int32_t>(b + 28, h.bos);
  put<std::uint64_t>(b + 32, h.n_tokens);
  put<std::uint64_t>(b + 40, h.n_positions);
}

// Total file size for a header, or 0 if it overflows.
inline std::uint64_t file_bytes(const logits_header& h) noexcept {
  const std::uint64_t lim = std::numeric_limits<std::uint64_t>::max() / 8;
  if (h.n_tokens > lim / 4 || h.n_vocab == 0 || h.n_positions > lim / 4 / h.n_vocab) return 0;
  return kHeaderBytes + 4 * h.n_tokens + 4 * h.n_positions * h.n_vocab + 8;
}

}  // namespace detail

// Writes PATH.tmp and renames it to PATH in finish(); destroyed unfinished, it removes PATH.tmp.
class logits_writer {
 public:
  logits_writer(std::string path, const logits_header& h, const std::vector<std::int32_t>& tokens)
      : path_(std::move(path)), tmp_(path_ + ".tmp"), h_(h) {
    if (h.n_tokens != tokens.size() || h.n_positions + 1 != h.n_tokens)
      throw error(path_ + ": inconsistent logits header (tokens " + std::to_string(h.n_tokens) + ", positions " +
                  std::to_string(h.n_positions) + ")");
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) throw error(tmp_ + ": cannot create (" + std::strerror(errno) + ")");
    unsigned char b[kHeaderBytes];
    detail::encode_header(h, b);
    write(b, sizeof b);
    write(tokens.data(), tokens.size() * sizeof(std::int32_t));
  }
  logits_writer(const logits_writer&) = delete;
  logits_writer& operator=(const logits_writer&) = delete;
  ~logits_writer() {
    if (f_) {
      std::fclose(f_);
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }

  void write_row(const float* logits) {
    if (rows_ >= h_.n_positions) throw error(path_ + ": more rows than the header announces");
    write(logits, static_cast<std::size_t>(h_.n_vocab) * sizeof(float));
    ++rows_;
  }

  void finish() {
    if (rows_ != h_.n_positions)
      throw error(path_ + ": " + std::to_string(rows_) + " rows written, the header announces " +
                  std::to_string(h_.n_positions));
    const std::uint64_t sum = hash_.h;
    write(&sum, sizeof sum);
    const bool ok = std::fflush(f_) == 0 && std::ferror(f_) == 0;
    const int rc = std::fclose(f_);
    f_ = nullptr;
    std::error_code ec;
    if (!ok || rc != 0) {
      std::filesystem::remove(tmp_, ec);
      throw error(tmp_ + ": write failed");
    }
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) {
      std::filesystem::remove(tmp_, ec);
      throw error(path_ + ": cannot rename " + tmp_ + " to it (" + ec.message() + ")");
    }
  }

 private:
  void write(const void* p, std::size_t n) {
    hash_.update(p, n);
    if (n && std::fwrite(p, 1, n, f_) != n) throw error(tmp_ + ": write failed (" + std::strerror(errno) + ")");
  }

  std::string path_, tmp_;
  logits_header h_;
  std::FILE* f_ = nullptr;
  fnv1a64 hash_;
  std::uint64_t rows_ = 0;
};

// Opens and validates the whole file (one sequential pass: size, fields, token ids, every logit
// finite, checksum) before returning; then read_row() hands out the rows in order.
class logits_reader {
 public:
  explicit logits_reader(const std::string& path) : path_(path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) fail("no such file (or not a regular file)");
    const std::uint64_t size = std::filesystem::file_size(path, ec);
    if (ec) fail("cannot read its size (" + ec.message() + ")");
    f_ = std::fopen(path.c_str(), "rb");
    if (!f_) fail(std::string("cannot open (") + std::strerror(errno) + ")");
    fnv1a64 hash;
    unsigned char b[kHeaderBytes];
    if (size < kHeaderBytes || std::fread(b, 1, sizeof b, f_) != sizeof b)
      fail("truncated: " + std::to_string(size) + " bytes, shorter than the " + std::to_string(kHeaderBytes) +
           "-byte header");
    hash.update(b, sizeof b);
    if (std::memcmp(b, kMagic, 8) != 0) fail("not a bitnet-perplexity logits file (magic is not \"BNLOGITS\")");
    if (const auto v = detail::get<std::uint32_t>(b + 8); v != kVersion)
      fail("version " + std::to_string(v) + ", this program reads version " + std::to_string(kVersion));
    if (const auto hb = detail::get<std::uint32_t>(b + 12); hb != kHeaderBytes)
      fail("header size " + std::to_string(hb) + ", expected " + std::to_string(kHeaderBytes));
    h_.n_vocab = detail::get<std::uint32_t>(b + 16);
    h_.n_ctx = detail::get<std::uint32_t>(b + 20);
    h_.stride = detail::get<std::uint32_t>(b + 24);
    h_.bos = detail::get<std::int32_t>(b + 28);
    h_.n_tokens = detail::get<std::uint64_t>(b + 32);
    h_.n_positions = detail::get<std::uint64_t>(b + 40);
    for (int i = 48; i < 64; ++i)
      if (b[i] != 0) fail("header byte " + std::to_string(i) + " is not zero (corrupt header)");
    if (h_.n_vocab == 0 || h_.n_vocab > (1u << 30)) fail("n_vocab " + std::to_string(h_.n_vocab) + " is out of range");
    if (h_.n_ctx < 2 || h_.n_ctx > (1u << 30)) fail("n_ctx " + std::to_string(h_.n_ctx) + " is out of range");
    if (h_.stride < 1 || h_.stride >= h_.n_ctx) fail("stride " + std::to_string(h_.stride) + " is out of range");
    if (h_.bos < -1 || h_.bos >= static_cast<std::int64_t>(h_.n_vocab))
      fail("bos id " + std::to_string(h_.bos) + " is outside the vocabulary");
    if (h_.n_tokens < 2 || h_.n_positions + 1 != h_.n_tokens)
      fail("n_tokens " + std::to_string(h_.n_tokens) + " and n_positions " + std::to_string(h_.n_positions) +
           " do not fit (n_positions = n_tokens - 1, n_tokens >= 2)");
    const std::uint64_t want = detail::file_bytes(h_);
    if (want == 0) fail("the header's sizes overflow (corrupt header)");
    if (size < want)
      fail("truncated: " + std::to_string(size) + " bytes, the header describes " + std::to_string(want));
    if (size > want)
      fail(std::to_string(size - want) + " bytes after the end the header describes (" + std::to_string(want) + ")");

    tokens_.resize(h_.n_tokens);
    read(tokens_.data(), tokens_.size() * sizeof(std::int32_t));
    hash.update(tokens_.data(), tokens_.size() * sizeof(std::int32_t));
    for (std::size_t i = 0; i < tokens_.size(); ++i)
      if (tokens_[i] < 0 || tokens_[i] >= static_cast<std::int64_t>(h_.n_vocab))
        fail("token " + std::to_string(i) + " is " + std::to_string(tokens_[i]) + ", outside the vocabulary of " +
             std::to_string(h_.n_vocab));
    data_offset_ = kHeaderBytes + 4 * h_.n_tokens;

    std::vector<float> row(h_.n_vocab);
    for (std::uint64_t r = 0; r < h_.n_positions; ++r) {
      read(row.data(), row.size() * sizeof(float));
      hash.update(row.data(), row.size() * sizeof(float));
      for (std::size_t v = 0; v < row.size(); ++v)
        if (!std::isfinite(row[v]))
          fail("logit " + std::to_string(v) + " of position " + std::to_string(r) + " is not finite (corrupt data)");
    }
    std::uint64_t sum = 0;
    read(&sum, sizeof sum);
    if (sum != hash.h) fail("checksum mismatch: the file is corrupt");
    if (std::fseek(f_, static_cast<long>(data_offset_), SEEK_SET) != 0) fail("cannot seek");
  }
  logits_reader(const logits_reader&) = delete;
  logits_reader& operator=(const logits_reader&) = delete;
  ~logits_reader() {
    if (f_) std::fclose(f_);
  }

  const logits_header& header() const noexcept { return h_; }
  const std::vector<std::int32_t>& tokens() const noexcept { return tokens_; }
  const std::string& path() const noexcept { return path_; }

  // The next row (n_vocab floats) into `out`.
  void read_row(float* out) {
    if (next_ >= h_.n_positions) fail("no more rows");
    read(out, static_cast<std::size_t>(h_.n_vocab) * sizeof(float));
    ++next_;
  }

 private:
  [[noreturn]] void fail(const std::string& m) const { throw error(path_ + ": " + m); }
  void read(void* p, std::size_t n) {
    if (n && std::fread(p, 1, n, f_) != n) fail("read failed (file changed while reading?)");
  }

  std::string path_;
  std::FILE* f_ = nullptr;
  logits_header h_;
  std::vector<std::int32_t> tokens_;
  std::uint64_t data_offset_ = 0, next_ = 0;
};

}  // namespace bitnet::ppl
