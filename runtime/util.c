/* util.c - errors, clock and aligned allocation shared by the runtime. */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#define _DEFAULT_SOURCE  /* madvise, MADV_HUGEPAGE */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* Reads the whole of a regular file of at most max bytes into a malloc'd buffer. */
int rnc_read_file_max(const char *path, size_t max, uint8_t **out, size_t *size, rnc_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return rnc_fail(err, RNC_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return rnc_fail(err, RNC_E_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if ((uint64_t)st.st_size > (uint64_t)max) {
        fclose(f);
        return rnc_fail(err, RNC_E_FORMAT, "%s: %lld bytes, more than the %zu this file can have", path,
                        (long long)st.st_size, max);
    }
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

int rnc_read_file(const char *path, uint8_t **out, size_t *size, rnc_err *err) {
    return rnc_read_file_max(path, SIZE_MAX, out, size, err);
}

/* ---- test trace ----------------------------------------------------------- */

void rnc_trace(char what) {
    static int fd = -2;
    if (fd == -2) {
        const char *e = getenv("RNC_TEST_TRACE_FD");
        char *end;
        long v = e && *e ? strtol(e, &end, 10) : -1;
        fd = e && *e && !*end && v >= 0 && v < 1 << 20 ? (int)v : -1;
    }
    if (fd >= 0 && write(fd, &what, 1) != 1)
        fd = -1;
}

/* ---- memory ---------------------------------------------------------------- */

/* A number from a cgroup file ("max": none). */
static double cgroup_limit(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[64] = "";
    double v = 0;
    if (fgets(buf, sizeof buf, f) && strncmp(buf, "max", 3) != 0)
        v = strtod(buf, NULL);
    fclose(f);
    return v > 0 && v < 1e18 ? v : 0;   /* cgroup v1 reports "no limit" as a huge number */
}

static double meminfo(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    double v = 0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            v = strtod(line + n + 1, NULL) * 1024;   /* kB */
            break;
        }
    fclose(f);
    return v;
}

double rnc_machine_memory(double *available, const char **what) {
    double total = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    const char *why = "the machine's memory";
    double cg = cgroup_limit("/sys/fs/cgroup/memory.max");
    if (!cg)
        cg = cgroup_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (cg > 0 && (total <= 0 || cg < total)) {
        total = cg;
        why = "this container's memory limit";
    }
    static const int res[] = {RLIMIT_AS, RLIMIT_DATA};
    for (int i = 0; i < 2; i++) {
        struct rlimit rl;
        if (getrlimit(res[i], &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (double)rl.rlim_cur < total) {
            total = (double)rl.rlim_cur;
            why = i == 0 ? "the address-space limit (ulimit -v)" : "the data-size limit (ulimit -d)";
        }
    }
    if (available)
        *available = meminfo("MemAvailable");
    if (what)
        *what = why;
    return total;
}

static void human_bytes(double b, char *buf, size_t n) {
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (b >= 1024 && u < 6) {
        b /= 1024;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

int rnc_check_memory(double need, const char *purpose, rnc_err *err) {
    double avail;
    const char *what;
    double total = rnc_machine_memory(&avail, &what);
    char a[32], b[32], c[32];
    human_bytes(need, a, sizeof a);
    human_bytes(total, b, sizeof b);
    if (total > 0 && need > total)
        return rnc_fail(err, RNC_E_NOMEM, "%s needs %s, more than %s (%s); nothing was allocated", purpose, a,
                        what, b);
    if (avail > 0 && need > avail) {
        human_bytes(avail, c, sizeof c);
        fprintf(stderr, "rnc: warning: %s needs %s and only %s of %s are free now; it may be slow or be "
                        "killed\n", purpose, a, c, b);
    }
    return RNC_OK;
}
