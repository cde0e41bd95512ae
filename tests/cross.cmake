# tests/cross.cmake - the golden and gradient tests for aarch64 (NEON,
# 4-float vectors), built with Debian's cross compiler and run under
# qemu-user (included from tests/CMakeLists.txt).  Without the cross
# compiler or qemu-aarch64 each test reports skipped.  Their speed on ARM
# is not measured here: only that they compute what PyTorch computes.
if(RNC_SANITIZE)   # the optimized build runs them
  return()
endif()
find_program(RNC_AARCH64_CC aarch64-linux-gnu-gcc)
find_program(RNC_QEMU_AARCH64 qemu-aarch64)
set(RNC_AARCH64_SYSROOT /usr/aarch64-linux-gnu CACHE PATH "aarch64 libraries for qemu-aarch64 -L")

foreach(spec ${GOLDEN_SPECS})
  foreach(kind golden gradcheck)
    # finite differences under emulation are slow: the tiny networks only
    # (every spec's golden test covers its widths against PyTorch)
    if(kind STREQUAL gradcheck AND NOT spec MATCHES "^tiny_")
      continue()
    endif()
    set(test ${kind}_${spec}_default_aarch64)
    if(NOT RNC_AARCH64_CC OR NOT RNC_QEMU_AARCH64)
      add_test(NAME ${test} COMMAND sh -c "echo 'skipped: needs aarch64-linux-gnu-gcc and qemu-aarch64 (scripts/setup.sh installs them)'; exit 77")
      set_tests_properties(${test} PROPERTIES SKIP_RETURN_CODE 77)
      continue()
    endif()
    set(dir ${CMAKE_CURRENT_BINARY_DIR}/aarch64)
    set(src ${dir}/${spec}.c)
    if(NOT TARGET aarch64_${spec}_source)
      add_custom_command(OUTPUT ${src}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${dir}
        COMMAND rnc ${CMAKE_CURRENT_SOURCE_DIR}/specs/${spec}.spec -o ${src} --target aarch64
        DEPENDS rnc ${CMAKE_CURRENT_SOURCE_DIR}/specs/${spec}.spec
        COMMENT "rnc --target aarch64 ${spec}" VERBATIM)
      add_custom_target(aarch64_${spec}_source DEPENDS ${src})
    endif()
    set(defs -DRNC_NO_MAIN -DMODEL=rnc_model_${spec})
    set(files ${src} ${CMAKE_CURRENT_SOURCE_DIR}/test_${kind}.c)
    if(kind STREQUAL golden)
      list(APPEND defs "-DGOLDEN=\"${CMAKE_CURRENT_SOURCE_DIR}/golden/${spec}.golden\"")
      if(DEFINED GOLDEN_TOL_${spec})
        list(APPEND defs -DGOLDEN_TOL=${GOLDEN_TOL_${spec}})
      endif()
      list(APPEND files ${CMAKE_CURRENT_SOURCE_DIR}/golden.c)
    endif()
    set(exe ${dir}/${test})
    add_custom_command(OUTPUT ${exe}
      COMMAND ${RNC_AARCH64_CC} -O2 -march=armv8-a -fopenmp -Wall -Wextra ${defs}
              -I${CMAKE_CURRENT_SOURCE_DIR}/mini_check -I${CMAKE_SOURCE_DIR}/include -I${CMAKE_CURRENT_SOURCE_DIR}
              ${files} -lm -o ${exe}
      VERBATIM
      DEPENDS ${files} ${CMAKE_CURRENT_SOURCE_DIR}/testutil.h ${CMAKE_CURRENT_SOURCE_DIR}/mini_check/check.h
              ${CMAKE_SOURCE_DIR}/include/rnc/kernels.h
      COMMENT "aarch64-linux-gnu-gcc ${test}")
    add_custom_target(build_${test} ALL DEPENDS ${exe})
    add_test(NAME ${test} COMMAND ${RNC_QEMU_AARCH64} -L ${RNC_AARCH64_SYSROOT} ${exe})
    set_tests_properties(${test} PROPERTIES ENVIRONMENT OMP_NUM_THREADS=2 TIMEOUT 600)
  endforeach()
endforeach()
