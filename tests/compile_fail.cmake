# Compile-time caps: instantiating past a cap must fail with its static_assert
# message; the control case must compile. Runs the compiler from CTest.
set(_cf_src ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/caps.cpp)
get_target_property(_cf_xsimd_inc xsimd INTERFACE_INCLUDE_DIRECTORIES)
set(_cf_cmd ${CMAKE_CXX_COMPILER} -std=c++20 -fsyntax-only -I${PROJECT_SOURCE_DIR}/include)
foreach(_d IN LISTS _cf_xsimd_inc)
  list(APPEND _cf_cmd -I${_d})
endforeach()
add_test(NAME compile_fail.control COMMAND ${_cf_cmd} -DBITNET_CF_CASE=0 ${_cf_src})
set(_cf_cases "1|Unroll is capped" "2|Rows is capped" "3|Tokens is capped" "4|Rows \\* Tokens is capped"
              "5|repetition count is capped" "6|Block must be 128 or 256")
foreach(_case IN LISTS _cf_cases)
  string(REPLACE "|" ";" _parts "${_case}")
  list(GET _parts 0 _n)
  list(GET _parts 1 _msg)
  add_test(NAME compile_fail.case${_n} COMMAND ${_cf_cmd} -DBITNET_CF_CASE=${_n} ${_cf_src})
  set_tests_properties(compile_fail.case${_n} PROPERTIES PASS_REGULAR_EXPRESSION "${_msg}" LABELS compile_fail)
endforeach()
