/* util.c - errors, clock and aligned allocation shared by the runtime. */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#define _DEFAULT_SOURCE  /* madvise, MADV_HUGEPAGE */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
    /* Large buffers (activations, weights) in 2 MiB pages where the kernel
     * gives them on request (transparent_hugepage=madvise, Debian's
     * default): a training step streams hundreds of MiB, and with 4 KiB pages
     * it misses the TLB all the way. */
    enum { HUGE = 2 << 20 };
    size_t align = rounded >= 2 * (size_t)HUGE ? HUGE : 64;
    if (align == HUGE)
        rounded = (rounded + HUGE - 1) / HUGE * HUGE;
    void *p = aligned_alloc(align, rounded);
    if (!p)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE)
        madvise(p, rounded, MADV_HUGEPAGE);   /* a hint: failure changes nothing */
#endif
    memset(p, 0, rounded);
    return p;
}

/* Reads the whole of a regular file into a malloc'd buffer. */
int rnc_read_file(const char *path, uint8_t **out, size_t *size, rnc_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return rnc_fail(err, RNC_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return rnc_fail(err, RNC_E_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return rnc_fail(err, RNC_E_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (got != n || bad) {
        free(buf);
        return rnc_fail(err, RNC_E_IO, "%s: read %zu of %zu bytes", path, got, n);
    }
    *out = buf;
    *size = n;
    return RNC_OK;
}
