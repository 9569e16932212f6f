# Dense GEMV kernels: the gtest-free self-check (tests/cross/dense_selfcheck.cpp),
# built natively, and - when an AArch64 cross compiler and qemu-aarch64 are
# installed - cross-compiled and run under qemu to exercise the NEON / sdot bodies.
add_executable(dense_selfcheck ${CMAKE_CURRENT_SOURCE_DIR}/cross/dense_selfcheck.cpp)
target_link_libraries(dense_selfcheck PRIVATE bitnet_dev)
target_include_directories(dense_selfcheck PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME dense_selfcheck COMMAND dense_selfcheck)

find_program(BITNET_AARCH64_CXX aarch64-linux-gnu-g++)
find_program(BITNET_QEMU_AARCH64 qemu-aarch64)
if(BITNET_AARCH64_CXX AND BITNET_QEMU_AARCH64)
  add_test(NAME dense_neon_qemu
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cross/run_dense_neon.sh ${CMAKE_CURRENT_BINARY_DIR}/cross)
  set_tests_properties(dense_neon_qemu PROPERTIES TIMEOUT 600)
endif()
