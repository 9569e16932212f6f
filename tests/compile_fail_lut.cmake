# Compile-time caps of the LUT kernels (lut.hpp): instantiating past a cap must fail with
# its static_assert message; the control case (largest allowed configurations, kernels
# instantiated) must compile. Runs the compiler from CTest, as compile_fail.cmake does.
set(_cfl_src ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/lut_caps.cpp)
get_target_property(_cfl_xsimd_inc xsimd INTERFACE_INCLUDE_DIRECTORIES)
set(_cfl_cmd ${CMAKE_CXX_COMPILER} -std=c++20 -fsyntax-only -I${PROJECT_SOURCE_DIR}/include)
foreach(_d IN LISTS _cfl_xsimd_inc)
  list(APPEND _cfl_cmd -I${_d})
endforeach()
add_test(NAME compile_fail_lut.control COMMAND ${_cfl_cmd} -DBITNET_CF_CASE=0 ${_cfl_src})
set(_cfl_cases "1|LUT group size G must be 2 or 3" "2|LUT Rows is capped at kMaxLutRows"
               "3|LUT Rows must be a multiple of the arch's shuffle width" "4|LUT Unroll is capped at kMaxLutUnroll"
               "5|LUT Tokens is capped at kMaxLutTokens" "6|is capped at kMaxLutTile"
               "7|LUTV Rows is capped at kMaxLutvRows" "8|LUTV Tokens must be a multiple of 16 and is capped"
               "9|LUTV Tokens must be a multiple of 16" "10|LUT dot Rows: 16, 32, 48 or 64"
               "11|the LUT dot kernels exist for scalar and avx512vnni" "12|LUT dot Tokens is capped at kMaxLutdTokens"
               "13|LUT dot Rows / 16 \\* Tokens is capped at kMaxLutdTile")
foreach(_case IN LISTS _cfl_cases)
  string(REPLACE "|" ";" _parts "${_case}")
  list(GET _parts 0 _n)
  list(GET _parts 1 _msg)
  add_test(NAME compile_fail_lut.case${_n} COMMAND ${_cfl_cmd} -DBITNET_CF_CASE=${_n} ${_cfl_src})
  set_tests_properties(compile_fail_lut.case${_n} PROPERTIES PASS_REGULAR_EXPRESSION "${_msg}" LABELS compile_fail)
endforeach()
