# rnc plot: logs read and checked, figures written (tests/test_plot.c), the
# command line (tests/plot_cli.sh), and experiments/report, which draws with
# it (tests/report_test.sh).  Included from tests/CMakeLists.txt.
set(plot_expect sh ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh)
set(plot_logs ${CMAKE_CURRENT_SOURCE_DIR}/plot)
if(RNC_HAVE_PLOT)
  add_executable(test_plot test_plot.c)
  target_link_libraries(test_plot PRIVATE rnccore PkgConfig::CHECK)
  target_compile_definitions(test_plot PRIVATE SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME plot COMMAND test_plot)
  add_test(NAME plot_cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/plot_cli.sh $<TARGET_FILE:rnc> ${plot_logs})
  add_test(NAME plot_cli_bad_row
           COMMAND ${plot_expect} 1 "^${plot_logs}/bad_fields.csv:4: error: 7 fields, the header has 9$" --
                   $<TARGET_FILE:rnc> plot ${plot_logs}/resnet20.csv ${plot_logs}/bad_fields.csv -o bad.png)
  add_test(NAME plot_cli_missing_log
           COMMAND ${plot_expect} 1 "^nowhere/log.csv: error: cannot open: No such file or directory$" --
                   $<TARGET_FILE:rnc> plot nowhere/log.csv -o missing.png)
  add_test(NAME plot_cli_empty_log
           COMMAND ${plot_expect} 1 "header_only.csv: error: no rows after the header" --
                   $<TARGET_FILE:rnc> plot ${plot_logs}/header_only.csv -o empty.svg)
  add_test(NAME plot_cli_bad_extension
           COMMAND ${plot_expect} 2 "the output must end in .png or .svg" --
                   $<TARGET_FILE:rnc> plot ${plot_logs}/resnet20.csv -o fig.jpg)
  add_test(NAME plot_cli_usage
           COMMAND ${plot_expect} 2 "no output file" -- $<TARGET_FILE:rnc> plot ${plot_logs}/resnet20.csv)
  # experiments/report (Python 3, standard library): docs/results.md's tables and figures
  find_program(RNC_PYTHON3 python3)
  if(RNC_PYTHON3)
    add_test(NAME experiments_report
             COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/report_test.sh $<TARGET_FILE:rnc> ${CMAKE_SOURCE_DIR})
  else()
    message(STATUS "experiments/report test: off (no python3)")
  endif()
  set_tests_properties(plot_cli plot_cli_bad_row plot_cli_missing_log plot_cli_empty_log plot_cli_bad_extension
                       plot_cli_usage PROPERTIES WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
else()
  add_test(NAME plot_cli_unavailable
           COMMAND ${plot_expect} 2 "this build has no plot \\(install libcairo2-dev" --
                   $<TARGET_FILE:rnc> plot ${plot_logs}/resnet20.csv -o fig.png)
endif()
