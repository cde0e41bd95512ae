/* main.c - the rnc command line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "rnc.h"
#include "jit_clang.h"
#include "plot.h"

/* Whether this build's runtime has MPI (CMake's RNC_MPI, when MPI is found). */
#ifdef RNC_HAVE_MPI
#define RNC_MPI_NOTE "this build has it: link -lrnrt_mpi"
#else
#define RNC_MPI_NOTE "this build has none: install libopenmpi-dev openmpi-bin and rebuild"
#endif

static void usage(FILE *out) {
    fprintf(out,
            "usage: rnc SPEC -o FILE.c [-b BATCH] [--classes N] [--input HxWxC] [--schedule default|naive]\n"
            "                  [--target T] [--precision P] [--ranks N]\n"
            "       rnc --infer SPEC -o FILE.c [-b BATCH] [--embed-weights W.safetensors] [--prefix NAME]\n"
            "       rnc --summary SPEC [-b BATCH]\n"
            "       rnc --dump-graph SPEC [-b BATCH]\n"
            "       rnc tune SPEC [--budget 10m] | rnc tune --show SPEC   (autotuning; docs/tuning.md)\n"
            "       rnc train|eval|bench|export SPEC [-b BATCH] [flags]   (compile in-process and run; docs/jit.md)\n"
            "       rnc plot LOG.csv... -o FIG.png|FIG.svg [options]   (training curves; rnc plot --help)\n"
            "       rnc --help | --version\n"
            "\n"
            "Compiles a ResNet spec (see docs/spec.md) into C that trains the network:\n"
            "forward and backward passes with every shape a compile-time constant.\n"
            "\n"
            "  -o FILE           write the generated C to FILE ('-' for standard output)\n"
            "  -b BATCH          batch size compiled into the code (default: the spec's)\n"
            "  --classes N       N classes instead of the spec's (the classifier's outputs)\n"
            "  --input HxWxC     input size instead of the spec's (as 64x64x3)\n"
            "  --schedule S      default: tiled, vectorized, OpenMP kernels;\n"
            "                    naive: plain reference loops (for testing)\n"
            "  --target T        the CPU the code is for: native (this one, the default), avx512,\n"
            "                    avx2, generic (x86-64 SSE2) or aarch64 (NEON; build with\n"
            "                    aarch64-linux-gnu-gcc); the header says which, and how to build\n"
            "  --precision P     fp32, or bf16: activations and their gradients stored as\n"
            "                    bfloat16, fp32 everywhere else (default: the spec's, else fp32)\n"
            "  --ranks N         data-parallel training on N processes (mpirun -np N NET train ...):\n"
            "                    code for batch BATCH/N per process, BATCH the global batch; needs\n"
            "                    the runtime built with MPI (%s; docs/distributed.md)\n"
            "  --cflags-out FILE also write the target's C compiler flags to FILE (for a\n"
            "                    build system: gcc @FILE)\n"
            "  --no-tune         ignore the tuning database (docs/tuning.md)\n"
            "  --tune-db FILE    tuning database (default $RNC_TUNE_DB or ~/.cache/rnc/tune.db)\n"
            "  --infer           a forward-only C file for deployment (and FILE.h): batch norm\n"
            "                    folded into the convolutions, libc, libm and OpenMP only, the API\n"
            "                    NAME_load(path), NAME_predict(images, n, logits), NAME_free();\n"
            "                    -b: its batch (default 8); see docs/infer.md\n"
            "  --embed-weights W with --infer: the weights of W (safetensors) folded into the file\n"
            "  --prefix NAME     with --infer: the API's prefix (default net)\n"
            "  --version         the version, and where the headers generated code includes are\n"
            "  --summary         print each layer's output shape, parameters and multiply-adds\n"
            "  --dump-graph      print the forward graph (used by tools/torch_golden.py)\n"
            "\n"
            "Build the output with: cc -O3 -march=native -fopenmp FILE.c -Iinclude -Lbuild -lrnrt -ljansson -lxxhash -ljpeg -lpthread -lm\n"
            "(another target: the flags its header names instead of -march=native).\n",
            RNC_MPI_NOTE);
}

static bool is_identifier(const char *s) {
    if (!*s || (*s >= '0' && *s <= '9') || strlen(s) > 40)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* rnc --infer: FILE.c and FILE.h, each through a temporary file and a rename. */
static bool write_infer(const char *path, const Graph *g, const InferFolds *folds, const char *prefix,
                        const char *embed) {
    size_t n = strlen(path);
    if (!strcmp(path, "-") || n < 3 || strcmp(path + n - 2, ".c")) {
        fprintf(stderr, "rnc: error: --infer writes FILE.c and FILE.h: give -o FILE.c\n");
        return false;
    }
    char hpath[4096], ctmp[4200], htmp[4200];
    snprintf(hpath, sizeof hpath, "%.*s.h", (int)(n - 2), path);
    snprintf(ctmp, sizeof ctmp, "%s.tmp.%ld", path, (long)getpid());
    snprintf(htmp, sizeof htmp, "%s.tmp.%ld", hpath, (long)getpid());
    const char *slash = strrchr(hpath, '/');
    InferOptions o = {prefix, embed, slash ? slash + 1 : hpath};
    FILE *c = fopen(ctmp, "w"), *h = fopen(htmp, "w");
    bool ok = c && h;
    if (!ok)
        fprintf(stderr, "rnc: error: cannot write %s: %s\n", c ? hpath : path, strerror(errno));
    ok = ok && emit_infer(c, h, g, folds, &o);
    ok = ok && !ferror(c) && !ferror(h);
    if (c)
        ok = (fclose(c) == 0) && ok;
    if (h)
        ok = (fclose(h) == 0) && ok;
    if (ok && (rename(ctmp, path) != 0 || rename(htmp, hpath) != 0)) {
        fprintf(stderr, "rnc: error: cannot write %s: %s\n", path, strerror(errno));
        ok = false;
    }
    if (!ok) {
        remove(ctmp);
        remove(htmp);
    }
    return ok;
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

/* The target's flags, for `gcc @FILE`: what CMake's rnc_add_network(TARGET) uses. */
static bool write_cflags(const char *path, const Target *t) {
    FILE *f = fopen(path, "w");
    bool ok = f && fprintf(f, "%s\n", t->march) > 0;
    ok = f && fclose(f) == 0 && ok;
    if (!ok)
        fprintf(stderr, "rnc: error: cannot write %s: %s\n", path, strerror(errno));
    return ok;
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
    if (argc > 1 && (!strcmp(argv[1], "train") || !strcmp(argv[1], "eval") || !strcmp(argv[1], "bench") ||
                     !strcmp(argv[1], "export")))
        return rnc_jit_command(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "tune"))   /* autotuning (tune.c, docs/tuning.md) */
        return tune_main(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "plot"))   /* training curves (plot.c) */
        return plot_main(argc, argv);
    const char *spec = NULL, *out = NULL, *cflags_out = NULL;
    bool summary = false, dump = false, infer = false;
    const char *embed = NULL, *prefix = "net";
    int batch = 0;
    ScheduleOptions opt = {0};
    SpecOverrides ov = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return stdout_status();
        } else if (!strcmp(a, "--version")) {
            printf("rnc %s\nheaders: %s\n", RNC_VERSION, compile_include_dir());
            return stdout_status();
        } else if (!strcmp(a, "--summary")) {
            summary = true;
        } else if (!strcmp(a, "--dump-graph")) {
            dump = true;
        } else if (!strcmp(a, "--infer")) {
            infer = true;
        } else if (!strcmp(a, "--no-tune")) {
            opt.no_tune = true;
        } else if (!strcmp(a, "-o") || !strcmp(a, "-b") || !strcmp(a, "--schedule") || !strcmp(a, "--tune-db") ||
                   !strcmp(a, "--target") || !strcmp(a, "--cflags-out") || !strcmp(a, "--precision") ||
                   !strcmp(a, "--classes") || !strcmp(a, "--input") || !strcmp(a, "--embed-weights") ||
                   !strcmp(a, "--prefix") || !strcmp(a, "--ranks")) {
            if (i + 1 == argc) {
                fprintf(stderr, "rnc: error: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            Target t;
            if (!strcmp(a, "-o")) {
                out = v;
            } else if (!strcmp(a, "--target")) {
                if (!target_named(v, &t))
                    return 2;
                opt.target = v;
            } else if (!strcmp(a, "--cflags-out")) {
                cflags_out = v;
            } else if (!strcmp(a, "--precision")) {
                Precision p;
                if (!parse_precision(v, &p))
                    return 2;
                opt.precision = v;
            } else if (!strcmp(a, "--embed-weights")) {
                embed = v;
            } else if (!strcmp(a, "--prefix")) {
                if (!is_identifier(v)) {
                    fprintf(stderr, "rnc: error: --prefix wants a C identifier (letters, digits, '_'), got '%s'\n", v);
                    return 2;
                }
                prefix = v;
            } else if (!strcmp(a, "--tune-db")) {
                opt.tune_db = v;
            } else if (!strcmp(a, "-b")) {
                if (!parse_batch(v, &batch))
                    return 2;
            } else if (!strcmp(a, "--ranks")) {
                if (!parse_ranks(v, &ov.ranks))
                    return 2;
            } else if (!strcmp(a, "--classes")) {
                if (!parse_classes(v, &ov.classes))
                    return 2;
            } else if (!strcmp(a, "--input")) {
                if (!parse_input_size(v, &ov))
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
        if (!compile_front_with(spec, batch, &ov, &g))
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
    if ((embed || strcmp(prefix, "net")) && !infer) {
        fprintf(stderr, "rnc: error: --embed-weights and --prefix go with --infer\n");
        return 2;
    }
    if (infer) {
        InferFolds folds;
        if (!compile_infer(spec, batch > 0 ? batch : 8, &ov, &opt, &g, &folds))
            return 1;
        bool ok = write_infer(out, &g, &folds, prefix, embed);
        free(folds.f);
        free_graph(&g);
        return ok ? 0 : 1;
    }
    if (!compile_spec_with(spec, batch, &ov, &opt, &g))
        return 1;
    bool ok = write_output(out, &g) && (!cflags_out || write_cflags(cflags_out, &g.target));
    free_graph(&g);
    return ok ? 0 : 1;
}
