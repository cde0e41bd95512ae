/* error.c - diagnostics and the few allocation helpers every stage uses. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

bool error_at(const char *file, SrcLoc loc, const char *fmt, ...) {
    va_list ap;
    if (loc.line > 0)
        fprintf(stderr, "%s:%d:%d: error: ", file, loc.line, loc.col > 0 ? loc.col : 1);
    else
        fprintf(stderr, "%s: error: ", file);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return false;
}

void fatal(const char *fmt, ...) {
    va_list ap;
    fputs("rnc: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        fatal("out of memory");
    return p;
}

void *xrealloc(void *p, size_t size) {
    p = realloc(p, size ? size : 1);
    if (!p)
        fatal("out of memory");
    return p;
}

char *xstrdup(const char *s) {
    char *p = strdup(s);
    if (!p)
        fatal("out of memory");
    return p;
}

char *read_text_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: error: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    /* At most RNC_MAX_TEXT_FILE bytes: a spec is a small text file, and a
     * device such as /dev/zero must not be read until memory runs out. */
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    bool too_big = false;
    for (;;) {
        if (!buf)
            fatal("out of memory");
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (n > RNC_MAX_TEXT_FILE) {
            too_big = true;
            break;
        }
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed || too_big) {
        if (too_big)
            fprintf(stderr, "%s: error: more than %d MiB; a spec is a small text file\n", path,
                    RNC_MAX_TEXT_FILE >> 20);
        else
            fprintf(stderr, "%s: error: read failed\n", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}
