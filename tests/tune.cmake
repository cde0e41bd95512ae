# Autotuning (rnc tune): keys, the database, the search, a real tuned build.
# Included from tests/CMakeLists.txt.
add_executable(test_tune test_tune.c)
target_link_libraries(test_tune PRIVATE rnccore PkgConfig::CHECK)
target_compile_definitions(test_tune PRIVATE SOURCE_DIR="${CMAKE_SOURCE_DIR}")
# Timeouts: about 3x what the tests took alone on the slowest CPU seen (an
# Ice Lake Xeon, lscpu "Intel(R) Xeon(R) Processor @ 2.80GHz", no AMX,
# 2026-12-04: tune 75 s, tune_amx 210 s on the emulated tiles; compiling
# the benchmark programs is most of it), for ctest -j2.
add_test(NAME tune COMMAND test_tune)
set_tests_properties(tune PROPERTIES TIMEOUT 240)
# The bf16 dot-product kernels' legal points (skipped without AVX512-BF16).
add_test(NAME tune_bf16dot COMMAND test_tune bf16dot)
set_tests_properties(tune_bf16dot PROPERTIES TIMEOUT 180 SKIP_RETURN_CODE 77)
# The AMX family's kernels: on AMX tiles where the CPU has them, else on the
# amx-emulated target's C model of the tiles (skipped without AVX-512).
add_test(NAME tune_amx COMMAND test_tune amx)
set_tests_properties(tune_amx PROPERTIES TIMEOUT 640 SKIP_RETURN_CODE 77)
