# rnc plot (compiler/plot.c) draws with cairo: optional, like the JIT.
# Found (pkg-config cairo, Debian: libcairo2-dev): plot.c is compiled with
# RNC_HAVE_CAIRO=1 and rnccore links cairo.  Not found (or -DRNC_PLOT=OFF):
# rnc builds without it and `rnc plot` says how to get it.
# Sets RNC_HAVE_PLOT (ON/OFF) for tests/plot.cmake.
option(RNC_PLOT "Build rnc plot (needs cairo)" ON)
set(RNC_HAVE_PLOT OFF)
if(NOT RNC_PLOT)
  message(STATUS "rnc plot: off (RNC_PLOT=OFF)")
else()
  pkg_check_modules(CAIRO QUIET IMPORTED_TARGET cairo)
  if(CAIRO_FOUND)
    set(RNC_HAVE_PLOT ON)
    message(STATUS "rnc plot: on (cairo ${CAIRO_VERSION})")
  else()
    message(STATUS "rnc plot: off (not found: cairo; install libcairo2-dev)")
  endif()
endif()
if(RNC_HAVE_PLOT)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/plot.c PROPERTIES COMPILE_DEFINITIONS RNC_HAVE_CAIRO=1)
  target_link_libraries(rnccore PUBLIC PkgConfig::CAIRO)
endif()
