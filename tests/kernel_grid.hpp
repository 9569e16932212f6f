// tests/kernel_grid.hpp - GoogleTest type lists built from the library's own grids.
#pragma once

#include <gtest/gtest.h>  // ::testing::Types

#include <bitnet/dispatch.hpp>
#include <string>  // names

#include "test_data.hpp"

namespace bitnet::test {

template <class L> struct to_gtest;
template <class... C> struct to_gtest<type_list<C...>> {
  using type = ::testing::Types<C...>;
};

struct config_name {
  template <class C> static std::string GetName(int) {
    std::string n = C::name();
    for (auto& ch : n)
      if (ch == '/') ch = '_';
    return n;
  }
};

}  // namespace bitnet::test
