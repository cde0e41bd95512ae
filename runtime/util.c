/* util.c - errors, clock and aligned allocation shared by the runtime. */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rnc/runtime.h"

int rnc_fail(rnc_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

double rnc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *rnc_alloc_aligned(size_t bytes) {
    /* aligned_alloc wants a multiple of the alignment; round up, and give a
     * real block for 0 bytes so callers can treat NULL as out of memory. */
    if (bytes > SIZE_MAX - 64)
        return NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (p)
        memset(p, 0, rounded);
    return p;
}
