// bitnet/detail/static_for.hpp - compile-time repetition with a capped count.
//
// The body is stamped out N times; N is always a small template int (rows per
// tile, unroll depth), never a model dimension, and kMaxStaticFor bounds it so
// no instantiation can ask a compiler to unroll thousands of copies.
#pragma once

#include <type_traits>  // std::integral_constant
#include <utility>      // std::integer_sequence

namespace bitnet::detail {

inline constexpr int kMaxStaticFor = 16;

template <int N, class F> [[gnu::always_inline]] inline void static_for(F&& f) {
  static_assert(N >= 0 && N <= kMaxStaticFor, "static_for: repetition count is capped at kMaxStaticFor");
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
  }(std::make_integer_sequence<int, N>{});
}

}  // namespace bitnet::detail
