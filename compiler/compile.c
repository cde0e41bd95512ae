/* compile.c - the one compile service: which C compiler, with which flags,
 * against which headers, for everything rnc compiles (the tuner's
 * programs, the JIT's in-process Clang, the build line in a generated
 * file's header). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "rnc.h"

#ifndef RNC_INCLUDE_DIR
#define RNC_INCLUDE_DIR "include"
#endif

const char *compile_cc(void) {
    const char *cc = getenv("CC");
    return cc && *cc ? cc : "cc";
}

const char *compile_cflags(const Target *t) {
    static char buf[8][160];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, sizeof buf[0], "-O3 %s -fopenmp", t ? t->march : "-march=native");
    return b;
}

const char *compile_include_dir(void) {
    const char *d = getenv("RNC_INCLUDE_DIR");
    return d && *d ? d : RNC_INCLUDE_DIR;
}

bool compile_run(const char *cmd, char **out) {
    *out = NULL;
    FILE *p = popen(cmd, "r");
    if (!p)
        return false;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        fatal("out of memory");
    char line[4096];
    while (fgets(line, sizeof line, p))
        fputs(line, m);
    fclose(m);
    int st = pclose(p);
    *out = buf;
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}
