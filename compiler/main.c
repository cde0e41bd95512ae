/* main.c - the rnc command line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "rnc.h"
#include "jit_clang.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: rnc SPEC -o FILE.c [-b BATCH] [--schedule default|naive]\n"
            "       rnc --summary SPEC [-b BATCH]\n"
            "       rnc --dump-graph SPEC [-b BATCH]\n"
            "       rnc tune SPEC [--budget 10m] | rnc tune --show SPEC   (autotuning; docs/tuning.md)\n"
            "       rnc train|eval|bench SPEC [-b BATCH] [flags]   (compile in-process and run; docs/jit.md)\n"
            "       rnc --help | --version\n"
            "\n"
            "Compiles a ResNet spec (see docs/spec.md) into C that trains the network:\n"
            "forward and backward passes with every shape a compile-time constant.\n"
            "\n"
            "  -o FILE           write the generated C to FILE ('-' for standard output)\n"
            "  -b BATCH          batch size compiled into the code (default: the spec's)\n"
            "  --schedule S      default: tiled, vectorized, OpenMP kernels;\n"
            "                    naive: plain reference loops (for testing)\n"
            "  --no-tune         ignore the tuning database (docs/tuning.md)\n"
            "  --tune-db FILE    tuning database (default $RNC_TUNE_DB or ~/.cache/rnc/tune.db)\n"
            "  --summary         print each layer's output shape, parameters and multiply-adds\n"
            "  --dump-graph      print the forward graph (used by tools/torch_golden.py)\n"
            "\n"
            "Build the output with: cc -O3 -march=native -fopenmp FILE.c -Iinclude -Lbuild -lrnrt -lxxhash -ljpeg -lpthread -lm\n");
}

/* Is the output the spec itself (the same file under any name)? */
static bool same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static bool write_failed(const char *path) {
    fprintf(stderr, "rnc: error: cannot write %s: %s\n", path, errno ? strerror(errno) : "write error");
    return false;
}

/* Writes straight into path (a device, a FIFO: what a rename would replace). */
static bool write_through(const char *path, const Graph *g) {
    FILE *f = fopen(path, "w");
    if (!f)
        return write_failed(path);
    errno = 0;
    emit_c(f, g);
    bool ok = fflush(f) == 0 && !ferror(f);
    ok = (fclose(f) == 0) && ok;
    return ok || write_failed(path);
}

/* A regular file (or a new one) is written through a temporary file beside
 * it and a rename, so a failure never leaves a half-written output behind;
 * anything else (a device such as /dev/null, a FIFO) is written straight
 * into.  A symbolic link is followed: its target is replaced, the link
 * stays. */
static bool write_output(const char *path, const Graph *g) {
    if (strcmp(path, "-") == 0) {
        emit_c(stdout, g);
        return fflush(stdout) == 0 && !ferror(stdout);
    }
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            fprintf(stderr, "rnc: error: cannot write %s: it is a folder\n", path);
            return false;
        }
        if (!S_ISREG(st.st_mode))
            return write_through(path, g);
    }
    char target[4096];
    struct stat ls;
    if (lstat(path, &ls) == 0 && S_ISLNK(ls.st_mode)) {
        if (!realpath(path, target))   /* a dangling link: create what it points to */
            return write_through(path, g);
        path = target;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return write_failed(path);
    errno = 0;
    emit_c(f, g);
    bool ok = fflush(f) == 0 && !ferror(f);
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        errno = e;
        return write_failed(path);
    }
    return true;
}

/* Standard output must have taken everything (`rnc --summary > /dev/full` fails). */
static int stdout_status(void) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return 0;
    fprintf(stderr, "rnc: error: cannot write standard output: %s\n", errno ? strerror(errno) : "write error");
    return 1;
}

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "train") || !strcmp(argv[1], "eval") || !strcmp(argv[1], "bench")))
        return rnc_jit_command(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "tune"))   /* autotuning (tune.c, docs/tuning.md) */
        return tune_main(argc, argv);
    const char *spec = NULL, *out = NULL;
    bool summary = false, dump = false;
    int batch = 0;
    ScheduleOptions opt = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return stdout_status();
        } else if (!strcmp(a, "--version")) {
            printf("rnc %s\n", RNC_VERSION);
            return stdout_status();
        } else if (!strcmp(a, "--summary")) {
            summary = true;
        } else if (!strcmp(a, "--dump-graph")) {
            dump = true;
        } else if (!strcmp(a, "--no-tune")) {
            opt.no_tune = true;
        } else if (!strcmp(a, "-o") || !strcmp(a, "-b") || !strcmp(a, "--schedule") || !strcmp(a, "--tune-db")) {
            if (i + 1 == argc) {
                fprintf(stderr, "rnc: error: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "-o")) {
                out = v;
            } else if (!strcmp(a, "--tune-db")) {
                opt.tune_db = v;
            } else if (!strcmp(a, "-b")) {
                if (!parse_batch(v, &batch))
                    return 2;
            } else if (!strcmp(v, "naive") || !strcmp(v, "default")) {
                opt.reference = !strcmp(v, "naive");
            } else {
                fprintf(stderr, "rnc: error: unknown schedule '%s' (default or naive)\n", v);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "rnc: error: unknown option '%s' (see rnc --help)\n", a);
            return 2;
        } else if (spec) {
            fprintf(stderr, "rnc: error: more than one spec given ('%s' and '%s')\n", spec, a);
            return 2;
        } else {
            spec = a;
        }
    }
    if (!spec) {
        usage(stderr);
        return 2;
    }
    Graph g;
    if (summary || dump) {
        if (!compile_front(spec, batch, &g))
            return 1;
        if (summary) {
            Graph full;
            if (!plan_step(&g, &opt, &full)) {
                free_graph(&g);
                return 1;
            }
            print_summary(stdout, &g);
            print_step_memory(stdout, &full, host_threads());
            free_graph(&full);
        } else {
            emit_graph_dump(stdout, &g);
        }
        free_graph(&g);
        return stdout_status();
    }
    if (!out) {
        fprintf(stderr, "rnc: error: no output file (use -o FILE.c, or --summary)\n");
        return 2;
    }
    if (same_file(out, spec)) {
        fprintf(stderr, "rnc: error: the output %s is the spec %s itself; give another -o FILE\n", out, spec);
        return 2;
    }
    if (!compile_spec(spec, batch, &opt, &g))
        return 1;
    bool ok = write_output(out, &g);
    free_graph(&g);
    return ok ? 0 : 1;
}
