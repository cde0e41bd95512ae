/* tune.c - `rnc tune SPEC`: search each conv kernel's schedule on this machine.
 *
 * For every distinct layer (a forward conv and its two backward kernels) the
 * search enumerates the legal algorithms and tile parameters, most promising
 * first (the default, the other algorithm's default where Winograd applies,
 * the nearest tuned shape's choice, then by register use), and
 * measures them in batches: one generated C benchmark per batch holds the
 * candidates of all three kernels plus the naive reference kernels, checks
 * every candidate's output against the reference on the same random inputs,
 * and times the correct ones in interleaved rounds (median).  The final
 * choice is confirmed on a whole training step (tuned vs default network,
 * every kernel call timed): a kernel not faster inside the step than its
 * default goes back to the default, and where the step is then not
 * faster, every kernel does.
 * See docs/tuning.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "rnc.h"

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- candidates ----------------------------------------------------------
 *
 * A point is an op and its tile parameters; the op says the algorithm.  For
 * a kernel that Winograd can compute the search holds two versions of its
 * op, one per algorithm (each with that algorithm's defaults), and points of
 * both. */

static bool point_uses_chunks(const Op *op) {
    return tune_uses_chunks(op->kind, op->algo);
}

/* The width a direct forward / data-gradient tile runs along (as schedule.c);
 * for Winograd, the tiles in a block of `chunks` rows of tiles. */
static int tile_span(const Graph *g, const Op *op, int chunks) {
    if (op->algo == ALGO_WINOGRAD) {
        WinogradShape s;
        winograd_shape(g, op, &s);
        return chunks * s.tiles_w;
    }
    const Tensor *x = &g->tensors[op->x];
    if (op->kind == OP_CONV) {
        int lo = (op->pad + op->stride - 1) / op->stride, hi = (x->w - op->k + op->pad) / op->stride + 1;
        return hi - lo > 1 ? hi - lo : 1;
    }
    return x->w / op->stride > 1 ? x->w / op->stride : 1;
}

/* Lower is more promising: registers well used, no ragged remainder tile,
 * cache blocks near the default's. */
static double point_score(const Graph *g, const TunePoint *p) {
    double s = 0;
    if (point_uses_chunks(p->op))
        s += fabs(log2((double)p->chunks / (p->op->chunks > 0 ? p->op->chunks : 1)));
    if (p->op->kind == OP_CONV_BWD_WEIGHT)
        return s + fabs(p->tw * p->cv - 16.0) / 4;
    int span = tile_span(g, p->op, p->chunks);
    int tw = p->tw < span ? p->tw : span;
    s += fabs(tw * p->cv - 24.0) / 4;
    if (span % tw)
        s += 1.5;
    if (p->tw > span)
        s += 100;   /* same as a narrower tile */
    return s;
}

static const Graph *sort_graph;
static int by_score(const void *a, const void *b) {
    double sa = point_score(sort_graph, a), sb = point_score(sort_graph, b);
    return (sa > sb) - (sa < sb);
}

static bool same_point(const TunePoint *a, const TunePoint *b) {
    return a->op->algo == b->op->algo && a->tw == b->tw && a->cv == b->cv &&
           (!point_uses_chunks(a->op) || a->chunks == b->chunks);
}

static void add_point(const Graph *g, TunePoint *p, int *n, int cap, TunePoint t) {
    for (int i = 0; i < *n; i++)
        if (same_point(&p[i], &t))
            return;
    if (*n < cap && schedule_point_legal(g, t.op, t.tw, t.cv, t.chunks))
        p[(*n)++] = t;
}

/* Every legal point of one algorithm's version of the op. */
static void algo_points(const Graph *g, const Op *op, TunePoint *p, int *n, int cap) {
    if (point_uses_chunks(op)) {
        int lim = 1 << 20;
        if (op->algo == ALGO_WINOGRAD) {   /* no more than the layer has (the default may be more) */
            WinogradShape s;
            winograd_shape(g, op, &s);
            lim = g->batch * s.tiles_h;
            if (op->kind == OP_CONV_BWD_WEIGHT)
                lim = lim * s.tiles_w < 4096 ? lim * s.tiles_w : 4096;
        } else {
            const Tensor *y = &g->tensors[op->y];
            lim = y->n * y->h;
        }
        int opts[4] = {op->chunks, op->chunks / 2, op->chunks * 2, op->chunks * 4};
        int most_tw = op->kind == OP_CONV_BWD_WEIGHT ? (op->algo == ALGO_WINOGRAD ? 16 : 8) : 32;
        for (int tw = 1; tw <= most_tw; tw++)
            for (int cv = 1; cv <= 4; cv++)
                for (int c = 0; c < 4; c++) {
                    int ch = c == 0 ? opts[0] : opts[c] < 1 ? 1 : opts[c] > lim ? lim : opts[c];
                    if (op->kind != OP_CONV_BWD_WEIGHT && tw > 1 && tw > tile_span(g, op, ch))
                        continue;   /* Winograd: more tiles than a block has, the same as fewer */
                    add_point(g, p, n, cap, (TunePoint){op, tw, cv, ch});
                }
    } else {
        int span = tile_span(g, op, op->chunks);
        for (int cv = 1; cv <= 4; cv++)
            for (int tw = 1; tw <= 32 && tw <= (span > 1 ? span : 1); tw++)
                add_point(g, p, n, cap, (TunePoint){op, tw, cv, op->chunks});
    }
}

/* Every legal point of op (and of alt, its version for the other algorithm,
 * if not NULL), in search order: the default, the other algorithm's
 * default, the seed (if any; its op says its algorithm), then by score.
 * Returns the count. */
static int enumerate(const Graph *g, const Op *op, const Op *alt, const TunePoint *seed, TunePoint **out) {
    int cap = 2048, n = 0;
    TunePoint *p = xcalloc(cap, sizeof *p);
    p[n++] = (TunePoint){op, op->tile_w, op->tile_c, op->chunks};
    if (alt)
        add_point(g, p, &n, cap, (TunePoint){alt, alt->tile_w, alt->tile_c, alt->chunks});
    if (seed && (seed->op == op || (alt && seed->op == alt)))
        add_point(g, p, &n, cap, *seed);
    int fixed = n;
    algo_points(g, op, p, &n, cap);
    if (alt)
        algo_points(g, alt, p, &n, cap);
    sort_graph = g;
    qsort(p + fixed, n - fixed, sizeof *p, by_score);
    *out = p;
    return n;
}

/* ---- real measurement ---------------------------------------------------- */

static const char *include_dir(void) {
    static char dir[4096];
    const char *e = getenv("RNC_INCLUDE_DIR");
    if (e && *e)
        return e;
    /* the source tree this rnc was built from */
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash) {
        snprintf(slash, sizeof dir - (size_t)(slash - dir), "/../include");
        return dir;
    }
    return "include";
}

/* Emits op's kernel (naive reference when naive) renamed to `name`. */
static void emit_kernel_as(FILE *out, const Graph *g, const Op *op, bool naive, const char *name) {
    Graph copy = *g;
    copy.naive = naive;
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        fatal("out of memory");
    KernelSet *ks = kernels_new(m, &copy);
    const char *fn = kernel_for(ks, op, true);
    fclose(m);
    char decl[200];
    snprintf(decl, sizeof decl, "static void %s(", fn);
    char *at = strstr(text, decl);
    if (!at)
        fatal("internal error: kernel %s not found in its text", fn);
    fwrite(text, 1, (size_t)(at - text), out);
    fprintf(out, "static void %s(", name);
    fputs(at + strlen(decl), out);
    kernels_free(ks);
    free(text);
}

static bool run_capture(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    if (!p)
        return false;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char line[4096];
    while (fgets(line, sizeof line, p))
        fputs(line, m);
    fclose(m);
    int st = pclose(p);
    *out = buf;
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static char workdir[4096];

static bool ensure_workdir(void) {
    if (workdir[0])
        return true;
    const char *tmp = getenv("TMPDIR");
    snprintf(workdir, sizeof workdir, "%s/rnc-tune-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(workdir)) {
        fprintf(stderr, "rnc: error: cannot create a temporary directory: %s\n", strerror(errno));
        workdir[0] = '\0';
        return false;
    }
    return true;
}

static void remove_workdir(void) {
    if (!workdir[0])
        return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", workdir);
    if (system(cmd) != 0)
        fprintf(stderr, "rnc: warning: could not remove %s\n", workdir);
    workdir[0] = '\0';
}

static const char *cc_name(void) {
    const char *cc = getenv("CC");
    return cc && *cc ? cc : "cc";
}

static const char *BENCH_PRELUDE =
    "#include <math.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
    "#include <time.h>\n#include \"rnc/kernels.h\"\n\n"
    "static float *A(size_t n, unsigned seed) {\n"
    "    float *p = aligned_alloc(64, (n * 4 + 63) / 64 * 64 + 64);\n"
    "    if (!p) exit(3);\n"
    "    for (size_t i = 0; i < n; i++) { seed = seed * 1103515245u + 12345u; p[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f; }\n"
    "    return p;\n}\n"
    "static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }\n"
    "static double err(const float *a, const float *b, size_t n) {\n"
    "    double d = 0, r = 0;\n"
    "    for (size_t i = 0; i < n; i++) { double e = (double)a[i] - b[i]; d += e * e; r += (double)b[i] * b[i]; }\n"
    "    return isfinite(d) ? sqrt(d / (r > 1e-30 ? r : 1e-30)) : 1e30;\n}\n"
    "static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }\n"
    "static double median(double *v, int n) { qsort(v, n, sizeof *v, cmpd); return v[n / 2]; }\n"
    "/* In a network a kernel's weights and inputs come from memory (the other\n"
    " * layers ran in between), so each timed call starts with the caches\n"
    " * flushed: touching a line of every 64 bytes of 64 MiB evicts them. */\n"
    "enum { FLUSH_FLOATS = 16 << 20 };\n"
    "static float *flush_buf;\n"
    "static void flush(void) {\n"
    "#pragma omp parallel for schedule(static)\n"
    "    for (long i = 0; i < FLUSH_FLOATS; i += 16) flush_buf[i] += 1;\n}\n";

/* The call of kernel fn (reference or candidate) of benchmark op j, with
 * the arguments emit.c passes: inputs, output, the BN statistics of a fused
 * forward, the weight scratch (transposed or Winograd-transformed weights),
 * and a Winograd kernel's per-thread scratch and slot count. */
static void put_call(FILE *f, const Op *op, bool naive, int j, const char *fn, bool ref) {
    fprintf(f, "%s(in0_%d, in1_%d, %sout_%d", fn, j, j, ref ? "ref_" : "", j);
    if (op->kind == OP_CONV && op->conv_stats)
        fprintf(f, ", %s_%d, %s_%d, part_%d", ref ? "rmean" : "mean", j, ref ? "rinv" : "inv", j, j);
    bool wg = !naive && op->algo == ALGO_WINOGRAD;
    if (op->kind == OP_CONV_BWD_DATA || wg)
        fprintf(f, ", wsc_%d", j);
    if (wg)
        fprintf(f, ", tscr, slots");
    fprintf(f, ");");
}

/* The largest relative L2 error of a candidate against the naive kernel on
 * the same inputs.  Winograd's transforms round more than direct sums: its
 * weight gradient of ResNet-20's 32x32x16 layer at batch 128 (8192 tiles)
 * differs by 1.6e-4.  A wrong kernel differs by O(1). */
static double check_tolerance(const Op *op) {
    return op->algo == ALGO_WINOGRAD ? 1e-3 : 1e-4;
}

/* Compiles and runs one benchmark for pts[0..n); times[i] < 0: failed.
 * Points of one kernel (the same signature, whatever their algorithm) share
 * a reference and inputs. */
static bool measure_real(void *ud, const Graph *g, const TunePoint *pts, int n, double *times) {
    (void)ud;
    for (int i = 0; i < n; i++)
        times[i] = -1;
    if (!ensure_workdir())
        return false;
    /* the distinct kernels, and the per-thread scratch the largest Winograd candidate needs */
    const Op *ops[8];
    char sigs[8][96];
    int nops = 0, *which = xcalloc(n, sizeof(int));
    size_t thread_floats = 16;
    for (int i = 0; i < n; i++) {
        char sig[96];
        if (!conv_kernel_sig(g, pts[i].op, sig, sizeof sig))
            fatal("internal error: tuning a kernel without a signature");
        int j = 0;
        while (j < nops && strcmp(sigs[j], sig))
            j++;
        if (j == nops) {
            if (nops == 8)
                fatal("internal error: too many ops in one benchmark");
            snprintf(sigs[nops], sizeof sigs[nops], "%s", sig);
            ops[nops++] = pts[i].op;
        }
        which[i] = j;
        if (pts[i].op->algo == ALGO_WINOGRAD) {
            Op c = *pts[i].op;
            c.tile_w = pts[i].tw;
            c.tile_c = pts[i].cv;
            c.chunks = pts[i].chunks;
            size_t need = winograd_thread_floats(g, &c);
            if (need > thread_floats)
                thread_floats = need;
        }
    }
    thread_floats = (thread_floats + 15) / 16 * 16;   /* slots stay 64-byte aligned */
    char src[4300], exe[4300];
    snprintf(src, sizeof src, "%s/bench.c", workdir);
    snprintf(exe, sizeof exe, "%s/bench", workdir);
    FILE *f = fopen(src, "w");
    if (!f) {
        free(which);
        return false;
    }
    fprintf(f, "%s#define BATCH %d\n#define BN_EPS %g\n#define THREAD_SCRATCH_FLOATS %zu\n\n", BENCH_PRELUDE, g->batch,
            g->spec.bn_eps, thread_floats);
    for (int j = 0; j < nops; j++) {
        char name[32];
        snprintf(name, sizeof name, "ref_%d", j);
        emit_kernel_as(f, g, ops[j], true, name);
    }
    for (int i = 0; i < n; i++) {
        Op c = *pts[i].op;
        c.tile_w = pts[i].tw;
        c.tile_c = pts[i].cv;
        c.chunks = pts[i].chunks;
        char name[32];
        snprintf(name, sizeof name, "cand_%d", i);
        emit_kernel_as(f, g, &c, false, name);
    }
    fprintf(f, "\nint main(void)\n{\n    const double budget = 0.25;\n"
               "    const int slots = omp_get_max_threads();\n"
               "    float *tscr = A((size_t)slots * THREAD_SCRATCH_FLOATS, 1u);\n"
               "    (void)tscr;\n"
               "    flush_buf = A(FLUSH_FLOATS, 2u);\n"
               "    double flush_t = now();\n"
               "    flush();\n"
               "    flush_t = now() - flush_t;\n");
    for (int j = 0; j < nops; j++) {
        const Op *op = ops[j];
        const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
        size_t nw = g->tensors[op->w].count;
        int oc = y->c;
        /* in0, in1 are inputs; out is checked; mean/inv the forward's statistics outputs */
        size_t in0 = op->kind == OP_CONV_BWD_DATA ? y->count : x->count;
        size_t in1 = op->kind == OP_CONV_BWD_WEIGHT ? y->count : nw;
        size_t outn = op->kind == OP_CONV ? y->count : op->kind == OP_CONV_BWD_DATA ? x->count : nw;
        bool stats = op->kind == OP_CONV && op->conv_stats;
        fprintf(f, "    float *in0_%d = A(%zu, %du), *in1_%d = A(%zu, %du), *init_%d = A(%zu, %du);\n", j, in0, 11 + j,
                j, in1, 23 + j, j, outn, 37 + j);
        fprintf(f, "    float *out_%d = A(%zu, 1u), *ref_out_%d = A(%zu, 1u);\n", j, outn, j, outn);
        fprintf(f, "    float *mean_%d = A(%d, 1u), *inv_%d = A(%d, 1u), *rmean_%d = A(%d, 1u), *rinv_%d = A(%d, 1u);\n",
                j, oc, j, oc, j, oc, j, oc);
        /* weight scratch: transposed weights (nw) or 6x6 transformed taps (36/9 nw) */
        fprintf(f, "    float *part_%d = A(%zu, 1u), *wsc_%d = A(%zu, 1u);\n", j, (size_t)y->n * y->h * 2 * oc, j,
                nw / 9 * 36 > nw ? nw / 9 * 36 + 16 : nw + 16);
        fprintf(f, "    (void)mean_%d; (void)inv_%d; (void)rmean_%d; (void)rinv_%d; (void)part_%d; (void)wsc_%d;\n", j,
                j, j, j, j, j);
        fprintf(f, "    memcpy(ref_out_%d, init_%d, %zu * 4);\n    ", j, j, outn);
        char ref[32];
        snprintf(ref, sizeof ref, "ref_%d", j);
        put_call(f, op, true, j, ref, true);
        fprintf(f, "\n");
        /* candidates of this kernel: check, then time in interleaved rounds */
        int nc = 0;
        for (int i = 0; i < n; i++)
            nc += which[i] == j;
        fprintf(f, "    {\n        double t[%d][64]; int ok[%d], id[%d]; double first = 0;\n", nc, nc, nc);
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (which[i] != j)
                continue;
            char cn[32];
            snprintf(cn, sizeof cn, "cand_%d", i);
            fprintf(f, "        id[%d] = %d;\n        memcpy(out_%d, init_%d, %zu * 4);\n        {\n            double t0 = now();\n            ", k, i, j, j, outn);
            put_call(f, pts[i].op, false, j, cn, false);
            fprintf(f, "\n            if (%d == 0) first = now() - t0;\n        }\n", k);
            fprintf(f, "        {\n            double e = err(out_%d, ref_out_%d, %zu);\n", j, j, outn);
            if (stats)
                fprintf(f, "            double e2 = err(mean_%d, rmean_%d, %d), e3 = err(inv_%d, rinv_%d, %d);\n"
                           "            e = e > e2 ? e : e2; e = e > e3 ? e : e3;\n", j, j, oc, j, j, oc);
            fprintf(f, "            ok[%d] = e < %g;\n            if (!ok[%d]) printf(\"bad %d %%g\\n\", e);\n        }\n", k,
                    check_tolerance(pts[i].op), k, i);
            k++;
        }
        fprintf(f, "        int rounds = (int)(budget / (%d * (first + flush_t > 1e-7 ? first + flush_t : 1e-7)));\n"
                   "        rounds = rounds < 3 ? 3 : rounds > 41 ? 41 : rounds;\n", nc);
        fprintf(f, "        for (int r = -1; r < rounds; r++) {\n");
        k = 0;
        for (int i = 0; i < n; i++) {
            if (which[i] != j)
                continue;
            char cn[32];
            snprintf(cn, sizeof cn, "cand_%d", i);
            fprintf(f, "            if (ok[%d]) {\n                flush();\n                double t0 = now();\n                ", k);
            put_call(f, pts[i].op, false, j, cn, false);
            fprintf(f, "\n                if (r >= 0) t[%d][r] = now() - t0;\n            }\n", k);
            k++;
        }
        fprintf(f, "        }\n        for (int k = 0; k < %d; k++)\n"
                   "            if (ok[k]) printf(\"time %%d %%.9g\\n\", id[k], median(t[k], rounds));\n    }\n",
                nc);
    }
    fprintf(f, "    return 0;\n}\n");
    bool ok = fclose(f) == 0;
    free(which);
    if (!ok)
        return false;
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s -O3 -march=native -fopenmp -w -I'%s' '%s' -o '%s' -lm 2>&1", cc_name(), include_dir(),
             src, exe);
    char *out = NULL;
    if (!run_capture(cmd, &out)) {
        if (!interrupted)
            fprintf(stderr, "\nrnc: warning: a tuning benchmark did not compile:\n%.2000s\n", out ? out : "");
        free(out);
        return false;
    }
    free(out);
    snprintf(cmd, sizeof cmd, "'%s'", exe);
    ok = run_capture(cmd, &out);
    if (ok && out)
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
            int id;
            double t;
            if (sscanf(line, "time %d %lf", &id, &t) == 2 && id >= 0 && id < n)
                times[id] = t;
        }
    free(out);
    return ok;
}

/* ---- the search ---------------------------------------------------------- */

typedef struct {
    const Op *op;         /* the kernel as the default schedule has it */
    Op alt;               /* ... and with the other algorithm's defaults (has_alt) */
    bool has_alt;
    char sig[96];
    uint64_t key;
    TunePoint *pts;
    int npts, next;
    TunePoint best;
    double best_t, default_t;
} KernelSearch;

/* Shapes in a signature, for the nearest-shape seed. */
static bool sig_shape(const char *sig, char *kind, int *v) {
    char k[32];
    if (sscanf(sig, "%31[a-z_]:b%d:%dx%dx%d:%dx%dx%d:k%ds%dp%d", k, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7], &v[8], &v[9]) != 11)
        return false;
    /* fwd / fwd_stats, bwd_data / bwd_data_acc are the same kind for seeding */
    snprintf(kind, 16, "%.8s", !strncmp(k, "bwd_data", 8) ? "bwd_data" : !strncmp(k, "fwd", 3) ? "fwd" : k);
    return true;
}

/* The point of the nearest tuned shape of the same kind whose algorithm
 * this kernel can use (s->op's or s->alt's); seed->op says which. */
static bool nearest_seed(const TuneDB *db, const TuneContext *ctx, const KernelSearch *s, TunePoint *seed) {
    char kind[16], k2[16];
    int v[10], w[10];
    if (!sig_shape(s->sig, kind, v))
        return false;
    double best = 1e30;
    for (int i = 0; i < db->n; i++) {
        const TuneEntry *e = &db->e[i];
        if (!sig_shape(e->sig, k2, w) || strcmp(kind, k2) || tune_key(e->sig, ctx) != e->key)
            continue;
        const Op *op = s->op->algo == e->algo ? s->op : s->has_alt && s->alt.algo == e->algo ? &s->alt : NULL;
        if (!op)
            continue;
        double d = 0;
        for (int j = 0; j < 10; j++)
            d += fabs(log2((v[j] + 1.0) / (w[j] + 1.0)));
        if (d < best) {
            best = d;
            *seed = (TunePoint){op, e->tw, e->cv, point_uses_chunks(op) ? e->chunks : op->chunks};
        }
    }
    return best < 1e30;
}

static void progress(const TuneOptions *opt, double t0, int done, int total, const char *what, double speedup) {
    if (opt->quiet)
        return;
    double el = now_s() - t0, frac = opt->budget_s > 0 ? el / opt->budget_s : 0;
    double lf = total ? (double)done / total : 1;
    if (lf > frac)
        frac = lf;
    if (frac > 1)
        frac = 1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r[%s] layer %d/%d %5.0fs  best so far %.2fx  %-40.40s", bar, done, total, el, speedup, what);
    fflush(stderr);
}

static bool is_default(const TuneEntry *e) {
    return e->algo == e->dalgo && e->tw == e->dtw && e->cv == e->dcv &&
           e->chunks == e->dchunks;
}

static void keep_default(TuneEntry *e) {
    e->tw = e->dtw;
    e->cv = e->dcv;
    e->chunks = e->dchunks;
    e->algo = e->dalgo;
    e->speedup = 1.0;
}

/* g scheduled as a build would be with the entries of db and found (found
 * wins): through schedule() and tune_apply, so the tuned ops are the ones a
 * build uses, and the memory plan (weight and per-thread scratch) fits
 * them.  Ops and tensors are copies; free them with free_tuned. */
static bool tuned_graph(const Graph *g, const TuneDB *db, const TuneDB *found, Graph *t) {
    char path[4300];
    snprintf(path, sizeof path, "%s/step.db", workdir);
    TuneDB all = {0};
    for (int i = 0; i < db->n; i++)
        tunedb_put(&all, &db->e[i]);
    for (int i = 0; i < found->n; i++)
        tunedb_put(&all, &found->e[i]);
    bool ok = tunedb_save(path, &all);
    tunedb_free(&all);
    if (!ok)
        return false;
    *t = *g;
    t->ops = xcalloc(g->n_ops, sizeof(Op));
    memcpy(t->ops, g->ops, sizeof(Op) * g->n_ops);
    t->tensors = xcalloc(g->n_tensors, sizeof(Tensor));
    memcpy(t->tensors, g->tensors, sizeof(Tensor) * g->n_tensors);
    t->tune_note = NULL;
    ScheduleOptions so = {.naive = g->naive, .tune_db = path};
    schedule(t, &so);
    return true;
}

static void free_tuned(Graph *t) {
    free(t->ops);
    free(t->tensors);
    free(t->tune_note);
}

/* Step check: times train_step of the default network g and the one tuned
 * with db and found (medians), and each of their kernel calls (means, in
 * train_step_sites' order, n_sites of them). */
static bool step_check(const Graph *g, const TuneDB *db, const TuneDB *found, double *t_def, double *t_tuned,
                       double seconds, double *site_def, double *site_tuned, int n_sites) {
    if (!ensure_workdir())
        return false;
    Graph tuned;
    if (!tuned_graph(g, db, found, &tuned))
        return false;
    char sym[80];
    size_t i = 0;
    for (; g->spec.name[i] && i + 1 < sizeof sym; i++) {
        char c = g->spec.name[i];
        sym[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) ? c : '_';
    }
    sym[i] = '\0';
    char path[3][4300];
    const char *names[3] = {"net_default.c", "net_tuned.c", "step.c"};
    for (int k = 0; k < 3; k++)
        snprintf(path[k], sizeof path[k], "%s/%s", workdir, names[k]);
    bool written = true;
    for (int k = 0; k < 2 && written; k++) {
        FILE *f = fopen(path[k], "w");
        if (f)
            emit_c(f, k == 1 ? &tuned : g);
        written = f && fclose(f) == 0;
    }
    free_tuned(&tuned);
    FILE *f = written ? fopen(path[2], "w") : NULL;
    if (!f)
        return false;
    fprintf(f, "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <time.h>\n"
               "#include <omp.h>\n#include \"rnc/model.h\"\n"
               "extern const rnc_model rnc_tune_default, rnc_tune_tuned;\n"
               "static void *A(size_t n) { void *p = aligned_alloc(64, (n + 63) / 64 * 64 + 64); if (!p) exit(3); memset(p, 0, n); return p; }\n"
               "static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }\n"
               "static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }\n"
               "int main(int argc, char **argv) {\n"
               "    double budget = argc > 1 ? atof(argv[1]) : 10;\n"
               "    const rnc_model *m[2] = {&rnc_tune_default, &rnc_tune_tuned};\n"
               "    rnc_net net[2] = {{0}};\n    unsigned s = 7;\n"
               "    float *img = A(sizeof(float) * m[0]->batch * m[0]->height * m[0]->width * m[0]->channels);\n"
               "    int32_t *lab = A(sizeof(int32_t) * m[0]->batch);\n"
               "    for (long i = 0; i < (long)m[0]->batch * m[0]->height * m[0]->width * m[0]->channels; i++) { s = s * 1103515245u + 12345u; img[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1; }\n"
               "    for (int i = 0; i < m[0]->batch; i++) lab[i] = i %% m[0]->classes;\n"
               "    for (int k = 0; k < 2; k++) {\n"
               "        net[k].model = m[k]; net[k].params = A(4 * m[k]->param_count); net[k].grads = A(4 * m[k]->param_count);\n"
               "        net[k].state = A(4 * m[k]->state_count); net[k].work = A(m[k]->work_bytes);\n"
               "        net[k].scratch_slots = omp_get_max_threads(); net[k].scratch = A(m[k]->thread_scratch_bytes * net[k].scratch_slots);\n"
               "        for (size_t i = 0; i < m[k]->param_count; i++) { s = s * 1103515245u + 12345u; net[k].params[i] = ((float)((s >> 8) & 0xffff) / 32768.0f - 1) * 0.1f; }\n"
               "    }\n"
               "    double t[2][64]; int r = 0; double start = now();\n"
               "    rnc_step_stats st;\n"
               "    for (int k = 0; k < 2; k++) m[k]->train_step(&net[k], img, lab, NULL, &st);\n"
               "    /* every kernel call timed too (a few clock reads per call: both nets alike) */\n"
               "    if (m[0]->n_sites != m[1]->n_sites) { fprintf(stderr, \"the networks have %%d and %%d calls\\n\", m[0]->n_sites, m[1]->n_sites); return 4; }\n"
               "    for (int k = 0; k < 2; k++) net[k].profile = A(sizeof(double) * (m[k]->n_sites + 1));\n"
               "    for (; r < 64 && (r < 3 || now() - start < budget); r++)\n"
               "        for (int k = 0; k < 2; k++) { int kk = r %% 2 ? 1 - k : k; double t0 = now(); m[kk]->train_step(&net[kk], img, lab, NULL, &st); t[kk][r] = now() - t0; }\n"
               "    for (int k = 0; k < 2; k++) qsort(t[k], r, sizeof(double), cmpd);\n"
               "    printf(\"step %%.9g %%.9g\\n\", t[0][r / 2], t[1][r / 2]);\n"
               "    for (int i = 0; i < m[0]->n_sites; i++)\n"
               "        printf(\"site %%d %%.9g %%.9g\\n\", i, net[0].profile[i] / r, net[1].profile[i] / r);\n"
               "    return 0;\n}\n");
    if (fclose(f) != 0)
        return false;
    char cmd[20000], *out = NULL;
    const char *inc = include_dir();
    snprintf(cmd, sizeof cmd,
             "cd '%s' && (%s -O3 -march=native -fopenmp -w -I'%s' -DRNC_NO_MAIN -Drnc_model_%s=rnc_tune_default -c net_default.c & "
             "%s -O3 -march=native -fopenmp -w -I'%s' -DRNC_NO_MAIN -Drnc_model_%s=rnc_tune_tuned -c net_tuned.c & wait) && "
             "%s -O3 -march=native -fopenmp -w -I'%s' step.c net_default.o net_tuned.o -o step -lm 2>&1 && ./step %g",
             workdir, cc_name(), inc, sym, cc_name(), inc, sym, cc_name(), inc, seconds);
    bool ok = run_capture(cmd, &out) && out && sscanf(strstr(out, "step ") ? strstr(out, "step ") : "", "step %lf %lf",
                                                       t_def, t_tuned) == 2;
    int sites = 0;
    for (const char *line = ok ? strstr(out, "\nsite ") : NULL; line; line = strstr(line + 1, "\nsite ")) {
        int i;
        double d, t;
        if (sscanf(line, "\nsite %d %lf %lf", &i, &d, &t) != 3 || i != sites || i >= n_sites)
            break;
        site_def[i] = d;
        site_tuned[i] = t;
        sites++;
    }
    ok = ok && sites == n_sites;
    if (!ok && !interrupted)
        fprintf(stderr, "\nrnc: warning: the training-step check failed:\n%.2000s\n", out ? out : "");
    free(out);
    return ok;
}

int tune_confirm_in_step(const Graph *g, TuneDB *found, const double *site_def, const double *site_tuned,
                         int n_sites, double td, double tt) {
    int *ops = xcalloc(g->n_ops + 1, sizeof(int));
    bool sites_match = train_step_sites(g, ops) == n_sites;
    double back = 0;   /* what the tuned step gains by taking the slower kernels back */
    int kept = 0;
    for (int k = 0; k < found->n; k++) {
        TuneEntry *e = &found->e[k];
        if (is_default(e))
            continue;
        double d = 0, t = 0;
        for (int i = 0; sites_match && i < n_sites; i++) {
            char sig[96];
            if (conv_kernel_sig(g, &g->ops[ops[i]], sig, sizeof sig) && !strcmp(sig, e->sig)) {
                d += site_def[i];
                t += site_tuned[i];
            }
        }
        if (t < d) {
            kept++;
        } else {
            keep_default(e);
            back += t - d;
        }
    }
    if (kept && !(tt - back < td * 0.99)) {
        for (int k = 0; k < found->n; k++)
            keep_default(&found->e[k]);
        kept = 0;
    }
    free(ops);
    return kept;
}

int tune_graph(Graph *g, const TuneOptions *opt) {
    double t0 = now_s();
    TuneMeasure measure = opt->measure ? opt->measure : measure_real;
    const TuneContext *ctx = tune_context();
    const char *path = tune_db_path(opt->db_path);
    TuneDB db;
    tunedb_load(path, &db);
    TuneDB found = {0};
    /* layers: each live forward conv with its backward kernels */
    int nk = 0, nlayers = 0;
    KernelSearch *ks = xcalloc(g->n_ops, sizeof *ks);
    int *layer_of = xcalloc(g->n_ops, sizeof(int));
    for (int i = 0; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        char sig[96];
        if (!conv_kernel_sig(g, op, sig, sizeof sig))
            continue;
        bool dup = false;
        for (int k = 0; k < nk && !dup; k++)
            dup = !strcmp(ks[k].sig, sig);
        if (dup)
            continue;
        KernelSearch *s = &ks[nk];
        s->op = op;
        /* the other algorithm, where it can compute this kernel */
        s->alt = *op;
        s->has_alt = winograd_applies(g, op) &&
                     schedule_conv_as(g, &s->alt, op->algo == ALGO_WINOGRAD ? ALGO_DIRECT : ALGO_WINOGRAD) &&
                     schedule_point_legal(g, &s->alt, s->alt.tile_w, s->alt.tile_c, s->alt.chunks);
        snprintf(s->sig, sizeof s->sig, "%s", sig);
        s->key = tune_key(sig, ctx);
        /* a layer: the first forward conv with this one's forward signature */
        int fwd = op->kind == OP_CONV ? i : op->fwd;
        char fsig[96];
        if (conv_kernel_sig(g, &g->ops[fwd], fsig, sizeof fsig))
            for (int j = 0; j < fwd; j++) {
                char s2[96];
                if (g->ops[j].kind == OP_CONV && conv_kernel_sig(g, &g->ops[j], s2, sizeof s2) && !strcmp(s2, fsig)) {
                    fwd = j;
                    break;
                }
            }
        layer_of[nk] = fwd;
        nk++;
    }
    /* distinct layers, in order of their forward op */
    int *layers = xcalloc(g->n_ops + 1, sizeof(int));
    for (int k = 0; k < nk; k++) {
        bool seen = false;
        for (int l = 0; l < nlayers && !seen; l++)
            seen = layers[l] == layer_of[k];
        if (!seen)
            layers[nlayers++] = layer_of[k];
    }
    int written = 0;
    double def_sum = 0, best_sum = 0;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    interrupted = 0;
    double reserve = opt->skip_step_check ? 0 : (opt->budget_s * 0.2 < 90 ? opt->budget_s * 0.2 : 90);
    for (int l = 0; l < nlayers && !interrupted; l++) {
        double layer_end = t0 + (opt->budget_s - reserve) * (l + 1) / nlayers;
        /* this layer's kernels still to tune */
        KernelSearch *mine[4];
        int nm = 0;
        for (int k = 0; k < nk; k++)
            if (layer_of[k] == layers[l] && nm < 4 && !tunedb_find(&db, ks[k].key, ks[k].sig)) {
                TunePoint seed = {ks[k].op, 0, 0, 0};
                bool have = nearest_seed(&found, ctx, &ks[k], &seed) || nearest_seed(&db, ctx, &ks[k], &seed);
                ks[k].npts = enumerate(g, ks[k].op, ks[k].has_alt ? &ks[k].alt : NULL, have ? &seed : NULL,
                                       &ks[k].pts);
                ks[k].best_t = ks[k].default_t = -1;
                mine[nm++] = &ks[k];
            }
        char what[128];
        snprintf(what, sizeof what, "%s", nm ? mine[0]->sig : "(already tuned)");
        progress(opt, t0, l, nlayers, what, def_sum > 0 ? def_sum / best_sum : 1);
        /* batches: the next few candidates of each kernel in one benchmark,
         * always with the default beside them: each candidate is judged by
         * its time relative to the default in the same run, so load changes
         * between runs on a shared machine do not bias the choice */
        enum { PER_KERNEL = 4 };
        bool first = true;
        while (nm && !interrupted && (first || now_s() < layer_end)) {
            TunePoint batch[4 * (PER_KERNEL + 1)];
            KernelSearch *owner[4 * (PER_KERNEL + 1)];
            int nb = 0;
            for (int m = 0; m < nm; m++) {
                if (mine[m]->next > 0 && mine[m]->next < mine[m]->npts) {
                    owner[nb] = mine[m];
                    batch[nb++] = mine[m]->pts[0];
                }
                for (int c = 0; c < PER_KERNEL && mine[m]->next < mine[m]->npts; c++) {
                    owner[nb] = mine[m];
                    batch[nb++] = mine[m]->pts[mine[m]->next++];
                }
            }
            if (!nb)
                break;
            double times[4 * (PER_KERNEL + 1)];
            measure(opt->ud, g, batch, nb, times);
            for (int m = 0; m < nm; m++) {
                KernelSearch *s = mine[m];
                double dt = -1;
                for (int b = 0; b < nb; b++)
                    if (owner[b] == s && same_point(&batch[b], &s->pts[0]) && times[b] > 0)
                        dt = times[b];
                if (dt <= 0)
                    continue;   /* no baseline in this run */
                if (s->default_t <= 0)
                    s->default_t = dt;
                for (int b = 0; b < nb; b++) {
                    if (owner[b] != s || times[b] < 0)
                        continue;   /* wrong output or failed: never recorded */
                    double ratio = times[b] / dt;
                    if (s->best_t < 0 || ratio < s->best_t) {
                        s->best_t = ratio;   /* relative to the default */
                        s->best = batch[b];
                    }
                }
            }
            first = false;
            progress(opt, t0, l, nlayers, what, def_sum > 0 ? def_sum / best_sum : 1);
        }
        for (int m = 0; m < nm; m++) {
            KernelSearch *s = mine[m];
            if (s->default_t <= 0 || s->best_t <= 0) {   /* the default itself failed: leave it alone */
                if (!interrupted)
                    fprintf(stderr, "\nrnc tune: warning: %s: the default schedule failed its check against the "
                                    "reference kernel; not tuned\n", s->sig);
                continue;
            }
            /* within noise of the default: keep the default */
            if (s->best_t > 0.97) {
                s->best = s->pts[0];
                s->best_t = 1;
            }
            def_sum += s->default_t;
            best_sum += s->default_t * s->best_t;
            TuneEntry e = {.key = s->key, .tw = s->best.tw, .cv = s->best.cv, .chunks = s->best.chunks,
                           .dtw = s->op->tile_w, .dcv = s->op->tile_c, .dchunks = s->op->chunks,
                           .speedup = 1 / s->best_t};
            snprintf(e.sig, sizeof e.sig, "%s", s->sig);
            e.algo = s->best.op->algo;
            e.dalgo = s->op->algo;
            tunedb_put(&found, &e);
        }
        /* keep what was found so far, in case of a crash or kill */
        if (found.n)
            tunedb_save(path, &found);
    }
    progress(opt, t0, nlayers, nlayers, interrupted ? "interrupted" : "kernels done", def_sum > 0 ? def_sum / best_sum : 1);
    /* the whole step decides */
    bool changed = false;
    for (int i = 0; i < found.n; i++)
        changed |= !is_default(&found.e[i]);
    if (changed && !opt->skip_step_check && !interrupted) {
        double left = opt->budget_s - (now_s() - t0);
        double td = 0, tt = 0;
        int n_sites = train_step_sites(g, NULL);
        double *site_def = xcalloc(n_sites, sizeof(double)), *site_tuned = xcalloc(n_sites, sizeof(double));
        if (!opt->quiet)
            fprintf(stderr, "\nrnc tune: timing a whole training step, default vs tuned...");
        if (step_check(g, &db, &found, &td, &tt, left > 20 ? left / 2 : 10, site_def, site_tuned, n_sites)) {
            int before = 0;
            for (int i = 0; i < found.n; i++)
                before += !is_default(&found.e[i]);
            int kept = tune_confirm_in_step(g, &found, site_def, site_tuned, n_sites, td, tt);
            if (!opt->quiet) {
                fprintf(stderr, " %.2f ms vs %.2f ms (%.2fx)\n", td * 1e3, tt * 1e3, td / tt);
                if (!kept)
                    fprintf(stderr, "rnc tune: the tuned step is not faster; keeping the default schedule\n");
                else if (kept < before)
                    fprintf(stderr, "rnc tune: %d of %d tuned kernels were not faster inside the step; they keep "
                                    "the default\n", before - kept, before);
            }
        } else if (!interrupted) {
            for (int i = 0; i < found.n; i++)   /* unconfirmed: do not trust it */
                keep_default(&found.e[i]);
        }
        free(site_def);
        free(site_tuned);
    } else if (!opt->quiet) {
        fprintf(stderr, "\n");
    }
    if (found.n && tunedb_save(path, &found))
        written = found.n;
    else if (found.n)
        written = -1;
    if (!opt->quiet)
        fprintf(stderr, "rnc tune: %d kernel entries written to %s in %.0fs%s\n", written < 0 ? 0 : written, path,
                now_s() - t0, interrupted ? " (interrupted)" : "");
    sigaction(SIGINT, &old, NULL);
    for (int k = 0; k < nk; k++)
        free(ks[k].pts);
    free(ks);
    free(layer_of);
    free(layers);
    tunedb_free(&db);
    tunedb_free(&found);
    remove_workdir();
    return written;
}

/* ---- the command line ---------------------------------------------------- */

static bool parse_budget(const char *v, double *out) {
    char *end;
    double x = strtod(v, &end);
    if (end == v || x <= 0)
        return false;
    if (!strcmp(end, "") || !strcmp(end, "s"))
        *out = x;
    else if (!strcmp(end, "m"))
        *out = x * 60;
    else if (!strcmp(end, "h"))
        *out = x * 3600;
    else
        return false;
    return true;
}

static int show(Graph *g, const char *dbpath) {
    const char *path = tune_db_path(dbpath);
    TuneDB db;
    tunedb_load(path, &db);
    const TuneContext *ctx = tune_context();
    printf("%s: tuning database %s\nmachine: %s [%s], %d threads, %s %s\n", g->spec.name, path, ctx->cpu, ctx->isa,
           ctx->threads, ctx->cc, ctx->cflags);
    printf("%-48s %-24s %-24s %s\n", "kernel", "default", "tuned", "speedup");
    char (*seen)[96] = xcalloc(g->n_ops, sizeof *seen);
    int ns = 0, tuned = 0;
    for (int i = 0; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        char sig[96], d[64], t[64] = "-";
        if (!conv_kernel_sig(g, op, sig, sizeof sig))
            continue;
        bool dup = false;
        for (int k = 0; k < ns && !dup; k++)
            dup = !strcmp(seen[k], sig);
        if (dup)
            continue;
        snprintf(seen[ns++], 96, "%s", sig);
        tune_point_text(op->kind, op->algo, op->tile_w, op->tile_c, op->chunks, d, sizeof d);
        const TuneEntry *e = tunedb_find(&db, tune_key(sig, ctx), sig);
        if (e)
            tune_point_text(op->kind, e->algo, e->tw, e->cv, e->chunks, t, sizeof t);
        /* what a build would do with the entry: an entry it cannot use (the
         * algorithm cannot compute the kernel, or the point is not legal) */
        Op c = *op;
        bool usable = e && tune_entry_apply(g, &c, e);
        tuned += usable;
        if (usable)
            printf("%-48s %-24s %-24s %.2fx\n", sig, d, t, e->speedup);
        else
            printf("%-48s %-24s %-24s %s\n", sig, d, t, e ? "not usable (ignored)" : "not tuned");
    }
    printf("%d of %d kernels tuned\n", tuned, ns);
    free(seen);
    tunedb_free(&db);
    return 0;
}

int tune_main(int argc, char **argv) {
    const char *spec = NULL, *db = NULL;
    int batch = 0;
    bool want_show = false, quiet = false, no_step = false;
    double budget = 600;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: rnc tune SPEC [-b BATCH] [--budget 10m] [--tune-db FILE] [--quiet] [--no-step-check]\n"
                   "       rnc tune --show SPEC [-b BATCH] [--tune-db FILE]\n"
                   "Finds each conv kernel's fastest schedule on this machine (docs/tuning.md).\n");
            return 0;
        } else if (!strcmp(a, "--show")) {
            want_show = true;
        } else if (!strcmp(a, "--quiet")) {
            quiet = true;
        } else if (!strcmp(a, "--no-step-check")) {
            no_step = true;
        } else if (!strcmp(a, "--budget") || !strcmp(a, "--tune-db") || !strcmp(a, "-b")) {
            if (i + 1 == argc) {
                fprintf(stderr, "rnc: error: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--tune-db")) {
                db = v;
            } else if (!strcmp(a, "-b")) {
                if (!parse_batch(v, &batch))
                    return 2;
            } else if (!parse_budget(v, &budget)) {
                fprintf(stderr, "rnc: error: --budget wants a time like 90s, 10m or 1h, got '%s'\n", v);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "rnc: error: unknown option '%s' (see rnc tune --help)\n", a);
            return 2;
        } else if (spec) {
            fprintf(stderr, "rnc: error: more than one spec given ('%s' and '%s')\n", spec, a);
            return 2;
        } else {
            spec = a;
        }
    }
    if (!spec) {
        fprintf(stderr, "usage: rnc tune SPEC [--budget 10m] [--tune-db FILE] | rnc tune --show SPEC\n");
        return 2;
    }
    Graph g;
    ScheduleOptions so = {.no_tune = true};   /* defaults: the baseline */
    if (!compile_spec(spec, batch, &so, &g))
        return 1;
    int rc;
    if (want_show) {
        rc = show(&g, db);
    } else {
        TuneOptions to = {.budget_s = budget, .db_path = db, .quiet = quiet, .skip_step_check = no_step};
        int n = tune_graph(&g, &to);
        rc = n < 0 ? 1 : interrupted ? 130 : 0;
    }
    free_graph(&g);
    return rc;
}
