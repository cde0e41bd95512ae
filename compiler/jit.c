/* jit.c - `rnc train|eval|bench SPEC [-b BATCH] [--schedule S] [flags...]`:
 * generate the network's C in memory, compile it in this process with
 * Clang's libraries (jit_clang.cpp), and hand the model to the runtime's
 * command line (rnc_main), as if the network binary had been built and run.
 *
 * Compiled objects are cached on disk, keyed by everything that determines
 * them, so only the first run of a network pays for Clang.  See docs/jit.md.
 *
 * Built without Clang (no RNC_HAVE_JIT), the command only explains itself. */
#define _GNU_SOURCE   /* open_memstream, setenv, fileno under -std=c11 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jit_clang.h"
#include "rnc.h"
#include "rnc/runtime.h"

#ifndef RNC_HAVE_JIT

int rnc_jit_command(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "rnc: this build has no JIT (install libclang-14-dev libclang-cpp14-dev "
                    "llvm-14-dev and rebuild); build the generated C with cc instead\n");
    return 2;
}

#else /* RNC_HAVE_JIT */

#include <xxhash.h>

#include "rnc/data.h"   /* rnc_data_classes, for --classes auto */
#include "rnc/dist.h"   /* rnc_dist_launched: rnc train SPEC under mpirun */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        fatal("out of memory");
    va_end(ap);
    return s;
}

static int verbose(void) {
    const char *v = getenv("RNC_JIT_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

/* ---- flags ------------------------------------------------------------- */

/* What the JIT compiles for: the host unless the command names a target. */
static Target jit_target;
static bool jit_target_set;

int rnc_jit_flags(const char ***out) {
    const char *env = getenv("RNC_JIT_CFLAGS");
    const char *base = env ? env : compile_cflags(jit_target_set ? &jit_target : target_host());
    char *inc = format("-I%s", compile_include_dir());
    /* One block: the pointer array, then the strings it points to. */
    /* RNC_NO_TLS: LLVM 14's JIT cannot allocate thread-local storage */
    size_t words = 4, bytes = strlen(base) + 1 + sizeof "-DRNC_NO_MAIN" + sizeof "-DRNC_NO_TLS" + strlen(inc) + 1;
    for (const char *p = base; *p; p++)
        words += *p == ' ' || *p == '\t' || *p == '\n';
    char **args = malloc(words * sizeof *args + bytes);
    if (!args)
        fatal("out of memory");
    char *text = (char *)(args + words);
    strcpy(text, base);
    int n = 0;
    for (char *tok = strtok(text, " \t\n"); tok; tok = strtok(NULL, " \t\n"))
        args[n++] = tok;
    char *tail = text + strlen(base) + 1;
    strcpy(tail, "-DRNC_NO_MAIN");
    args[n++] = tail;
    tail += sizeof "-DRNC_NO_MAIN";
    strcpy(tail, "-DRNC_NO_TLS");
    args[n++] = tail;
    tail += sizeof "-DRNC_NO_TLS";
    strcpy(tail, inc);
    args[n++] = tail;
    free(inc);
    *out = (const char **)args;
    return n;
}

int rnc_jit_jobs(void) {
    const char *env = getenv("RNC_JIT_JOBS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        if (!*end && n >= 1 && n <= 64)
            return (int)n;
        fprintf(stderr, "rnc: warning: ignoring RNC_JIT_JOBS='%s' (want 1 to 64)\n", env);
    }
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : n;
}

/* ---- the cache ----------------------------------------------------------
 * One file per object, DIR/<name>-<key as 16 hex digits>.jit, laid out as
 *   char magic[8] "RNCJITO\0"   u32 version   u32 header bytes (48)
 *   u64 key   u64 payload bytes   u64 XXH3-64 of the payload
 *   u64 XXH3-64 of the 40 header bytes before it
 *   payload: the ELF object
 * in native byte order.  Written to DIR/.tmp.<pid>.<name> and renamed into
 * place, so readers see a whole entry or none; a damaged entry (truncated,
 * flipped bits, wrong key) fails one of the checks and is rebuilt. */

#define CACHE_MAGIC "RNCJITO"
#define CACHE_VERSION 1u
#define CACHE_HEADER 48u

typedef struct {
    char magic[8];
    uint32_t version, header_bytes;
    uint64_t key, payload_bytes, payload_hash, header_hash;
} cache_header;

_Static_assert(sizeof(cache_header) == CACHE_HEADER, "cache header layout");

char *rnc_jit_cache_dir(void) {
    const char *d = getenv("RNC_CACHE_DIR");
    if (d && *d)
        return xstrdup(d);
    d = getenv("XDG_CACHE_HOME");
    if (d && *d == '/')
        return format("%s/rnc/jit", d);
    d = getenv("HOME");
    if (d && *d)
        return format("%s/.cache/rnc/jit", d);
    return NULL;
}

static void hash_file(XXH3_state_t *st, const char *path) {
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
            XXH3_64bits_update(st, buf, n);
            len += n;
        }
        fclose(f);
    }
    XXH3_64bits_update(st, path, strlen(path) + 1);
    XXH3_64bits_update(st, &len, sizeof len);
}

/* Everything the object depends on: the source, the flags (in order), the
 * number of backend partitions,
 * headers it includes from the include directory, and the host (LLVM and
 * Clang versions, triple, CPU name and features). */
static uint64_t cache_key(const char *source, size_t len, const char *const *args, int nargs, int jobs) {
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        fatal("out of memory");
    XXH3_64bits_reset(st);
    static const char tag[] = "rnc-jit-cache 1";
    XXH3_64bits_update(st, tag, sizeof tag);
    for (int i = 0; i < nargs; i++)
        XXH3_64bits_update(st, args[i], strlen(args[i]) + 1);
    XXH3_64bits_update(st, &jobs, sizeof jobs);   /* the partitioning changes the objects */
    /* RNC_TEST_JIT_HOST stands for another machine or compiler in the tests */
    const char *fake = getenv("RNC_TEST_JIT_HOST");
    char *host = fake && *fake ? xstrdup(fake) : rnc_jit_host_id();
    if (host)
        XXH3_64bits_update(st, host, strlen(host) + 1);
    free(host);
    const char *headers[] = {"rnc/model.h", "rnc/kernels.h"};
    for (int i = 0; i < 2; i++) {
        char *p = format("%s/%s", compile_include_dir(), headers[i]);
        hash_file(st, p);
        free(p);
    }
    XXH3_64bits_update(st, &len, sizeof len);
    XXH3_64bits_update(st, source, len);
    uint64_t key = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return key;
}

static bool mkdir_p(const char *dir) {
    char *p = xstrdup(dir);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                free(p);
                return false;
            }
            if (!c)
                break;
            *s = c;
        }
    }
    free(p);
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return false;
    if (!S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        return false;
    }
    return true;
}

/* Reads and checks an entry.  Returns 1 with the payload in *obj, 0 when
 * there is no entry, -1 when it is damaged (*why says how). */
static int cache_read(const char *path, uint64_t key, void **obj, size_t *len, const char **why) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int rc = -1;
    char *data = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < (off_t)CACHE_HEADER) {
        *why = "shorter than its header";
        goto out;
    }
    cache_header h;
    if (fread(&h, sizeof h, 1, f) != 1) {
        *why = "cannot read its header";
        goto out;
    }
    if (memcmp(h.magic, CACHE_MAGIC, 8) != 0) {
        *why = "bad magic";
        goto out;
    }
    if (h.header_hash != XXH3_64bits(&h, offsetof(cache_header, header_hash))) {
        *why = "header checksum mismatch";
        goto out;
    }
    if (h.version != CACHE_VERSION || h.header_bytes != CACHE_HEADER) {
        *why = "written by another version of rnc";
        goto out;
    }
    if (h.key != key) {
        *why = "its key does not match its name";
        goto out;
    }
    if ((uint64_t)sb.st_size != CACHE_HEADER + h.payload_bytes) {
        *why = (uint64_t)sb.st_size < CACHE_HEADER + h.payload_bytes ? "truncated" : "trailing bytes";
        goto out;
    }
    data = malloc(h.payload_bytes ? h.payload_bytes : 1);
    if (!data)
        fatal("out of memory");
    if (fread(data, 1, h.payload_bytes, f) != h.payload_bytes) {
        *why = "read error";
        goto out;
    }
    if (XXH3_64bits(data, h.payload_bytes) != h.payload_hash) {
        *why = "payload checksum mismatch";
        goto out;
    }
    *obj = data;
    *len = h.payload_bytes;
    data = NULL;
    rc = 1;
out:
    free(data);
    fclose(f);
    return rc;
}

static bool write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

static bool cache_write(const char *dir, const char *path, uint64_t key, const void *obj, size_t len) {
    if (!mkdir_p(dir))
        return false;
    cache_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.version = CACHE_VERSION;
    h.header_bytes = CACHE_HEADER;
    h.key = key;
    h.payload_bytes = len;
    h.payload_hash = XXH3_64bits(obj, len);
    h.header_hash = XXH3_64bits(&h, offsetof(cache_header, header_hash));
    char *tmp = format("%s/.tmp.%ld.%s", dir, (long)getpid(), strrchr(path, '/') + 1);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    bool ok = fd >= 0 && write_all(fd, &h, sizeof h) && write_all(fd, obj, len);
    if (fd >= 0)
        ok = (close(fd) == 0) && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        int e = errno;
        unlink(tmp);
        errno = e;
    }
    free(tmp);
    return ok;
}

/* ---- source -> loaded code ----------------------------------------------- */

int rnc_jit_load_source(const char *source, size_t len, const char *name, const char *symbol,
                        rnc_jit **jit, void **addr, rnc_jit_stats *stats, char **diag) {
    rnc_jit_stats local;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    *jit = NULL;
    *addr = NULL;
    if (diag)
        *diag = NULL;
    const char **args;
    int nargs = rnc_jit_flags(&args);
    int jobs = rnc_jit_jobs();
    uint64_t key = cache_key(source, len, args, nargs, jobs);
    char *dir = rnc_jit_cache_dir();
    char *path = dir ? format("%s/%s-%016llx.jit", dir, name, (unsigned long long)key) : NULL;
    if (path)
        snprintf(stats->cache_path, sizeof stats->cache_path, "%s", path);

    void *obj = NULL;
    size_t obj_len = 0;
    int rc = 1;
    double t0 = now();
    if (path) {
        const char *why = "";
        int found = cache_read(path, key, &obj, &obj_len, &why);
        if (found > 0) {
            stats->cache_hits++;
            rc = rnc_jit_load_object(obj, obj_len, jit, diag);
            if (rc == 0 && !(*addr = rnc_jit_lookup(*jit, symbol, diag)))
                rc = 1;
            if (rc != 0) {
                /* A well-formed entry the linker refuses: treat it as damaged. */
                fprintf(stderr, "rnc: warning: JIT cache entry %s cannot be loaded (%s); recompiling\n",
                        path, diag && *diag ? *diag : "?");
                rnc_jit_free(*jit);
                *jit = NULL;
                if (diag) {
                    free(*diag);
                    *diag = NULL;
                }
                stats->cache_hits--;
                stats->cache_corrupt++;
            }
            free(obj);
            obj = NULL;
        } else if (found < 0) {
            fprintf(stderr, "rnc: warning: JIT cache entry %s is damaged (%s); recompiling\n", path, why);
            stats->cache_corrupt++;
        }
    }
    if (rc != 0) {
        stats->cache_misses++;
        if (isatty(2) || verbose())
            fprintf(stderr, "rnc: compiling %s with Clang (cached for later runs)...\n", name);
        char *fname = format("%s.c", name);
        char *warnings = NULL;
        double tc = now();
        clock_t cc = clock();
        rc = rnc_jit_compile_object(source, len, fname, args, nargs, jobs, &obj, &obj_len, &warnings);
        stats->compile_seconds = now() - tc;
        stats->compile_cpu_seconds = (double)(clock() - cc) / CLOCKS_PER_SEC;
        free(fname);
        if (rc != 0) {
            if (diag)
                *diag = warnings;
            else
                free(warnings);
        } else {
            if (warnings) {
                fputs(warnings, stderr);
                free(warnings);
            }
            if (path && !cache_write(dir, path, key, obj, obj_len)) {
                stats->cache_write_failures++;
                fprintf(stderr, "rnc: warning: cannot write JIT cache entry %s: %s\n", path,
                        strerror(errno));
                stats->cache_path[0] = '\0';
            }
            t0 = now();
            rc = rnc_jit_load_object(obj, obj_len, jit, diag);
            if (rc == 0 && !(*addr = rnc_jit_lookup(*jit, symbol, diag)))
                rc = 1;
            free(obj);
        }
    }
    stats->load_seconds = now() - t0;
    if (rc != 0) {
        rnc_jit_free(*jit);
        *jit = NULL;
        *addr = NULL;
    }
    free(path);
    free(dir);
    free(args);
    return rc;
}

/* ---- the command --------------------------------------------------------- */

static int command_usage(FILE *out, const char *cmd, int status) {
    fprintf(out,
            "usage: rnc %s SPEC [-b BATCH] [--classes N%s] [--input HxWxC] [--schedule default|naive]\n"
            "           [--target T] [--precision P] [--no-tune] [--tune-db FILE] [flags of '<network> %s']\n"
            "Compiles SPEC in-process (Clang JIT; objects cached in $RNC_CACHE_DIR, default\n"
            "~/.cache/rnc/jit) and runs '%s' as the network's own binary would;\n"
            "'rnc %s SPEC --help' lists the flags.  See docs/jit.md.\n"
            "--classes and --input replace the spec's classes and input size%s.\n"
            "--no-tune and --tune-db FILE: as for 'rnc SPEC -o FILE.c' (docs/tuning.md).\n",
            cmd, strcmp(cmd, "bench") && strcmp(cmd, "export") ? "|auto" : "", cmd, cmd, cmd,
            strcmp(cmd, "bench") && strcmp(cmd, "export") ? " (--classes auto: as many as --data has)" : "");
    return status;
}

static bool fits_in_memory(const Graph *g, const char *cmd) {
    StepMemory sm;
    step_memory(g, host_threads(), &sm);
    double need = sm.total - (strcmp(cmd, "train") ? 4.0 * (double)g->param_count : 0);   /* momentum */
    const char *what;
    double have = rnc_machine_memory(NULL, &what);
    if (have <= 0 || need <= have)
        return true;
    char b[6][32];
    format_bytes(need, b[0], sizeof b[0]);
    format_bytes(sm.activations, b[1], sizeof b[1]);
    format_bytes(sm.gradients, b[2], sizeof b[2]);
    format_bytes(sm.weights, b[3], sizeof b[3]);
    format_bytes(sm.scratch, b[4], sizeof b[4]);
    format_bytes(have, b[5], sizeof b[5]);
    fprintf(stderr, "rnc: error: %s: %s at batch %d needs %s (activations %s, gradients %s, weights %s, "
                    "scratch %s), more than %s (%s); nothing was compiled or allocated\n",
            g->spec.file, cmd, g->batch, b[0], b[1], b[2], b[3], b[4], what, b[5]);
    return false;
}

int rnc_jit_command(int argc, char **argv) {
    double t_start = now();
    const char *cmd = argv[1];
    if (argc >= 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")))
        return command_usage(stdout, cmd, 0);
    if (argc < 3 || argv[2][0] == '-')
        return command_usage(stderr, cmd, 2);
    const char *spec = argv[2];

    /* The network's own argv: "<name> <cmd> <flags...>", minus the flags that
     * shape the generated code. */
    char **net_argv = calloc((size_t)argc + 1, sizeof *net_argv);
    if (!net_argv)
        fatal("out of memory");
    int net_argc = 2;
    int batch = 0;
    ScheduleOptions opt = {0};
    SpecOverrides ov = {0};
    bool auto_classes = false;
    const char *data = NULL;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--no-tune")) {
            opt.no_tune = true;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--schedule") || !strcmp(a, "--classes") || !strcmp(a, "--input") ||
                   !strcmp(a, "--target") || !strcmp(a, "--precision") || !strcmp(a, "--tune-db")) {
            if (i + 1 == argc) {
                fprintf(stderr, "rnc: error: %s needs a value\n", a);
                free(net_argv);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "-b")) {
                if (!parse_batch(v, &batch)) {
                    free(net_argv);
                    return 2;
                }
            } else if (!strcmp(a, "--target")) {
                if (!target_named(v, &jit_target)) {
                    free(net_argv);
                    return 2;
                }
                if (jit_target.amx_emulated) {   /* its tile model is thread-local state */
                    fprintf(stderr, "rnc: error: the JIT cannot run --target amx-emulated (its C model of the tiles is "
                                    "thread-local state, which LLVM's JIT cannot allocate); build it ahead of time: "
                                    "rnc SPEC --target amx-emulated -o net.c\n");
                    free(net_argv);
                    return 2;
                }
                if (!target_runs_here(&jit_target)) {
                    free(net_argv);
                    return 2;
                }
                jit_target_set = true;
                opt.target = v;
            } else if (!strcmp(a, "--tune-db")) {
                opt.tune_db = v;
            } else if (!strcmp(a, "--precision")) {
                Precision p;
                if (!parse_precision(v, &p)) {
                    free(net_argv);
                    return 2;
                }
                opt.precision = v;
            } else if (!strcmp(a, "--classes")) {
                auto_classes = !strcmp(v, "auto");
                if (!auto_classes && !parse_classes(v, &ov.classes)) {
                    free(net_argv);
                    return 2;
                }
            } else if (!strcmp(a, "--input")) {
                if (!parse_input_size(v, &ov)) {
                    free(net_argv);
                    return 2;
                }
            } else if (!strcmp(v, "naive") || !strcmp(v, "default")) {
                opt.reference = !strcmp(v, "naive");
            } else {
                fprintf(stderr, "rnc: error: unknown schedule '%s' (default or naive)\n", v);
                free(net_argv);
                return 2;
            }
        } else {
            /* the network's flags, but --data tells --classes auto where to count */
            if (!strcmp(a, "--data") && i + 1 < argc)
                data = argv[i + 1];
            else if (!strncmp(a, "--data=", 7))
                data = a + 7;
            net_argv[net_argc++] = argv[i];
        }
    }
    if (auto_classes) {
        if (!data) {
            fprintf(stderr, "rnc: error: --classes auto counts the classes of --data PATH; give --data\n");
            free(net_argv);
            return 2;
        }
        rnc_err err;
        char what[8400];
        if (rnc_data_classes(data, &ov.classes, what, sizeof what, &err) != RNC_OK) {
            fprintf(stderr, "rnc: error: --classes auto: %s\n", err.msg);
            free(net_argv);
            return 1;
        }
        fprintf(stderr, "rnc: --classes auto: %d classes (%s)\n", ov.classes, what);
    }

    /* Under mpirun -np N, training code for one process of N: the batch is
     * the global batch (rnc/dist.h; --ranks in rnc SPEC -o FILE.c). */
    int launched_rank = 0;
    if ((!strcmp(cmd, "train") || !strcmp(cmd, "bench")) && rnc_dist_launched(&launched_rank) > 1)
        ov.ranks = rnc_dist_launched(NULL);
    /* Every rank compiles the same spec: only rank 0 says what is wrong with it. */
    int quiet_fd = -1;
    if (ov.ranks > 1 && launched_rank > 0) {
        int null_fd = open("/dev/null", O_WRONLY);
        fflush(stderr);
        if (null_fd >= 0 && (quiet_fd = dup(2)) >= 0)
            dup2(null_fd, 2);
        if (null_fd >= 0)
            close(null_fd);
    }

    /* The runtime asks for sleeping OpenMP waits by re-executing itself with
     * OMP_WAIT_POLICY set (runtime/cli.c); here that would re-run rnc with the
     * network's argv.  libomp reads its settings when first used, not when
     * loaded, so setting the variable before anything runs in parallel does
     * the same without the restart. */
    setenv("OMP_WAIT_POLICY", "passive", 0);

    Graph g;
    /* A network that cannot fit is refused before Clang spends seconds on it
     * (the runtime checks again, with the data, before it allocates). */
    bool ok = compile_spec_with(spec, batch, &ov, &opt, &g);
    if (ok && !fits_in_memory(&g, cmd)) {
        free_graph(&g);
        ok = false;
    }
    if (quiet_fd >= 0) {
        fflush(stderr);
        dup2(quiet_fd, 2);
        close(quiet_fd);
        /* mpirun ends the job at the first failed process, and may drop what
         * the others had still to print: let rank 0's message out first. */
        if (!ok)
            sleep(1);
    }
    if (!ok) {
        free(net_argv);
        return 1;
    }
    char *source = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&source, &len);
    if (!mem)
        fatal("out of memory");
    emit_c(mem, &g);
    if (fclose(mem) != 0)
        fatal("out of memory");
    /* The entries were measured on builds by $CC (rnc tune); Clang compiles
     * the same schedule here, so they are a good guess, not a measurement. */
    if (verbose()) {
        char tuned[4400];
        tuned_text(&g.tuned, tuned, sizeof tuned);
        fprintf(stderr, "rnc: jit: tuned: %s\n", tuned);
    }
    char name[80], symbol[96];
    c_identifier(g.spec.name, name, sizeof name);
    snprintf(symbol, sizeof symbol, "rnc_model_%s", name);
    free_graph(&g);
    double t_gen = now();

    rnc_jit *jit = NULL;
    void *addr = NULL;
    rnc_jit_stats st;
    char *diag = NULL;
    int rc = rnc_jit_load_source(source, len, name, symbol, &jit, &addr, &st, &diag);
    free(source);
    if (rc != 0) {
        fprintf(stderr, "%s", diag ? diag : "");
        if (diag && diag[0] && diag[strlen(diag) - 1] != '\n')
            fputc('\n', stderr);
        const char **args;
        int nargs = rnc_jit_flags(&args);
        fprintf(stderr, "rnc: error: JIT compilation of %s failed; flags:", spec);
        for (int i = 0; i < nargs; i++)
            fprintf(stderr, " %s", args[i]);
        fprintf(stderr, "%s\n", getenv("RNC_JIT_CFLAGS") ? " (from $RNC_JIT_CFLAGS)" : "");
        free(args);
        free(diag);
        free(net_argv);
        return 1;
    }
    if (verbose())
        fprintf(stderr,
                "rnc: jit: %s: generate %.0f ms, %s%s, compile %.2f s (cpu %.2f s, %d jobs), load %.0f ms; "
                "ready %.0f ms after start\n",
                name, (t_gen - t_start) * 1e3,
                st.cache_hits ? "cache hit " : st.cache_path[0] ? "cache miss, stored " : "no cache",
                st.cache_path, st.compile_seconds, st.compile_cpu_seconds, rnc_jit_jobs(), st.load_seconds * 1e3,
                (now() - t_start) * 1e3);

    net_argv[0] = name;
    net_argv[1] = (char *)cmd;
    net_argv[net_argc] = NULL;
    rc = rnc_main((const rnc_model *)addr, net_argc, net_argv);
    /* The model's code runs in the JIT's memory: unload only after the run. */
    fflush(stdout);
    rnc_jit_free(jit);
    free(net_argv);
    return rc;
}

#endif /* RNC_HAVE_JIT */
