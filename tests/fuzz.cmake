# libFuzzer target for the GGUF reader/writer. Built only with -DBITNET_FUZZ=ON and clang.
#   fuzz_gguf_seeds  (CTest fixture) regenerates the seed corpus in the build dir with the writer
#   fuzz_gguf        (CTest, label "fuzz") fuzzes that corpus for BITNET_FUZZ_SECONDS seconds
# Run by hand:  ctest -L fuzz --output-on-failure   (or build/tests/fuzz_gguf -help=1)
if(BITNET_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(WARNING "BITNET_FUZZ=ON needs clang (libFuzzer); compiler is ${CMAKE_CXX_COMPILER_ID}: fuzz targets skipped")
  else()
    set(BITNET_FUZZ_SECONDS 60 CACHE STRING "Seconds each fuzz CTest runs (-max_total_time)")
    set(_fuzz_flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)

    add_executable(fuzz_gguf ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_gguf.cpp)
    target_link_libraries(fuzz_gguf PRIVATE bitnet_dev)
    target_compile_options(fuzz_gguf PRIVATE ${_fuzz_flags} -O1)
    target_link_options(fuzz_gguf PRIVATE ${_fuzz_flags})

    add_executable(fuzz_gguf_make_seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/make_seeds.cpp)
    target_link_libraries(fuzz_gguf_make_seeds PRIVATE bitnet_dev)

    set(_corpus ${CMAKE_CURRENT_BINARY_DIR}/fuzz_gguf_corpus)
    # Fixture: wipe the corpus copy, then regenerate the seeds (the fuzzer adds to it while running).
    add_test(NAME fuzz_gguf_seeds_clean COMMAND ${CMAKE_COMMAND} -E rm -rf ${_corpus})
    add_test(NAME fuzz_gguf_seeds_make COMMAND fuzz_gguf_make_seeds ${_corpus})
    set_tests_properties(fuzz_gguf_seeds_clean PROPERTIES FIXTURES_SETUP fuzz_gguf_corpus LABELS fuzz)
    set_tests_properties(fuzz_gguf_seeds_make PROPERTIES FIXTURES_SETUP fuzz_gguf_corpus LABELS fuzz
                         DEPENDS fuzz_gguf_seeds_clean)
    add_test(NAME fuzz_gguf
      COMMAND fuzz_gguf -max_total_time=${BITNET_FUZZ_SECONDS} -timeout=10 -rss_limit_mb=2048 -max_len=65536
              -print_final_stats=1 -dict=${CMAKE_CURRENT_SOURCE_DIR}/fuzz/gguf.dict ${_corpus})
    math(EXPR _fuzz_timeout "${BITNET_FUZZ_SECONDS} + 120")
    set_tests_properties(fuzz_gguf PROPERTIES FIXTURES_REQUIRED fuzz_gguf_corpus LABELS fuzz TIMEOUT ${_fuzz_timeout})
  endif()
endif()
