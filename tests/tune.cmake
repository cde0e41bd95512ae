# Autotuning (rnc tune): keys, the database, the search, a real tuned build.
# Included from tests/CMakeLists.txt.
add_executable(test_tune test_tune.c)
target_link_libraries(test_tune PRIVATE rnccore PkgConfig::CHECK)
target_compile_definitions(test_tune PRIVATE SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_test(NAME tune COMMAND test_tune)
set_tests_properties(tune PROPERTIES TIMEOUT 180)
