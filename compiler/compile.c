/* compile.c - the one compile service: which C compiler, with which flags,
 * against which headers, for everything rnc compiles (the tuner's
 * programs, the JIT's in-process Clang, the build line in a generated
 * file's header). */
#define _GNU_SOURCE
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
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

/* PREFIX/include when this rnc runs as PREFIX/bin/rnc and PREFIX/include
 * holds rnc's headers (an installed rnc: cmake --install); NULL otherwise. */
static const char *installed_include_dir(void) {
    static char dir[PATH_MAX + 32];
    static int done;
    if (done)
        return dir[0] ? dir : NULL;
    done = 1;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash || slash == exe)
        return NULL;
    *slash = '\0';   /* PREFIX/bin */
    slash = strrchr(exe, '/');
    if (!slash || strcmp(slash + 1, "bin"))
        return NULL;
    *slash = '\0';   /* PREFIX */
    struct stat st;
    snprintf(dir, sizeof dir, "%s/include/rnc/kernels.h", exe[0] ? exe : "");
    if (stat(dir, &st) != 0) {
        dir[0] = '\0';
        return NULL;
    }
    snprintf(dir, sizeof dir, "%s/include", exe);
    return dir;
}

/* $RNC_INCLUDE_DIR, else the install prefix's, else the source tree's
 * (where this rnc was built). */
const char *compile_include_dir(void) {
    const char *d = getenv("RNC_INCLUDE_DIR");
    if (d && *d)
        return d;
    d = installed_include_dir();
    return d ? d : RNC_INCLUDE_DIR;
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
