# tests/convert.cmake - test_convert runs the bitnet-convert executable for its command-line
# checks (exit codes, messages, no partial output), so build the tool first.
if(BITNET_BUILD_TOOLS AND TARGET test_convert)
  add_dependencies(test_convert bitnet-convert)
endif()
