# tests/tune.cmake - bitnet-tune end to end on small shapes: every kernel this CPU runs
# is timed and checked bit for bit against the default kernel (exit 1 if any differs),
# the tuning file is written and re-loaded by the tool itself, the SVG is written; and
# usage errors exit with a message. The tool target is defined later (tools/), which
# add_test resolves at generate time.
if(BITNET_BUILD_TOOLS)
  set(_tune_out ${CMAKE_CURRENT_BINARY_DIR}/tune_small)
  add_test(NAME tune.small COMMAND bitnet-tune --shape 300x520,97x1000 --batch 1,5,40 --min-time 0.01 --cache
           --include-scalar -o ${_tune_out}.txt --plot ${_tune_out}.svg)
  add_test(NAME tune.streamed COMMAND bitnet-tune --shape 64x256 --batch 1 --min-time 0.01 -t 2 --clock cpu
           -o ${_tune_out}_2.txt)
  add_test(NAME tune.usage COMMAND bitnet-tune --shape nonsense)
  set_tests_properties(tune.usage PROPERTIES PASS_REGULAR_EXPRESSION "unknown shape 'nonsense'")
  add_test(NAME tune.help COMMAND bitnet-tune --help)
  set_tests_properties(tune.help PROPERTIES PASS_REGULAR_EXPRESSION "--batch LIST")
endif()
