/* fuzz.h - what every fuzz target shares (tests/fuzz/README.md).
 *
 * Each fuzz_*.c defines LLVMFuzzerTestOneInput.  Built with clang's
 * -fsanitize=fuzzer (cmake -DRNC_FUZZ=ON) it is a libFuzzer binary; built
 * with replay.c instead (every build) it replays files and folders given on
 * its command line, which is how the test suite runs the corpora and every
 * regression input under tests/fuzz/regressions/. */
#ifndef RNC_FUZZ_H
#define RNC_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include <stdio.h>
#include <stdlib.h>

/* RNC_FUZZ_VERBOSE=1: each input's outcome on stderr (to see what a corpus reaches). */
static inline void fuzz_note(const char *what, const char *detail) {
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("RNC_FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "fuzz: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

#endif
