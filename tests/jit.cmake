# tests/jit.cmake - tests of the in-process JIT (compiler/jit.cmake sets
# RNC_HAVE_JIT).  Included from tests/CMakeLists.txt; adds nothing when rnc
# was built without Clang's libraries.
if(NOT RNC_HAVE_JIT OR NOT TARGET rncjit)
  return()
endif()

# The same generated C as the JIT test compiles, built ahead of time by the
# C compiler (gcc): the reference for the JIT-compiled code.
rnc_add_network(jit_tiny_a_aot ${CMAKE_CURRENT_SOURCE_DIR}/specs/tiny_a.spec BATCH 4 NO_MAIN)

add_executable(test_jit test_jit.c $<TARGET_OBJECTS:jit_tiny_a_aot>)
target_compile_definitions(test_jit PRIVATE
  AOT_MODEL=rnc_model_tiny_a
  SPEC="${CMAKE_CURRENT_SOURCE_DIR}/specs/tiny_a.spec"
  TEST_TMP_DIR="${CMAKE_CURRENT_BINARY_DIR}")
target_link_libraries(test_jit PRIVATE rnccore rncjit rnrt PkgConfig::CHECK m)
rnc_jit_use_libomp(test_jit)   # after rnrt and the gcc-built object: one OpenMP runtime, libomp
add_test(NAME jit COMMAND test_jit)
set_tests_properties(jit PROPERTIES TIMEOUT 900)

# The command line: rnc bench/train/eval SPEC print what the network binary
# prints; a broken compile prints Clang's diagnostics.
set(_jit_env "RNC_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/jit-cli-cache" OMP_WAIT_POLICY=passive)
set(_expect sh ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh)
add_test(NAME jit_cli_bench
         COMMAND ${_expect} 0 "infer images/s: [0-9.]+" --
                 $<TARGET_FILE:rnc> bench ${CMAKE_CURRENT_SOURCE_DIR}/specs/tiny_a.spec -b 8 --steps 2 --infer)
set_tests_properties(jit_cli_bench PROPERTIES ENVIRONMENT "${_jit_env}" TIMEOUT 600)
# A bf16 network through the JIT: on an AMX CPU its tile kernels, whose
# thread-local tile record LLVM's JIT cannot allocate (RNC_NO_TLS builds
# them without it); bf16 dot products or fp32 kernels elsewhere.  And the
# amx-emulated target, whose tiles are thread-local, refused with a message.
add_test(NAME jit_cli_bf16
         COMMAND ${_expect} 0 "train images/s: [0-9.]+" --
                 $<TARGET_FILE:rnc> bench ${CMAKE_CURRENT_SOURCE_DIR}/specs/amx_flat_bf16.spec --steps 2)
set_tests_properties(jit_cli_bf16 PROPERTIES ENVIRONMENT "${_jit_env}" TIMEOUT 600)
add_test(NAME jit_cli_amx_emulated
         COMMAND ${_expect} 2 "cannot run --target amx-emulated" --
                 $<TARGET_FILE:rnc> bench ${CMAKE_CURRENT_SOURCE_DIR}/specs/amx_flat_bf16.spec --target amx-emulated --steps 1)
set_tests_properties(jit_cli_amx_emulated PROPERTIES ENVIRONMENT "${_jit_env}" TIMEOUT 60)
add_test(NAME jit_cli_train
         COMMAND rnc train ${CMAKE_CURRENT_SOURCE_DIR}/specs/mini_cifar.spec
                 --data ${RNC_DATA_DIR}/cifar10/data_batch_1.bin --steps 3 --val 0 --quiet
                 --checkpoint ${CMAKE_CURRENT_BINARY_DIR}/jit_cli_train.ckpt)
set_tests_properties(jit_cli_train PROPERTIES ENVIRONMENT "${_jit_env}" TIMEOUT 900)
add_test(NAME jit_cli_eval
         COMMAND ${_expect} 0 "^accuracy: 0[.][0-9]+" --
                 $<TARGET_FILE:rnc> eval ${CMAKE_CURRENT_SOURCE_DIR}/specs/mini_cifar.spec
                 --data ${RNC_DATA_DIR}/cifar10/data_batch_1.bin --val 0
                 --weights ${CMAKE_CURRENT_BINARY_DIR}/jit_cli_train.ckpt)
set_tests_properties(jit_cli_eval PROPERTIES ENVIRONMENT "${_jit_env}" TIMEOUT 600 DEPENDS jit_cli_train)
add_test(NAME jit_cli_compile_error
         COMMAND ${_expect} 1 "error: .*JIT compilation of .*tiny_a.spec failed" --
                 $<TARGET_FILE:rnc> bench ${CMAKE_CURRENT_SOURCE_DIR}/specs/tiny_a.spec --steps 1)
set_tests_properties(jit_cli_compile_error PROPERTIES
  ENVIRONMENT "${_jit_env};RNC_JIT_CFLAGS=-O2 -Drnc_vf=int" TIMEOUT 300)
add_test(NAME jit_cli_usage COMMAND ${_expect} 2 "usage: rnc train" -- $<TARGET_FILE:rnc> train)
# --no-tune and --tune-db shape the code (the network never sees them).
add_test(NAME jit_cli_no_tune
         COMMAND ${_expect} 0 "rnc: jit: tuned: none [(]--no-tune[)]" --
                 $<TARGET_FILE:rnc> bench ${CMAKE_CURRENT_SOURCE_DIR}/specs/tiny_a.spec -b 8 --steps 1 --infer --no-tune)
add_test(NAME jit_cli_tune_db
         COMMAND ${_expect} 0 "rnc: jit: tuned: none [(]no tuning database at ${CMAKE_CURRENT_BINARY_DIR}/no-such.db[)]" --
                 $<TARGET_FILE:rnc> bench ${CMAKE_CURRENT_SOURCE_DIR}/specs/tiny_a.spec -b 8 --steps 1 --infer
                 --tune-db ${CMAKE_CURRENT_BINARY_DIR}/no-such.db)
add_test(NAME jit_cli_tune_db_value COMMAND ${_expect} 2 "error: --tune-db needs a value" --
         $<TARGET_FILE:rnc> bench ${CMAKE_CURRENT_SOURCE_DIR}/specs/tiny_a.spec --tune-db)
set_tests_properties(jit_cli_no_tune jit_cli_tune_db PROPERTIES ENVIRONMENT "${_jit_env};RNC_JIT_VERBOSE=1" TIMEOUT 600)

# --classes N|auto and --input HxWxC on rnc train|bench (a 3-class folder of the JPEG sample).
add_test(NAME jit_cli_classes
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/classes_cli.sh $<TARGET_FILE:rnc> ${CMAKE_SOURCE_DIR}
                 ${RNC_DATA_DIR}/cifar10-jpg-sample)
set_tests_properties(jit_cli_classes PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77)
