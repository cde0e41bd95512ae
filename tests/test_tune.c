/* test_tune.c - autotuning: keys, the database file, the search, and a real
 * tuned build (compiler/tune.c, compiler/tunedb.c, docs/tuning.md). */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>
#include "rnc.h"
#include "testutil.h"

static char dir[256];
static char dbpath[300];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/rnc-test-tune-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/sub/tune.db", dir);
    setenv("RNC_TUNE_DB", dbpath, 1);   /* never the user's cache */
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static TuneContext base_ctx(void) {
    TuneContext c = {.threads = 8, .codegen = RNC_CODEGEN_VERSION};
    snprintf(c.cpu, sizeof c.cpu, "Intel(R) Xeon(R) Platinum 8480+");
    snprintf(c.isa, sizeof c.isa, "avx2,fma,avx512f,amx_tile");
    snprintf(c.cc, sizeof c.cc, "cc (gcc 12.2.0)");
    snprintf(c.cflags, sizeof c.cflags, "-O3 -march=native -fopenmp");
    return c;
}

static void compile_tiny(Graph *g, bool no_tune, const char *db) {
    ScheduleOptions o = {.no_tune = no_tune, .tune_db = db};
    ck_assert(compile_spec(SOURCE_DIR "/tests/specs/tiny_a.spec", 0, &o, g));
}

static const OpSchedule *sched_of(const Graph *g, const Op *op) { return &g->sched[op - g->ops]; }

static OpSchedule sched(const char *family, int p0, int p1, int p2) {
    OpSchedule s = {.family = family_named(family), .p = {p0, p1, p2}};
    ck_assert_ptr_nonnull(s.family);
    return s;
}

static const KernelFamily *F(const char *name) { return family_named(name); }

/* ---- keys ------------------------------------------------------------------ */

START_TEST(key_stability) {
    TuneContext c = base_ctx(), d;
    const char *sig = "fwd_stats:b128:32x32x16:32x32x16:k3s1p1";
    uint64_t k = tune_key(sig, &c);
    ck_assert_uint_eq(k, tune_key(sig, &c));
    TuneContext c2 = base_ctx();
    ck_assert_uint_eq(k, tune_key("fwd_stats:b128:32x32x16:32x32x16:k3s1p1", &c2));
    /* any changed field changes the key */
    ck_assert_uint_ne(k, tune_key("fwd_stats:b128:32x32x16:32x32x32:k3s1p1", &c));   /* shape */
    ck_assert_uint_ne(k, tune_key("fwd_stats:b128:32x32x16:16x16x16:k3s2p1", &c));   /* stride */
    ck_assert_uint_ne(k, tune_key("fwd_stats:b64:32x32x16:32x32x16:k3s1p1", &c));    /* batch */
    ck_assert_uint_ne(k, tune_key("fwd:b128:32x32x16:32x32x16:k3s1p1", &c));         /* fused stats */
    d = c; snprintf(d.cpu, sizeof d.cpu, "AMD EPYC 9654");
    ck_assert_uint_ne(k, tune_key(sig, &d));
    d = c; snprintf(d.isa, sizeof d.isa, "avx2,fma,avx512f");
    ck_assert_uint_ne(k, tune_key(sig, &d));
    d = c; d.threads = 4;
    ck_assert_uint_ne(k, tune_key(sig, &d));
    d = c; snprintf(d.cc, sizeof d.cc, "clang 16");
    ck_assert_uint_ne(k, tune_key(sig, &d));
    d = c; snprintf(d.cflags, sizeof d.cflags, "-O2 -march=native -fopenmp");
    ck_assert_uint_ne(k, tune_key(sig, &d));
    d = c; d.codegen = RNC_CODEGEN_VERSION + 1;
    ck_assert_uint_ne(k, tune_key(sig, &d));

    /* signatures from a real graph: distinct kernels, distinct signatures */
    Graph g;
    compile_tiny(&g, true, NULL);
    int n = 0;
    char sigs[64][96];
    for (int i = 0; i < g.n_ops; i++) {
        char s[96];
        if (!tunable_sig(&g, &g.ops[i], s, sizeof s))
            continue;
        bool dup = false;
        for (int j = 0; j < n; j++)
            dup |= !strcmp(sigs[j], s);
        if (!dup && n < 64)
            snprintf(sigs[n++], 96, "%s", s);
    }
    ck_assert_int_eq(n, 13);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            ck_assert_uint_ne(tune_key(sigs[i], &c), tune_key(sigs[j], &c));
    free_graph(&g);
}
END_TEST

/* ---- families and legality ------------------------------------------------- */

/* The schedule can only produce what the kernels compute: over networks of
 * many channel counts (1 to 10 vectors, and counts that are not multiples
 * of 16) and kernel sizes, every op's default schedule is legal for its
 * family, and every point a family offers the tuner that its legal() rule
 * accepts keeps a register tile inside the channels it covers. */
START_TEST(defaults_are_legal_at_every_width) {
    static const int widths[] = {8, 12, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 176, 192, 240, 256, 320};
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++)
        for (int k = 1; k <= 7; k += 2) {
            char text[512], path[320];
            snprintf(text, sizeof text,
                     "network w%d\ninput 16x16x3\nclasses 4\nblock basic\nshortcut B\nstem conv %dx%d %d\n"
                     "stage %d blocks 1\nstage %d blocks 1 stride 2\nbatch 2\n",
                     widths[w], k, k, widths[w], widths[w], 2 * widths[w]);
            snprintf(path, sizeof path, "%s/w.spec", dir);
            FILE *f = fopen(path, "w");
            ck_assert_ptr_nonnull(f);
            fputs(text, f);
            fclose(f);
            for (int ref = 0; ref < 2; ref++) {
                Graph g;
                ScheduleOptions o = {.reference = ref, .no_tune = true};
                ck_assert(compile_spec(path, 0, &o, &g));
                for (int i = 0; i < g.n_ops; i++) {
                    const Op *op = &g.ops[i];
                    if (op->dead)
                        continue;
                    const OpSchedule *s = sched_of(&g, op);
                    ck_assert_msg(family_legal(s->family, &g, op, s->p), "width %d, %s: %s schedule not legal",
                                  widths[w], op->name, s->family->name);
                    ck_assert(!ref || s->family->reference);
                    if (!is_conv(op->kind) || s->family->reference)
                        continue;
                    /* a fast family's tile of vectors divides the whole vectors of the
                     * channels it runs along (one vector: the partial one, where there
                     * are none) */
                    const Tensor *x = &g.tensors[op->x], *y = &g.tensors[op->y];
                    int ch = op->kind == OP_CONV_BWD_DATA ? x->c : y->c, whole = ch / g.target.vec;
                    ck_assert_msg(s->p[1] >= 1 && whole % s->p[1] == 0 && s->p[1] <= (whole > 0 ? whole : 1),
                                  "width %d, %s: %d vectors of %d channels", widths[w], op->name, s->p[1], ch);
                }
                free_graph(&g);
            }
        }
}
END_TEST

START_TEST(legality) {
    Graph g;
    compile_tiny(&g, true, NULL);
    const KernelFamily *direct = F("direct"), *wg = F("winograd"), *ref = F("reference");
    ck_assert(direct && wg && ref && ref->reference && !direct->reference && !wg->reference);
    for (int i = 0; i < g.n_ops; i++) {
        const Op *op = &g.ops[i];
        char s[96];
        if (!tunable_sig(&g, op, s, sizeof s))
            continue;
        /* the default is legal; so are the defaults of every family that applies */
        const OpSchedule *d = sched_of(&g, op);
        ck_assert(family_legal(d->family, &g, op, d->p));
        OpSchedule ds, ws;
        ck_assert(family_default(direct, &g, op, &ds));
        ck_assert(family_legal(direct, &g, op, ds.p));
        ck_assert(family_legal(ref, &g, op, (int[SCHED_MAX_PARAMS]){0}));   /* the reference: any shape */
        ck_assert(!family_legal(direct, &g, op, (int[SCHED_MAX_PARAMS]){0, 1, 1}));
        ck_assert(!family_legal(direct, &g, op, (int[SCHED_MAX_PARAMS]){1, 0, 1}));
        ck_assert(!family_legal(direct, &g, op, (int[SCHED_MAX_PARAMS]){1, 5, 1}));
        const Tensor *x = &g.tensors[op->x], *y = &g.tensors[op->y];
        int ch = op->kind == OP_CONV_BWD_DATA ? x->c : y->c;
        ck_assert(!family_legal(direct, &g, op, (int[SCHED_MAX_PARAMS]){1, 3, 1}) || (ch / 16) % 3 == 0);
        if (op->kind == OP_CONV_BWD_WEIGHT) {
            ck_assert(!family_legal(direct, &g, op, (int[SCHED_MAX_PARAMS]){1, 1, 0}));
            ck_assert(!family_legal(direct, &g, op, (int[SCHED_MAX_PARAMS]){9, 1, 1}));
            if (x->c == 3)
                ck_assert(!family_legal(direct, &g, op, (int[SCHED_MAX_PARAMS]){2, 1, 1}));   /* does not divide IC */
        } else {
            ck_assert(!family_legal(direct, &g, op, (int[SCHED_MAX_PARAMS]){33, 1}));
            ck_assert(!family_legal(direct, &g, op, (int[SCHED_MAX_PARAMS]){15, 2}));   /* 30 accumulators */
        }
        /* per family: the same point can be legal for one and not the other */
        if (!wg->applies(&g, op)) {
            ck_assert_ptr_eq(d->family, direct);
            ck_assert(!family_default(wg, &g, op, &ws));
            ck_assert(!family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){1, 1, 1}));
            continue;
        }
        ck_assert(family_default(wg, &g, op, &ws));
        if (op->kind == OP_CONV_BWD_WEIGHT) {
            ck_assert(family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){16, 1, 64}));    /* 16 input channels: Winograd only */
            ck_assert(!family_legal(direct, &g, op, (int[SCHED_MAX_PARAMS]){16, 1, 64}));
            ck_assert(!family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){16, 2, 64}));   /* 32 > 24 accumulators */
            ck_assert(!family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){3, 1, 64}));    /* does not divide IC */
            ck_assert(!family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){32, 1, 64}));   /* more than 16 channels */
            ck_assert(family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){4, 1, 4096}));
            ck_assert(!family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){4, 1, 4097}));
            ck_assert(!family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){4, 1, 0}));
        } else {
            int rows = g.batch * ((y->h + 3) / 4);
            if (op->kind == OP_CONV_BWD_DATA)
                rows = g.batch * ((x->h + 3) / 4);
            ck_assert(family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){1, 1, 1}));
            ck_assert(family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){4, 1, rows}));
            ck_assert(!family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){4, 1, rows + 1}));   /* more rows than there are */
            ck_assert(!family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){4, 1, 0}));
            ck_assert(!family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){29, 1, 1}));         /* 29 accumulators */
            ck_assert(!family_legal(wg, &g, op, (int[SCHED_MAX_PARAMS]){4, 1, -3}));
        }
    }
    free_graph(&g);
}
END_TEST

/* Kernel names carry every schedule parameter: two schedules of one op
 * never share a function. */
START_TEST(names_carry_the_schedule) {
    Graph g;
    compile_tiny(&g, true, NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(m);
    KernelSet *ks = kernels_new(m);
    int checked = 0;
    for (int i = 0; i < g.n_ops; i++) {
        const Op *op = &g.ops[i];
        char s[96];
        if (!tunable_sig(&g, op, s, sizeof s) || op->kind == OP_CONV_BWD_WEIGHT)
            continue;
        OpSchedule a, b;
        ck_assert(family_default(F("direct"), &g, op, &a));
        b = a;
        b.p[0] = a.p[0] > 1 ? a.p[0] - 1 : 2;
        if (!family_legal(b.family, &g, op, b.p))
            continue;
        char na[200], nb[200];
        snprintf(na, sizeof na, "%s", kernel_for(ks, &g, op, &a, true));
        snprintf(nb, sizeof nb, "%s", kernel_for(ks, &g, op, &b, true));
        ck_assert_str_ne(na, nb);
        ck_assert_str_eq(na, kernel_for(ks, &g, op, &a, true));   /* the same schedule: the same function */
        checked++;
    }
    ck_assert_int_gt(checked, 2);
    kernels_free(ks);
    fclose(m);
    free(text);
    free_graph(&g);
}
END_TEST

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct {
    const Graph *g;
    const Op *op;
    OpSchedule *pts;
    int n, cap;
} Points;

static void collect_point(void *ud, const int *p) {
    Points *l = ud;
    OpSchedule s = {.family = l->pts[0].family};
    memcpy(s.p, p, sizeof s.p);
    if (l->n < l->cap && family_legal(s.family, l->g, l->op, s.p))
        l->pts[l->n++] = s;
}

/* Legal means correct: points spread over each family's whole legal range
 * (the first, every 23rd and the last the tuner would try), for every
 * kernel of widths_b (3, 5 and 7 channel vectors, a 5x5 stem) and of
 * tiny_plain_odd (8 and 12 channels: partial vectors only), compiled into
 * the tuner's benchmark, each checked there against the reference (relative
 * L2 error within the family's tolerance).  Returns how many of the points
 * were of the family named `count` (NULL: none counted). */
/* Checks points of every family on spec's ops; returns how many were of
 * the family named count, and with each, adds each family's count to
 * each[f] (kernel_families' order). */
static int check_legal_points_each(const char *spec, const char *count, const char *target, int *each) {
    Graph g;
    ScheduleOptions so = {.no_tune = true, .target = target};
    ck_assert(compile_spec(spec, 0, &so, &g));
    BenchOp ops[64];
    OpSchedule *all = calloc(64 * 64, sizeof *all);
    int nops = 0, total = 0, counted = 0;
    char seen[64][96];
    for (int i = 0; i < g.n_ops && nops < 64; i++) {
        const Op *op = &g.ops[i];
        char s[96];
        if (!tunable_sig(&g, op, s, sizeof s))
            continue;
        bool dup = false;
        for (int k = 0; k < nops && !dup; k++)
            dup = !strcmp(seen[k], s);
        if (dup)
            continue;
        snprintf(seen[nops], 96, "%s", s);
        ops[nops] = (BenchOp){.op = op, .cands = all + total};
        for (int f = 0; kernel_families[f]; f++) {
            const KernelFamily *fam = kernel_families[f];
            OpSchedule d;
            if (fam->reference || !fam->candidates || !family_default(fam, &g, op, &d))
                continue;
            Points l = {.g = &g, .op = op, .cap = 4096};
            l.pts = calloc(l.cap, sizeof *l.pts);
            l.pts[0].family = fam;
            fam->candidates(&g, op, d.p, collect_point, &l);
            ck_assert_int_gt(l.n, 0);
            /* every family gets its share of the op's 48 points */
            for (int k = 0, mine = 0; k < l.n; k++)   /* all of a short list */
                if ((l.n <= 8 || k % 23 == 0 || k == l.n - 1) && ops[nops].n < 48 && mine < 16) {
                    all[total + ops[nops].n++] = l.pts[k];
                    mine++;
                    counted += count && !strcmp(fam->name, count);
                    if (each)
                        each[f]++;
                }
            free(l.pts);
        }
        total += ops[nops].n;
        nops++;
    }
    ck_assert_int_gt(nops, 4);
    /* in batches of a few kernels, as the tuner compiles them */
    for (int first = 0; first < nops; first += 4) {
        int n = nops - first < 4 ? nops - first : 4, points = 0;
        for (int k = 0; k < n; k++)
            points += ops[first + k].n;
        char src[320], cmd[2048];
        snprintf(src, sizeof src, "%s/bench.c", dir);
        FILE *f = fopen(src, "w");
        ck_assert_ptr_nonnull(f);
        emit_kernel_bench(f, &g, ops + first, n, 0.0);
        ck_assert_int_eq(fclose(f), 0);
        snprintf(cmd, sizeof cmd, "cd %s && cc %s -w -I%s/include bench.c -o bench -lm && OMP_NUM_THREADS=2 ./bench > out.txt",
                 dir, compile_cflags(&g.target), SOURCE_DIR);
        ck_assert_int_eq(sh(cmd), 0);
        char out[320];
        snprintf(out, sizeof out, "%s/out.txt", dir);
        size_t len;
        char *text = read_text_file(out, &len);
        ck_assert_ptr_nonnull(text);
        ck_assert_msg(!strstr(text, "bad "), "a legal point computed something else:\n%s", text);
        int times = 0;
        for (const char *p = strstr(text, "time "); p; p = strstr(p + 1, "time "))
            times++;
        ck_assert_int_eq(times, points);   /* every point checked and timed */
        free(text);
    }
    free(all);
    free_graph(&g);
    return counted;
}

static int check_legal_points(const char *spec, const char *count, const char *target) {
    return check_legal_points_each(spec, count, target, NULL);
}

START_TEST(legal_points_compute_correctly) {
    setenv("RNC_INCLUDE_DIR", SOURCE_DIR "/include", 1);
    check_legal_points(SOURCE_DIR "/tests/specs/widths_b.spec", NULL, NULL);
    check_legal_points(SOURCE_DIR "/tests/specs/tiny_plain_odd.spec", NULL, NULL);
    /* bf16 storage: every family reading and writing bf16 tensors (with bf16
     * dot products, `test_tune bf16dot` checks the same points) */
    if (!target_host()->bf16_dot)
        check_legal_points(SOURCE_DIR "/tests/specs/thin_bf16.spec", NULL, NULL);
}
END_TEST

/* The bf16 dot-product kernels (run as `test_tune bf16dot`, skipped on a
 * CPU without AVX512-BF16) on thin_bf16's thin and off-grid layers: 16x16
 * channels 3x3, data gradients reducing over 24 and 48 channels, stride-2
 * projections.  The bound (bf16dot's tolerance, 2e-2 relative L2): x is
 * the same bf16 tensor for both kernels, so the differences are the
 * weights' rounding to bf16 (each weight within 2^-9 relative, errors of
 * random sign: about 2^-9/sqrt(3) = 1.1e-3 of the output's L2 norm) and,
 * for a bf16 output, its own rounding (the same again, or a step of 2^-8
 * where fp32 sums land on either side of a rounding boundary): a few times
 * 1e-3, well inside 2e-2; a kernel that computes something else is off by
 * O(1). */
START_TEST(bf16dot_points_compute_correctly) {
    setenv("RNC_INCLUDE_DIR", SOURCE_DIR "/include", 1);
    int n = check_legal_points(SOURCE_DIR "/tests/specs/thin_bf16.spec", "bf16dot", NULL);
    printf("bf16dot: %d points checked against the reference\n", n);
    ck_assert_int_ge(n, 8);
}
END_TEST

/* The AMX kernels (`test_tune amx`: the amx and amxflat families), on
 * thin_bf16's layers, amx_bf16's (two tiles of pixels and of channels) and
 * amx_flat_bf16's (bottleneck 1x1 layers, rows that tiles straddle), at the same bound as bf16dot's (the tiles form the same exact products, summed in another
 * order): on the CPU's tiles where it has AMX, otherwise on the
 * amx-emulated target's C model of them (which also checks every tile
 * instruction's operand shapes, as the hardware does). */
static const char *amx_target;
START_TEST(amx_points_compute_correctly) {
    setenv("RNC_INCLUDE_DIR", SOURCE_DIR "/include", 1);
    const char *specs[] = {"thin_bf16", "amx_bf16", "amx_flat_bf16"};
    int n = 0, each[32] = {0}, flat = -1;
    for (int f = 0; kernel_families[f]; f++)
        if (!strcmp(kernel_families[f]->name, "amxflat"))
            flat = f;
    ck_assert_int_ge(flat, 0);
    for (int i = 0; i < 3; i++) {
        char spec[256];
        snprintf(spec, sizeof spec, "%s/tests/specs/%s.spec", SOURCE_DIR, specs[i]);
        n += check_legal_points_each(spec, "amx", amx_target, each);
    }
    printf("amx (%s): %d points, amxflat: %d points checked against the reference\n", amx_target, n, each[flat]);
    ck_assert_int_ge(n, 8);
    ck_assert_int_ge(each[flat], 8);
}
END_TEST

/* ---- the database ---------------------------------------------------------- */

static TuneEntry entry(int i) {
    TuneEntry e = {.key = 0x1234567890abcdefULL + (uint64_t)i * 7919,
                   .best = sched(i % 2 ? "winograd" : "direct", 1 + i % 28, 1 + i % 4, i),
                   .dflt = sched(i % 3 ? "direct" : "winograd", 8, 1, 32), .speedup = 1.0 + i / 100.0};
    snprintf(e.sig, sizeof e.sig, "fwd:b%d:8x8x16:8x8x16:k3s1p1", i + 1);
    return e;
}

START_TEST(roundtrip) {
    TuneDB db = {0}, back;
    ck_assert(tunedb_load(dbpath, &back));   /* missing: empty, fine */
    ck_assert_int_eq(back.n, 0);
    for (int i = 0; i < 10; i++) {
        TuneEntry e = entry(i);
        tunedb_put(&db, &e);
    }
    ck_assert(tunedb_save(dbpath, &db));
    ck_assert(tunedb_load(dbpath, &back));
    ck_assert_int_eq(back.n, 10);
    for (int i = 0; i < 10; i++) {
        TuneEntry e = entry(i);
        const TuneEntry *f = tunedb_find(&back, e.key, e.sig);
        ck_assert_ptr_nonnull(f);
        ck_assert(sched_equal(&f->best, &e.best));   /* the families and every parameter */
        ck_assert(sched_equal(&f->dflt, &e.dflt));
        ck_assert_double_eq_tol(f->speedup, e.speedup, 1e-4);
        ck_assert_ptr_eq(f->best.family, F(i % 2 ? "winograd" : "direct"));
        ck_assert_str_eq(f->sig, e.sig);
        ck_assert_ptr_null(tunedb_find(&back, e.key, "other"));   /* the signature must match too */
    }
    /* saving merges with what is on disk; the same key is replaced */
    TuneDB more = {0};
    TuneEntry e = entry(3);
    e.best.p[0] = 2;
    tunedb_put(&more, &e);
    TuneEntry e2 = entry(50);
    tunedb_put(&more, &e2);
    ck_assert(tunedb_save(dbpath, &more));
    tunedb_free(&back);
    ck_assert(tunedb_load(dbpath, &back));
    ck_assert_int_eq(back.n, 11);
    ck_assert_int_eq(tunedb_find(&back, e.key, e.sig)->best.p[0], 2);
    ck_assert_ptr_eq(tunedb_find(&back, e.key, e.sig)->best.family, F("winograd"));
    /* the text: format 3, the family and four parameters per schedule */
    size_t len;
    char *text = read_text_file(dbpath, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert(!strncmp(text, "rnc-tune-db 3\n", 14));
    char line[200];
    snprintf(line, sizeof line, "\ne %016llx %s winograd 2 4 3 0 winograd 8 1 32 0 1.0300\n", (unsigned long long)e.key,
             e.sig);
    ck_assert_ptr_nonnull(strstr(text, line));
    free(text);
    tunedb_free(&db);
    tunedb_free(&more);
    tunedb_free(&back);
}
END_TEST

static void write_file(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(text, 1, len, f);
    fclose(f);
}

/* Loads path with stderr captured; returns the number of stderr lines. */
static int load_quietly(const char *path, TuneDB *db, bool *ok) {
    char errpath[320];
    snprintf(errpath, sizeof errpath, "%s/stderr", dir);
    fflush(stderr);
    int saved = dup(2), fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    *ok = tunedb_load(path, db);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t len;
    char *text = read_text_file(errpath, &len);
    int lines = 0;
    for (size_t i = 0; text && i < len; i++)
        lines += text[i] == '\n';
    free(text);
    return lines;
}

START_TEST(damaged_files_ignored) {
    TuneDB db = {0}, back;
    for (int i = 0; i < 5; i++) {
        TuneEntry e = entry(i);
        tunedb_put(&db, &e);
    }
    ck_assert(tunedb_save(dbpath, &db));
    size_t len;
    char *good = read_text_file(dbpath, &len);
    ck_assert_ptr_nonnull(good);
    char bad_path[320];
    snprintf(bad_path, sizeof bad_path, "%s/bad.db", dir);
    bool ok;
    /* truncated at every length: never a crash, never a partial read */
    for (size_t cut = 0; cut < len; cut += 7) {
        write_file(bad_path, good, cut);
        ck_assert_int_eq(load_quietly(bad_path, &back, &ok), 1);
        ck_assert(!ok);
        ck_assert_int_eq(back.n, 0);
    }
    /* one flipped character */
    char *flip = strdup(good);
    char *digit = strstr(flip, "\ne ") + 25;
    *digit = *digit == '7' ? '8' : '7';
    write_file(bad_path, flip, len);
    ck_assert_int_eq(load_quietly(bad_path, &back, &ok), 1);
    ck_assert(!ok && back.n == 0);
    /* binary garbage */
    char junk[300];
    for (int i = 0; i < 300; i++)
        junk[i] = (char)(i * 37 + 11);
    write_file(bad_path, junk, sizeof junk);
    ck_assert_int_eq(load_quietly(bad_path, &back, &ok), 1);
    ck_assert(!ok && back.n == 0);
    /* a foreign version */
    char *foreign = strdup(good);
    foreign[12] = '9';   /* "rnc-tune-db 9" */
    write_file(bad_path, foreign, len);
    ck_assert_int_eq(load_quietly(bad_path, &back, &ok), 1);
    ck_assert(!ok && back.n == 0);
    /* the schedule survives a damaged database: defaults, no crash */
    write_file(dbpath, good, len / 2);
    Graph g, d;
    compile_tiny(&g, false, dbpath);
    compile_tiny(&d, true, NULL);
    for (int i = 0; i < g.n_ops; i++)
        ck_assert(g.ops[i].dead || sched_equal(&g.sched[i], &d.sched[i]));
    /* and a save over a damaged file replaces it */
    ck_assert(tunedb_save(dbpath, &db));
    ck_assert(tunedb_load(dbpath, &back));
    ck_assert_int_eq(back.n, 5);
    tunedb_free(&back);
    free_graph(&g);
    free_graph(&d);
    free(good);
    free(flip);
    free(foreign);
    tunedb_free(&db);
}
END_TEST

/* A database file with a correct end line around `body`. */
static void write_db(const char *path, const char *head, const char *body, int count) {
    char text[4096];
    int n = snprintf(text, sizeof text, "%s%s", head, body);
    snprintf(text + n, sizeof text - n, "end %d %016llx\n", count, (unsigned long long)XXH3_64bits(text, (size_t)n));
    write_file(path, text, strlen(text));
}

static char *emit_text(const Graph *g);   /* the generated C (below) */

START_TEST(old_format_ignored) {
    const TuneContext *ctx = tune_context(target_host());
    const char *sig = "fwd_stats:b4:8x8x16:8x8x16:k3s1p1";
    char body[512], sub[320];
    bool ok;
    TuneDB back;
    snprintf(sub, sizeof sub, "%s/sub", dir);
    ck_assert_int_eq(mkdir(sub, 0777), 0);
    /* format 2 (algorithms, three parameters), well formed: reported, ignored, the build keeps its defaults */
    snprintf(body, sizeof body, "e %016llx %s direct 3 1 1 winograd 2 1 1 1.5000\n", (unsigned long long)tune_key(sig, ctx),
             sig);
    write_db(dbpath, "rnc-tune-db 2\n", body, 1);
    ck_assert_int_eq(load_quietly(dbpath, &back, &ok), 1);
    ck_assert(!ok && back.n == 0);
    Graph g, d;
    compile_tiny(&g, false, dbpath);
    compile_tiny(&d, true, NULL);
    for (int i = 0; i < g.n_ops; i++)
        ck_assert(g.ops[i].dead || sched_equal(&g.sched[i], &d.sched[i]));
    ck_assert_int_eq(g.tuned.status, TUNED_BAD_DB);   /* and the header says so, not "no database" */
    char *text = emit_text(&g);
    ck_assert_ptr_nonnull(strstr(text, " unreadable or of another format: ignored)\n"));
    free(text);
    free_graph(&g);
    free_graph(&d);
    /* a format-2 entry line in a format-3 file, an unknown family, a missing field, a field too many */
    const char *lines[] = {"e %016llx %s direct 3 1 1 winograd 2 1 1 1.5000\n",
                           "e %016llx %s fft 3 1 1 0 winograd 2 1 1 0 1.5000\n",
                           "e %016llx %s direct 3 1 1 0 winograd 2 1 1 1.5000\n",
                           "e %016llx %s direct 3 1 1 0 winograd 2 1 1 0 1.5000 7\n"};
    for (int k = 0; k < 4; k++) {
        snprintf(body, sizeof body, lines[k], (unsigned long long)tune_key(sig, ctx), sig);
        write_db(dbpath, "rnc-tune-db 3\n", body, 1);
        ck_assert_int_eq(load_quietly(dbpath, &back, &ok), 1);
        ck_assert(!ok && back.n == 0);
    }
    /* the same entry in format 3 is read */
    snprintf(body, sizeof body, "e %016llx %s direct 3 1 0 0 winograd 2 1 1 0 1.5000\n",
             (unsigned long long)tune_key(sig, ctx), sig);
    write_db(dbpath, "rnc-tune-db 3\n", body, 1);
    ck_assert_int_eq(load_quietly(dbpath, &back, &ok), 0);
    ck_assert(ok && back.n == 1);
    ck_assert_ptr_eq(back.e[0].best.family, F("direct"));
    ck_assert_ptr_eq(back.e[0].dflt.family, F("winograd"));
    tunedb_free(&back);
}
END_TEST

/* The emitted C of g, also left in DIR/emitted.c. */
static char *emit_text(const Graph *g) {
    char path[320];
    snprintf(path, sizeof path, "%s/emitted.c", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    emit_c(f, g);
    ck_assert_int_eq(fclose(f), 0);
    size_t len;
    char *text = read_text_file(path, &len);
    ck_assert_ptr_nonnull(text);
    return text;
}

static const Op *op_with_sig(const Graph *g, const char *sig) {
    for (int i = 0; i < g->n_ops; i++) {
        char s[96];
        if (tunable_sig(g, &g->ops[i], s, sizeof s) && !strcmp(s, sig))
            return &g->ops[i];
    }
    ck_abort_msg("no kernel %s", sig);
    return NULL;
}

static void put_entry(TuneDB *db, const char *sig, OpSchedule best) {
    TuneEntry e = {.key = tune_key(sig, tune_context(target_host())), .best = best, .dflt = sched("winograd", 1, 1, 1),
                   .speedup = 1.25};
    snprintf(e.sig, sizeof e.sig, "%s", sig);
    tunedb_put(db, &e);
}

/* An entry's schedule is used as it is, with its family: a direct entry
 * switches the kernel to direct, and is dropped where it is not a legal
 * direct schedule, even if it would be one for Winograd. */
START_TEST(entry_family_applied) {
    TuneDB db = {0};
    put_entry(&db, "fwd_stats:b4:8x8x16:8x8x16:k3s1p1", sched("direct", 3, 1, 1));        /* used: now direct */
    put_entry(&db, "bwd_weight:b4:8x8x16:8x8x16:k3s1p1", sched("direct", 16, 1, 8));      /* 16 > 8: not for direct */
    put_entry(&db, "bwd_weight:b4:4x4x32:4x4x32:k3s1p1", sched("winograd", 4, 1, 8));     /* used */
    put_entry(&db, "fwd_stats:b4:8x8x16:4x4x32:k3s2p1", sched("winograd", 2, 1, 1));      /* stride 2: no Winograd */
    put_entry(&db, "bwd_data:b4:8x8x16:8x8x16:k3s1p1", sched("winograd", 2, 1, 9));       /* 9 > 8 rows of tiles */
    ck_assert(tunedb_save(dbpath, &db));
    tunedb_free(&db);
    Graph t, d;
    compile_tiny(&t, false, dbpath);
    compile_tiny(&d, true, NULL);
    const char *kept[] = {"bwd_weight:b4:8x8x16:8x8x16:k3s1p1", "fwd_stats:b4:8x8x16:4x4x32:k3s2p1",
                          "bwd_data:b4:8x8x16:8x8x16:k3s1p1"};
    for (int i = 0; i < 3; i++)   /* not legal for the kernel: its default stays */
        ck_assert(sched_equal(sched_of(&t, op_with_sig(&t, kept[i])), sched_of(&d, op_with_sig(&d, kept[i]))));
    OpSchedule want = sched("direct", 3, 1, 1);
    ck_assert(sched_equal(sched_of(&t, op_with_sig(&t, "fwd_stats:b4:8x8x16:8x8x16:k3s1p1")), &want));
    want = sched("winograd", 4, 1, 8);
    ck_assert(sched_equal(sched_of(&t, op_with_sig(&t, "bwd_weight:b4:4x4x32:4x4x32:k3s1p1")), &want));
    ck_assert_uint_ge(t.thread_scratch_bytes, 6 * 8 * (32 + 16) * 4);   /* the plan fits its blocks */
    char *text = emit_text(&t), *dtext = emit_text(&d);
    ck_assert_ptr_nonnull(strstr(text, " * Tuned: 2 of 13 kernels from "));
    ck_assert_ptr_nonnull(strstr(text, " *   fwd_stats:b4:8x8x16:8x8x16:k3s1p1: direct pixels 3, vectors 1, rows 1\n"
                                       " *     (default winograd tiles 2, vectors 1, tile_rows 1), 1.25x\n"));
    ck_assert_ptr_nonnull(strstr(text, " *   bwd_weight:b4:4x4x32:4x4x32:k3s1p1: winograd in_channels 4, vectors 1, tiles 8\n"
                                       " *     (default winograd in_channels 16, vectors 1, tiles 224), 1.25x\n"));
    /* the kernel the build calls: direct instead of Winograd */
    ck_assert_ptr_nonnull(strstr(dtext, "conv3x3s1_8x8x16_16_fwd_stats_winograd_2x1x1("));
    ck_assert_ptr_null(strstr(text, "conv3x3s1_8x8x16_16_fwd_stats_winograd_"));
    ck_assert_ptr_nonnull(strstr(text, "conv3x3s1_8x8x16_16_fwd_stats_direct_3x1x1("));
    free(text);
    free(dtext);
    free_graph(&t);
    free_graph(&d);
}
END_TEST

/* A database tuned on another machine (another CPU, or the same CPU with
 * another C compiler) has keys this one never computes: a build uses none of
 * its entries and says so; the same entries keyed for this machine are used. */
START_TEST(entries_of_another_machine_unused) {
    const char *sig = "fwd_stats:b4:8x8x16:8x8x16:k3s1p1";
    TuneContext other_cpu = base_ctx(), other_cc = *tune_context(target_host());
    snprintf(other_cc.cc, sizeof other_cc.cc, "clang-99 (another compiler)");
    const TuneContext *ctxs[2] = {&other_cpu, &other_cc};
    Graph d;
    compile_tiny(&d, true, NULL);
    for (int c = 0; c < 2; c++) {
        TuneDB db = {0};
        TuneEntry e = {.key = tune_key(sig, ctxs[c]), .best = sched("direct", 3, 1, 1), .speedup = 1.5};
        e.dflt = *sched_of(&d, op_with_sig(&d, sig));
        snprintf(e.sig, sizeof e.sig, "%s", sig);
        tunedb_put(&db, &e);
        remove(dbpath);
        ck_assert(tunedb_save(dbpath, &db));
        Graph t;
        compile_tiny(&t, false, dbpath);
        ck_assert_int_eq(t.tuned.status, TUNED_NO_ENTRIES);
        ck_assert(sched_equal(sched_of(&t, op_with_sig(&t, sig)), sched_of(&d, op_with_sig(&d, sig))));
        char *text = emit_text(&t);
        ck_assert_ptr_nonnull(strstr(text, " * Tuned: none (no entries for this machine in "));
        free(text);
        free_graph(&t);
        /* keyed for this machine, the same entry is used */
        db.e[0].key = tune_key(sig, tune_context(target_host()));
        remove(dbpath);
        ck_assert(tunedb_save(dbpath, &db));
        compile_tiny(&t, false, dbpath);
        ck_assert_int_eq(t.tuned.status, TUNED_USED);
        OpSchedule want = sched("direct", 3, 1, 1);
        ck_assert(sched_equal(sched_of(&t, op_with_sig(&t, sig)), &want));
        free_graph(&t);
        tunedb_free(&db);
    }
    free_graph(&d);
}
END_TEST

/* A bf16 build's kernels are other kernels: their signatures say so, so an
 * fp32 build's tuning is never applied to them (nor theirs to fp32). */
START_TEST(bf16_kernels_tuned_apart) {
    const char *sig = "fwd_stats:b4:8x8x16:8x8x16:k3s1p1";
    Graph f, b;
    ScheduleOptions fo = {.no_tune = true}, bo = {.no_tune = true, .precision = "bf16"};
    ck_assert(compile_spec(SOURCE_DIR "/tests/specs/tiny_a.spec", 0, &fo, &f));
    ck_assert(compile_spec(SOURCE_DIR "/tests/specs/tiny_a.spec", 0, &bo, &b));
    op_with_sig(&f, sig);
    op_with_sig(&b, "fwd_stats:b4:8x8x16:8x8x16:k3s1p1:bf16");
    int bf16_sigs = 0, fp32_sigs = 0;
    char s[96];
    for (int i = 0; i < b.n_ops; i++)
        bf16_sigs += tunable_sig(&b, &b.ops[i], s, sizeof s) && strstr(s, ":bf16");
    for (int i = 0; i < f.n_ops; i++)
        fp32_sigs += tunable_sig(&f, &f.ops[i], s, sizeof s) && strstr(s, ":bf16");
    ck_assert_int_gt(bf16_sigs, 0);
    ck_assert_int_eq(fp32_sigs, 0);
    /* an fp32 entry: used by the fp32 build, not by the bf16 one */
    TuneDB db = {0};
    put_entry(&db, sig, sched("direct", 3, 1, 1));
    remove(dbpath);
    ck_assert(tunedb_save(dbpath, &db));
    tunedb_free(&db);
    Graph tf, tb;
    ScheduleOptions tfo = {.tune_db = dbpath}, tbo = {.tune_db = dbpath, .precision = "bf16"};
    ck_assert(compile_spec(SOURCE_DIR "/tests/specs/tiny_a.spec", 0, &tfo, &tf));
    ck_assert(compile_spec(SOURCE_DIR "/tests/specs/tiny_a.spec", 0, &tbo, &tb));
    ck_assert_int_eq(tf.tuned.status, TUNED_USED);
    ck_assert_int_eq(tb.tuned.status, TUNED_NO_ENTRIES);
    OpSchedule want = sched("direct", 3, 1, 1);
    ck_assert(sched_equal(sched_of(&tf, op_with_sig(&tf, sig)), &want));
    ck_assert(sched_equal(sched_of(&tb, op_with_sig(&tb, "fwd_stats:b4:8x8x16:8x8x16:k3s1p1:bf16")),
                          sched_of(&b, op_with_sig(&b, "fwd_stats:b4:8x8x16:8x8x16:k3s1p1:bf16"))));
    free_graph(&tf);
    free_graph(&tb);
    free_graph(&f);
    free_graph(&b);
}
END_TEST

/* A lock file that cannot be opened (here: a folder of that name) does not
 * stop a save; the entries are there afterwards. */
START_TEST(save_without_lock) {
    char lock[320];
    snprintf(lock, sizeof lock, "%s.lock", dbpath);
    char sub[320];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0777);   /* the database's folder (it may be there already) */
    remove(dbpath);
    remove(lock);
    ck_assert_int_eq(mkdir(lock, 0777), 0);
    TuneDB db = {0}, back;
    put_entry(&db, "fwd_stats:b4:8x8x16:8x8x16:k3s1p1", sched("direct", 3, 1, 1));
    ck_assert(tunedb_save(dbpath, &db));
    ck_assert(tunedb_load(dbpath, &back));
    ck_assert_int_eq(back.n, 1);
    ck_assert_str_eq(back.e[0].sig, "fwd_stats:b4:8x8x16:8x8x16:k3s1p1");
    tunedb_free(&db);
    tunedb_free(&back);
    ck_assert_int_eq(rmdir(lock), 0);
}
END_TEST

START_TEST(concurrent_writers) {
    enum { PER = 25 };
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        ck_assert_int_ge(kids[k], 0);
        if (kids[k] == 0) {
            for (int i = 0; i < PER; i++) {
                TuneDB db = {0};
                TuneEntry e = entry(k * 1000 + i);
                tunedb_put(&db, &e);
                if (!tunedb_save(dbpath, &db))
                    _exit(1);
                tunedb_free(&db);
            }
            _exit(0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int st;
        ck_assert_int_eq(waitpid(kids[k], &st, 0), kids[k]);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    TuneDB back;
    ck_assert(tunedb_load(dbpath, &back));
    ck_assert_int_eq(back.n, 2 * PER);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < PER; i++) {
            TuneEntry e = entry(k * 1000 + i);
            ck_assert_ptr_nonnull(tunedb_find(&back, e.key, e.sig));
        }
    tunedb_free(&back);
}
END_TEST

/* ---- the search, with a fake timer ---------------------------------------- */

static int fake_calls, fake_points;
static const char *fake_prefer;       /* the family the fake machine runs faster */
/* The first two points measured of each kernel. */
typedef struct {
    char sig[96];
    OpSchedule s[2];
    int n;
} FirstPoints;
static FirstPoints fake_first[32];
static int fake_nfirst;

static void record_first(const Graph *g, const TunePoint *p) {
    char sig[96];
    ck_assert(tunable_sig(g, p->op, sig, sizeof sig));
    int k = 0;
    while (k < fake_nfirst && strcmp(fake_first[k].sig, sig))
        k++;
    if (k == fake_nfirst) {
        ck_assert_int_lt(fake_nfirst, 32);
        snprintf(fake_first[fake_nfirst++].sig, 96, "%s", sig);
    }
    FirstPoints *f = &fake_first[k];
    if (f->n < 2)
        f->s[f->n++] = p->s;
}

/* Best: fake_prefer's family, first parameter 2 (input channels per tile
 * 1 for weight gradients), 1 vector, the blocks its default has.  The
 * point 1, 1 would be fastest but computes wrong results (not weight
 * gradients). */
static bool fake_measure(void *ud, const Graph *g, const TunePoint *pts, int n, double *times) {
    (void)ud;
    fake_calls++;
    for (int i = 0; i < n; i++)
        record_first(g, &pts[i]);
    for (int i = 0; i < n; i++) {
        const TunePoint *p = &pts[i];
        ck_assert(family_legal(p->s.family, g, p->op, p->s.p));   /* illegal points never measured */
        fake_points++;
        OpSchedule d;
        ck_assert(family_default(p->s.family, g, p->op, &d));
        bool bw = p->op->kind == OP_CONV_BWD_WEIGHT;
        int blocks = family_params(p->s.family, p->op) > 2;   /* the third parameter: a cache block */
        int best = bw ? 1 : 2;
        if (!bw && p->s.p[0] == 1 && p->s.p[1] == 1)
            times[i] = -1;   /* "wrong output" */
        else
            times[i] = 1e-3 * (!strcmp(p->s.family->name, fake_prefer) ? 1 : 3) *
                       (1 + abs(p->s.p[0] - best) + 2 * abs(p->s.p[1] - 1) + (blocks ? (p->s.p[2] != d.p[2]) : 0));
    }
    return true;
}

static void fake_reset(const char *prefer) {
    fake_calls = fake_points = fake_nfirst = 0;
    fake_prefer = prefer;
}

/* How often s occurs in text. */
static int occurrences(const char *text, const char *s) {
    int n = 0;
    for (size_t at = 0; strstr(text + at, s); n++)
        at = (size_t)(strstr(text + at, s) - text) + 1;
    return n;
}

START_TEST(fake_search_picks_best) {
    Graph g;
    compile_tiny(&g, true, NULL);
    fake_reset("direct");   /* the default's family is Winograd where it applies */
    TuneOptions o = {.budget_s = 3600, .db_path = dbpath, .quiet = true, .skip_step_check = true,
                     .measure = fake_measure};
    ck_assert_int_eq(tune_graph(&g, &o), 13);
    ck_assert_int_gt(fake_points, 13 * 3);
    /* search order: each kernel's default first, then the other family's default */
    ck_assert_int_eq(fake_nfirst, 13);
    int wg_kernels = 0;
    for (int k = 0; k < fake_nfirst; k++) {
        const FirstPoints *f = &fake_first[k];
        const Op *op = op_with_sig(&g, f->sig);
        ck_assert_int_eq(f->n, 2);
        ck_assert(sched_equal(&f->s[0], sched_of(&g, op)));
        if (!F("winograd")->applies(&g, op)) {
            ck_assert(f->s[0].family == F("direct") && f->s[1].family == F("direct"));
            continue;
        }
        OpSchedule d;
        ck_assert(family_default(F("direct"), &g, op, &d));
        ck_assert(sched_of(&g, op)->family == F("winograd") && sched_equal(&f->s[1], &d));
        wg_kernels++;
    }
    ck_assert_int_eq(wg_kernels, 8);
    TuneDB db;
    ck_assert(tunedb_load(dbpath, &db));
    ck_assert_int_eq(db.n, 13);
    for (int i = 0; i < db.n; i++) {
        const TuneEntry *e = &db.e[i];
        const Op *op = op_with_sig(&g, e->sig);
        const OpSchedule *def = sched_of(&g, op);
        bool bw = !strncmp(e->sig, "bwd_weight", 10);
        ck_assert_ptr_eq(e->best.family, F("direct"));
        ck_assert(sched_equal(&e->dflt, def));
        ck_assert_int_eq(e->best.p[0], bw ? 1 : 2);
        ck_assert_int_eq(e->best.p[1], 1);
        OpSchedule d;
        family_default(F("direct"), &g, op, &d);
        if (bw)
            ck_assert_int_eq(e->best.p[2], d.p[2]);   /* the direct default's blocks */
        ck_assert(e->speedup >= 1.0);
        if (def->family == F("winograd"))
            ck_assert_double_eq_tol(e->speedup, 3.0 * (1 + abs(def->p[0] - (bw ? 1 : 2)) + 2 * abs(def->p[1] - 1)), 1e-3);
    }
    tunedb_free(&db);
    /* a build now uses it (direct kernels), and says so; --no-tune does not */
    Graph t, n;
    compile_tiny(&t, false, dbpath);
    compile_tiny(&n, true, dbpath);
    for (int i = 0; i < t.n_ops; i++) {
        char s[96];
        if (!tunable_sig(&t, &t.ops[i], s, sizeof s))
            continue;
        ck_assert_ptr_eq(t.sched[i].family, F("direct"));
        ck_assert_int_eq(t.sched[i].p[0], t.ops[i].kind == OP_CONV_BWD_WEIGHT ? 1 : 2);
        ck_assert_int_eq(t.sched[i].p[1], 1);
        ck_assert(sched_equal(&n.sched[i], &g.sched[i]));
    }
    char *text = emit_text(&t);
    ck_assert_ptr_nonnull(strstr(text, " * Tuned: 13 of 13 kernels from "));
    ck_assert_ptr_nonnull(strstr(text, " *   fwd_stats:b4:8x8x16:8x8x16:k3s1p1: direct pixels 2, vectors 1, rows 1\n"
                                       " *     (default winograd tiles 2, vectors 1, tile_rows 1), 3.00x\n"));
    ck_assert_ptr_nonnull(strstr(text, " *   fwd_stats:b4:8x8x3:8x8x16:k3s1p1: direct pixels 2, vectors 1, rows 1\n"
                                       " *     (default direct pixels 6, vectors 1, rows 1)"));
    ck_assert_int_eq(occurrences(text, "_winograd_"), 0);   /* no Winograd kernel left */
    char *ntext = emit_text(&n);
    ck_assert_ptr_nonnull(strstr(ntext, " * Tuned: none (--no-tune)"));
    ck_assert_int_gt(occurrences(ntext, "_winograd_"), 0);
    free(text);
    free(ntext);
    /* identical signatures are tuned once: a second run finds nothing to do */
    int calls = fake_calls;
    ck_assert_int_eq(tune_graph(&g, &o), 0);
    ck_assert_int_eq(fake_calls, calls);
    free_graph(&g);
    free_graph(&t);
    free_graph(&n);
}
END_TEST

/* Not on a terminal (a log, CI), the progress goes out as plain lines, as
 * training prints them: no \r bar. */
START_TEST(progress_plain_when_not_a_tty) {
    Graph g;
    compile_tiny(&g, true, NULL);
    fake_reset("direct");
    char log[] = "/tmp/rnc-test-tune-progress-XXXXXX";
    fflush(stderr);
    int saved = dup(2), fd = mkstemp(log);
    ck_assert_int_ge(fd, 0);
    dup2(fd, 2);
    close(fd);
    TuneOptions o = {.budget_s = 3600, .db_path = dbpath, .skip_step_check = true, .measure = fake_measure};
    int n = tune_graph(&g, &o);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ck_assert_int_eq(n, 13);
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    char buf[65536];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    buf[len] = 0;
    fclose(f);
    unlink(log);
    ck_assert_msg(!strchr(buf, '\r'), "a \\r bar in non-terminal output:\n%s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "rnc tune: layer 0/"));
    ck_assert_ptr_nonnull(strstr(buf, "kernels done\n"));
    ck_assert_ptr_nonnull(strstr(buf, "rnc tune: 13 kernel entries written to "));
    ck_assert_ptr_null(strstr(buf, "\n\n"));   /* no blank lines where a bar would have ended */
    free_graph(&g);
}
END_TEST

/* The other direction: kernels whose default is direct (forced here), on a
 * machine where Winograd is faster, record Winograd points; a build uses
 * them (Winograd kernels with those tiles). */
START_TEST(fake_search_picks_winograd) {
    Graph g;
    compile_tiny(&g, true, NULL);
    for (int i = 0; i < g.n_ops; i++) {
        char s[96];
        if (tunable_sig(&g, &g.ops[i], s, sizeof s))
            ck_assert(family_default(F("direct"), &g, &g.ops[i], &g.sched[i]));
    }
    fake_reset("winograd");
    TuneOptions o = {.budget_s = 3600, .db_path = dbpath, .quiet = true, .skip_step_check = true,
                     .measure = fake_measure};
    ck_assert_int_eq(tune_graph(&g, &o), 13);
    TuneDB db;
    ck_assert(tunedb_load(dbpath, &db));
    int wg = 0;
    for (int i = 0; i < db.n; i++) {
        const TuneEntry *e = &db.e[i];
        const Op *op = op_with_sig(&g, e->sig);
        ck_assert_ptr_eq(e->dflt.family, F("direct"));
        ck_assert_ptr_eq(e->best.family, F("winograd")->applies(&g, op) ? F("winograd") : F("direct"));
        if (e->best.family != F("winograd"))
            continue;
        wg++;
        OpSchedule w;
        ck_assert(family_default(F("winograd"), &g, op, &w));
        ck_assert(family_legal(F("winograd"), &g, op, e->best.p));
        ck_assert_int_eq(e->best.p[1], 1);
        /* the fake best (2 tiles, or 1 input channel) with the default blocks, where a
         * block has 2 tiles (with one tile per block, 2 tiles cost 2 rows) */
        const Tensor *y = &g.tensors[op->kind == OP_CONV_BWD_DATA ? op->x : op->y];
        if (op->kind == OP_CONV_BWD_WEIGHT || w.p[2] * ((y->w + 3) / 4) >= 2)
            ck_assert(e->best.p[0] == (op->kind == OP_CONV_BWD_WEIGHT ? 1 : 2) && e->best.p[2] == w.p[2]);
    }
    ck_assert_int_eq(wg, 8);
    tunedb_free(&db);
    Graph t;
    compile_tiny(&t, false, dbpath);
    const OpSchedule *s = sched_of(&t, op_with_sig(&t, "bwd_weight:b4:4x4x32:4x4x32:k3s1p1"));
    ck_assert(s->family == F("winograd") && s->p[0] == 1 && s->p[1] == 1);
    char *text = emit_text(&t);
    ck_assert_ptr_nonnull(strstr(text, " *   bwd_weight:b4:4x4x32:4x4x32:k3s1p1: winograd in_channels 1, vectors 1, tiles 224\n"
                                       " *     (default winograd in_channels 16, vectors 1, tiles 224)"));
    ck_assert_ptr_nonnull(strstr(text, "conv3x3s1_4x4x32_32_bwd_weight_winograd_1x1x224("));
    free(text);
    free_graph(&g);
    free_graph(&t);
}
END_TEST

/* ---- a real tuned build ----------------------------------------------------- */

/* ---- the step check's verdict ---------------------------------------------- */

/* train_step_sites gives the ops of the emitted sites[] table, in order,
 * and each RNC_TIMED(prof, i, kernel(...)) call is the kernel sites[i]
 * names: for tiny_a, and for ResNet-56, whose calls are split into segment
 * functions. */
static void check_sites(const char *spec) {
    Graph g;
    ScheduleOptions so = {.no_tune = true};
    ck_assert(compile_spec(spec, 0, &so, &g));
    int *ops = calloc(g.n_ops + 1, sizeof(int));
    int n = train_step_sites(&g, ops);
    char *text = emit_text(&g);
    char count[64];
    snprintf(count, sizeof count, ".n_sites = %d,", n);
    ck_assert_ptr_nonnull(strstr(text, count));
    const char *p = strstr(text, "static const char *const sites[] = {\n");
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < n; i++) {
        char want[200];
        snprintf(want, sizeof want, "\n    \"%s: %s ", g.ops[ops[i]].name, op_kind_name(g.ops[ops[i]].kind));
        p = strstr(p, "\n    \"");
        ck_assert_ptr_nonnull(p);
        ck_assert_msg(!strncmp(p, want, strlen(want)), "%s: site %d is not %s", spec, i, want + 6);
        /* the timed call with index i calls the kernel the name ends with */
        const char *kernel = p + strlen(want), *end = strchr(kernel, '"');
        char call[200];
        snprintf(call, sizeof call, "RNC_TIMED(prof, %d, %.*s(", i, (int)(end - kernel), kernel);
        ck_assert_msg(strstr(text, call) != NULL, "%s: no %s", spec, call);
        p++;
    }
    const char *end = strstr(p, "\n};"), *more = strstr(p, "\n    \"");
    ck_assert_ptr_nonnull(end);
    ck_assert(!more || more > end);   /* no more sites */
    if (g.n_ops > 200)
        ck_assert_ptr_nonnull(strstr(text, "backward_1(params"));   /* the segmented path was taken */
    free(text);
    free(ops);
    free_graph(&g);
}

START_TEST(step_sites_match_emitted) {
    check_sites(SOURCE_DIR "/tests/specs/tiny_a.spec");
    check_sites(SOURCE_DIR "/specs/resnet56.spec");
}
END_TEST

/* Entries for the forward kernels of tiny_a's two Winograd layer shapes,
 * both off their defaults; returns the sites' op indices. */
static int two_tuned_entries(const Graph *g, TuneDB *found, char sigs[2][96], int **ops) {
    *ops = calloc(g->n_ops + 1, sizeof(int));
    int n = train_step_sites(g, *ops), have = 0;
    for (int i = 0; i < n && have < 2; i++) {
        const Op *op = &g->ops[(*ops)[i]];
        char sig[96];
        if (op->kind != OP_CONV || !tunable_sig(g, op, sig, sizeof sig) || (have && !strcmp(sig, sigs[0])))
            continue;
        snprintf(sigs[have], 96, "%s", sig);
        TuneEntry e = {.key = (uint64_t)have + 1, .best = *sched_of(g, op), .dflt = *sched_of(g, op), .speedup = 1.5};
        e.best.p[0]++;
        snprintf(e.sig, sizeof e.sig, "%s", sig);
        tunedb_put(found, &e);
        have++;
    }
    ck_assert_int_eq(have, 2);
    return n;
}

static const TuneEntry *entry_for(const TuneDB *db, const char *sig) {
    for (int i = 0; i < db->n; i++)
        if (!strcmp(db->e[i].sig, sig))
            return &db->e[i];
    return NULL;
}

/* A kernel slower inside the step than its default goes back to the
 * default; the others stay if the step, without it, is 1% faster. */
START_TEST(step_check_per_kernel) {
    Graph g;
    compile_tiny(&g, true, NULL);
    TuneDB found = {0};
    char sigs[2][96];
    int *ops, n = two_tuned_entries(&g, &found, sigs, &ops);
    double *def = calloc(n, sizeof(double)), *tuned = calloc(n, sizeof(double)), td = 0, tt = 0;
    for (int i = 0; i < n; i++) {   /* kernel 0: 2 ms -> 1 ms per call; kernel 1: 1 ms -> 1.5 ms */
        char sig[96];
        bool conv = tunable_sig(&g, &g.ops[ops[i]], sig, sizeof sig);
        def[i] = conv && !strcmp(sig, sigs[0]) ? 2e-3 : 1e-3;
        tuned[i] = conv && !strcmp(sig, sigs[0]) ? 1e-3 : conv && !strcmp(sig, sigs[1]) ? 1.5e-3 : 1e-3;
        td += def[i];
        tt += tuned[i];
    }
    ck_assert_int_eq(tune_confirm_in_step(&g, &found, def, tuned, n, td, tt), 1);
    const TuneEntry *a = entry_for(&found, sigs[0]), *b = entry_for(&found, sigs[1]);
    ck_assert(a && b);
    ck_assert_int_eq(a->best.p[0], a->dflt.p[0] + 1);   /* kept */
    ck_assert(sched_equal(&b->best, &b->dflt));         /* back to the default */
    ck_assert_double_eq(b->speedup, 1.0);

    /* the same, but the tuned step slower for the other calls: nothing kept */
    tunedb_free(&found);
    found = (TuneDB){0};
    free(ops);
    two_tuned_entries(&g, &found, sigs, &ops);
    ck_assert_int_eq(tune_confirm_in_step(&g, &found, def, tuned, n, td, td * 1.5), 0);
    for (int i = 0; i < found.n; i++)
        ck_assert(sched_equal(&found.e[i].best, &found.e[i].dflt));

    /* timings of another graph (a different number of calls): nothing kept */
    tunedb_free(&found);
    found = (TuneDB){0};
    free(ops);
    two_tuned_entries(&g, &found, sigs, &ops);
    ck_assert_int_eq(tune_confirm_in_step(&g, &found, def, tuned, n - 1, td, tt), 0);
    ck_assert(sched_equal(&entry_for(&found, sigs[0])->best, &entry_for(&found, sigs[0])->dflt));
    tunedb_free(&found);
    free(ops);
    free(def);
    free(tuned);
    free_graph(&g);
}
END_TEST

START_TEST(real_tuned_build_passes_golden) {
    setenv("RNC_INCLUDE_DIR", SOURCE_DIR "/include", 1);
    Graph g;
    compile_tiny(&g, true, NULL);
    TuneOptions o = {.budget_s = 20, .db_path = dbpath, .quiet = true, .skip_step_check = true};
    ck_assert_int_eq(tune_graph(&g, &o), 13);
    free_graph(&g);
    Graph t;
    compile_tiny(&t, false, dbpath);
    char *text = emit_text(&t), net[320];   /* the network's C, in net */
    snprintf(net, sizeof net, "%s/emitted.c", dir);
    free_graph(&t);
    ck_assert_ptr_nonnull(strstr(text, " * Tuned: 13 of 13 kernels from "));
    free(text);
    /* the golden test (PyTorch's numbers) against the tuned network */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cc -O2 -march=native -fopenmp -w -I%s/include -I%s/tests -DRNC_NO_MAIN -DMODEL=rnc_model_tiny_a "
             "-DGOLDEN='\"%s/tests/golden/tiny_a.golden\"' %s %s/tests/test_golden.c %s/tests/golden.c -o %s/golden "
             "$(pkg-config --cflags --libs check) -lm && %s/golden > %s/golden.log 2>&1 || (cat %s/golden.log; exit 1)",
             SOURCE_DIR, SOURCE_DIR, SOURCE_DIR, net, SOURCE_DIR, SOURCE_DIR, dir, dir, dir, dir);
    ck_assert_int_eq(sh(cmd), 0);
}
END_TEST

/* `test_tune bf16dot`: only the bf16 dot-product kernels' test (exit 77,
 * skipped, on a CPU without them); `test_tune amx`: the AMX kernels';
 * otherwise everything else. */
int main(int argc, char **argv) {
    /* skipped before the suite exists: nothing allocated for LeakSanitizer to report */
    const bool bf16dot = argc > 1 && !strcmp(argv[1], "bf16dot"), amx = argc > 1 && !strcmp(argv[1], "amx");
    const Target *h = target_host();
    if (bf16dot && !h->bf16_dot) {
        printf("skipped: this CPU has no bf16 dot products (AVX512-BF16)\n");
        return 77;
    }
    amx_target = h->amx ? "amx" : !strcmp(h->name, "avx512") ? "amx-emulated" : NULL;
    if (amx_target && getenv("RNC_TEST_AMX_EMULATED"))   /* the C model, on a CPU with AMX too */
        amx_target = "amx-emulated";
    if (amx && !amx_target) {
        printf("skipped: this CPU has neither AMX nor the AVX-512 the emulated tiles' code needs\n");
        return 77;
    }
    Suite *s = suite_create("tune");
    TCase *tc = tcase_create("tune");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    if (bf16dot) {
        tcase_add_test(tc, bf16dot_points_compute_correctly);
        suite_add_tcase(s, tc);
        return run_suite(s);
    }
    if (amx) {
        if (!h->amx)
            printf("this CPU has no AMX: the tile code runs on the amx-emulated target's C model\n");
        tcase_set_timeout(tc, 620);   /* tests/tune.cmake: 210 s alone on an Ice Lake Xeon (no AMX) */
        tcase_add_test(tc, amx_points_compute_correctly);
        suite_add_tcase(s, tc);
        return run_suite(s);
    }
    tcase_add_test(tc, key_stability);
    tcase_add_test(tc, legality);
    tcase_add_test(tc, defaults_are_legal_at_every_width);
    tcase_add_test(tc, names_carry_the_schedule);
    tcase_add_test(tc, legal_points_compute_correctly);
    tcase_add_test(tc, roundtrip);
    tcase_add_test(tc, damaged_files_ignored);
    tcase_add_test(tc, concurrent_writers);
    tcase_add_test(tc, old_format_ignored);
    tcase_add_test(tc, entry_family_applied);
    tcase_add_test(tc, entries_of_another_machine_unused);
    tcase_add_test(tc, bf16_kernels_tuned_apart);
    tcase_add_test(tc, save_without_lock);
    tcase_add_test(tc, fake_search_picks_best);
    tcase_add_test(tc, fake_search_picks_winograd);
    tcase_add_test(tc, progress_plain_when_not_a_tty);
    tcase_add_test(tc, step_sites_match_emitted);
    tcase_add_test(tc, step_check_per_kernel);
    tcase_add_test(tc, real_tuned_build_passes_golden);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
