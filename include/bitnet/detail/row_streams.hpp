// bitnet/detail/row_streams.hpp - visiting a row range as several far-apart streams.
//
// A GEMV that walks its rows in order reads one sequential stream. On the machines we measured,
// one stream leaves the hardware prefetchers and memory-level parallelism half used: a plain
// one-stream read reaches about 0.8 of a two-stream one, and a kernel with real work per byte
// reaches less. Splitting [r0, r1) into S equal parts and working on row i of every part together
// keeps S streams in flight. Rows are independent, so results do not change; only the visiting
// order does.
#pragma once

#include <cstddef>  // std::size_t
#include <cstdint>  // fixed-width integers

namespace bitnet::detail {

// Calls tile_s(m, s) for the groups {m, m + s, ..., m + (S-1)s} covering the first S * s rows of
// [r0, r1), s = (r1 - r0) / S, then tile_1(m) for each remaining row.
template <int S, class FS, class F1>
inline void for_each_stream_tile(std::int64_t r0, std::int64_t r1, FS&& tile_s, F1&& tile_1) {
  static_assert(S >= 1, "at least one stream");
  const std::int64_t s = (r1 - r0) / S;
  for (std::int64_t i = 0; i < s; ++i) tile_s(r0 + i, s);
  for (std::int64_t m = r0 + S * s; m < r1; ++m) tile_1(m);
}

// The same over a row-major matrix: calls f.template operator()<N>(rows, out) with N row
// pointers (row m at W + m * row_bytes) and their outputs y + m, N = S for the stream groups and
// N = 1 for the remainder.
template <int S, class F>
inline void for_each_stream_rows(const void* W, std::size_t row_bytes, float* y, std::int64_t r0, std::int64_t r1,
                                 F&& f) {
  const auto* base = static_cast<const std::uint8_t*>(W);
  auto row = [&](std::int64_t m) { return base + static_cast<std::size_t>(m) * row_bytes; };
  for_each_stream_tile<S>(
      r0, r1,
      [&](std::int64_t m, std::int64_t s) {
        const std::uint8_t* rows[S];
        float* out[S];
        for (int r = 0; r < S; ++r) {
          rows[r] = row(m + r * s);
          out[r] = y + m + r * s;
        }
        f.template operator()<S>(rows, out);
      },
      [&](std::int64_t m) {
        const std::uint8_t* rows[1] = {row(m)};
        float* out[1] = {y + m};
        f.template operator()<1>(rows, out);
      });
}

}  // namespace bitnet::detail
