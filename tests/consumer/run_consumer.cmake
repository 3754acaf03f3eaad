# ctest driver: builds tests/consumer against loranull (installed, or as a
# subdirectory) in a scratch folder and runs it. -DLORANULL_SOURCE -DWORK -DMODE.
set(build ${WORK}/${MODE})
file(REMOVE_RECURSE ${build})
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE code)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "failed (${code}): ${ARGV}")
  endif()
endfunction()
set(common -DCMAKE_BUILD_TYPE=Release -DLORANULL_CONSUMER_MODE=${MODE} -DLORANULL_SOURCE=${LORANULL_SOURCE})
if(MODE STREQUAL "find_package")
  # Install loranull (headers, CMake package, the tools) into a prefix, then
  # find it there; the installed tools must run.
  run(${CMAKE_COMMAND} -S ${LORANULL_SOURCE} -B ${build}/loranull-build -DLORANULL_BUILD_TESTS=OFF
      -DLORANULL_BUILD_BENCHMARKS=OFF -DLORANULL_BUILD_EXAMPLES=OFF -DLORANULL_CUDA=OFF
      -DCMAKE_INSTALL_PREFIX=${build}/prefix)
  run(${CMAKE_COMMAND} --build ${build}/loranull-build)
  run(${CMAKE_COMMAND} --install ${build}/loranull-build)
  foreach(tool loranull-init loranull-build)
    if(NOT EXISTS ${build}/prefix/bin/${tool})
      message(FATAL_ERROR "cmake --install did not put ${tool} in bin/")
    endif()
    run(${build}/prefix/bin/${tool} --help OUTPUT_QUIET)
  endforeach()
  list(APPEND common -DCMAKE_PREFIX_PATH=${build}/prefix)
endif()
run(${CMAKE_COMMAND} -S ${LORANULL_SOURCE}/tests/consumer -B ${build}/consumer ${common})
run(${CMAKE_COMMAND} --build ${build}/consumer)
run(${build}/consumer/consumer ${build}/scratch)
