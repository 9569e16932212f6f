// bitnet/detail/static_for.hpp - compile-time repetition with a capped count.
//
// The body is stamped out N times; N is always a small template int (rows per
// tile, unroll depth), never a model dimension, and kMaxStaticFor bounds it so
// no instantiation can ask a compiler to unroll thousands of copies.
//
// Each arch body gets its own copy (BITNET_DEFINE_STATIC_FOR with that arch's
// target attribute), and its lambdas are marked BITNET_INLINE_<ARCH>: GCC only
// inlines a function into a caller with the same target options, so a shared
// default-target helper would turn every unrolled step into a call.
#pragma once

#include <type_traits>  // std::integral_constant
#include <utility>      // std::integer_sequence

namespace bitnet::detail {
inline constexpr int kMaxStaticFor = 16;
}  // namespace bitnet::detail

#define BITNET_DEFINE_STATIC_FOR(NAME, ATTR)                                                           \
  template <class F, int... I>                                                                         \
  [[gnu::always_inline]] ATTR inline void NAME##_impl(F& f, std::integer_sequence<int, I...>) {        \
    (f(std::integral_constant<int, I>{}), ...);                                                        \
  }                                                                                                    \
  template <int N, class F> [[gnu::always_inline]] ATTR inline void NAME(F&& f) {                      \
    static_assert(N >= 0 && N <= ::bitnet::detail::kMaxStaticFor,                                      \
                  "static_for: repetition count is capped at kMaxStaticFor");                          \
    NAME##_impl(f, std::make_integer_sequence<int, N>{});                                              \
  }

#define BITNET_INLINE __attribute__((always_inline))

namespace bitnet::detail {
BITNET_DEFINE_STATIC_FOR(static_for, )
}  // namespace bitnet::detail
