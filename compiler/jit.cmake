# compiler/jit.cmake - the optional in-process JIT behind `rnc train|eval|bench SPEC`
# (compiler/jit.c, compiler/jit_clang.cpp; docs/jit.md).  Included by the
# top-level CMakeLists.txt right after add_executable(rnc ...).
#
# Needs Clang 14's libraries (libclang-cpp, libLLVM-14) and LLVM's OpenMP
# runtime (libomp).  Without them rnc still builds; compiler/jit.c then
# compiles to a stub that says how to get the JIT.
#
# Sets RNC_HAVE_JIT (ON/OFF) for tests/jit.cmake, and the target rncjit (the
# C++ shim with its libraries) when ON.
#
# OpenMP: code Clang compiles calls libomp (__kmpc_*); the runtime rnrt is
# compiled by gcc and calls libgomp (GOMP_parallel, omp_*).  One process gets
# one OpenMP runtime: rnc links libomp right after rnrt (ahead of libgomp) and
# with --as-needed, so
# libomp (which also exports the GOMP_* entry points) satisfies rnrt as well
# and libgomp is never loaded.  rnc_jit_use_libomp(TARGET) does the same for
# a test executable.

option(RNC_JIT "Build the Clang JIT into rnc when Clang 14's libraries are found" ON)
set(RNC_HAVE_JIT OFF)

if(NOT RNC_JIT)
  message(STATUS "rnc JIT: off (RNC_JIT=OFF)")
else()
  find_package(LLVM 14 CONFIG QUIET HINTS /usr/lib/llvm-14/lib/cmake/llvm)
  if(LLVM_FOUND)
    find_library(RNC_CLANG_CPP_LIB NAMES clang-cpp HINTS ${LLVM_LIBRARY_DIR} NO_DEFAULT_PATH)
    find_library(RNC_LLVM_LIB NAMES LLVM-${LLVM_VERSION_MAJOR} LLVM HINTS ${LLVM_LIBRARY_DIR} NO_DEFAULT_PATH)
    find_library(RNC_LIBOMP_LIB NAMES omp HINTS ${LLVM_LIBRARY_DIR})
    find_path(RNC_CLANG_INCLUDE_DIR clang/Frontend/CompilerInstance.h HINTS ${LLVM_INCLUDE_DIRS} NO_DEFAULT_PATH)
    find_program(RNC_CLANG_EXE NAMES clang clang-${LLVM_VERSION_MAJOR} HINTS ${LLVM_TOOLS_BINARY_DIR} NO_DEFAULT_PATH)
    include(CheckLanguage)
    check_language(CXX)
  endif()
  set(_rnc_jit_missing)
  if(NOT LLVM_FOUND)
    set(_rnc_jit_missing "LLVM 14 (LLVMConfig.cmake)")
  else()
    foreach(v RNC_CLANG_CPP_LIB RNC_LLVM_LIB RNC_LIBOMP_LIB RNC_CLANG_INCLUDE_DIR RNC_CLANG_EXE CMAKE_CXX_COMPILER)
      if(NOT ${v})
        list(APPEND _rnc_jit_missing ${v})
      endif()
    endforeach()
  endif()
  if(_rnc_jit_missing)
    message(STATUS "rnc JIT: off (not found: ${_rnc_jit_missing}); "
                   "install libclang-14-dev libclang-cpp14-dev llvm-14-dev libomp-14-dev for `rnc train SPEC`")
  else()
    set(RNC_HAVE_JIT ON)
  endif()
endif()

if(RNC_HAVE_JIT)
  enable_language(CXX)
  message(STATUS "rnc JIT: on (LLVM ${LLVM_PACKAGE_VERSION}, ${RNC_CLANG_CPP_LIB}, ${RNC_LIBOMP_LIB})")

  add_library(rncjit STATIC ${CMAKE_CURRENT_LIST_DIR}/jit_clang.cpp)
  target_compile_features(rncjit PRIVATE cxx_std_17)
  target_include_directories(rncjit PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  target_include_directories(rncjit SYSTEM PRIVATE ${RNC_CLANG_INCLUDE_DIR} ${LLVM_INCLUDE_DIRS})
  separate_arguments(_rnc_llvm_defs UNIX_COMMAND "${LLVM_DEFINITIONS}")
  target_compile_options(rncjit PRIVATE ${_rnc_llvm_defs})
  target_compile_definitions(rncjit PRIVATE RNC_CLANG_PATH="${RNC_CLANG_EXE}"
                             RNC_INCLUDE_DIR="${CMAKE_SOURCE_DIR}/include")
  target_link_libraries(rncjit PUBLIC ${RNC_CLANG_CPP_LIB} ${RNC_LLVM_LIB})

  # jit.c is already part of rnccore (compiler/*.c); turn its JIT on.
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/jit.c PROPERTIES COMPILE_DEFINITIONS RNC_HAVE_JIT=1)

  function(rnc_jit_use_libomp target)
    # Call after linking rnrt (or anything else built with gcc -fopenmp): with
    # --as-needed ld keeps a shared library only if it resolves a reference
    # pending when the library is read, so libomp must come after rnrt and
    # before rnrt's libgomp, which then resolves nothing and is dropped.
    target_link_options(${target} PRIVATE -Wl,--as-needed)
    target_link_libraries(${target} PRIVATE ${RNC_LIBOMP_LIB})
  endfunction()

  target_link_libraries(rnc PRIVATE rncjit ${RNC_RUNTIME_LIB})
  rnc_jit_use_libomp(rnc)
endif()
