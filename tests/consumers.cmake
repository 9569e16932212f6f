# A tiny consumer project per route: find_package (after `cmake --install`) and add_subdirectory.
foreach(route IN ITEMS find_package add_subdirectory)
  add_test(NAME consumer.${route}
    COMMAND ${CMAKE_COMMAND} -DROUTE=${route} -DSRC=${PROJECT_SOURCE_DIR} -DBIN=${PROJECT_BINARY_DIR}
            -DWORK=${CMAKE_CURRENT_BINARY_DIR}/consumer_${route} -DCXX=${CMAKE_CXX_COMPILER}
            -P ${CMAKE_CURRENT_SOURCE_DIR}/consumers/run.cmake)
  set_tests_properties(consumer.${route} PROPERTIES LABELS consumer PASS_REGULAR_EXPRESSION "consumer: ok")
endforeach()
