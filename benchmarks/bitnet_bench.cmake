# bitnet-bench: end-to-end prefill / decode speed of the runner against the measured read roofline.
add_executable(bitnet-bench ${CMAKE_CURRENT_SOURCE_DIR}/bitnet-bench.cpp)
target_link_libraries(bitnet-bench PRIVATE bitnet_tools benchmark::benchmark)
target_include_directories(bitnet-bench PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
