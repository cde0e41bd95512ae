/* test_tune.c - autotuning: keys, the database file, the search, and a real
 * tuned build (compiler/tune.c, compiler/tunedb.c, docs/tuning.md). */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "rnc.h"

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
        if (!conv_kernel_sig(&g, &g.ops[i], s, sizeof s))
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

START_TEST(legality) {
    Graph g;
    compile_tiny(&g, true, NULL);
    for (int i = 0; i < g.n_ops; i++) {
        const Op *op = &g.ops[i];
        char s[96];
        if (!conv_kernel_sig(&g, op, s, sizeof s))
            continue;
        /* the default is legal */
        ck_assert(schedule_point_legal(&g, op, op->tile_w, op->tile_c, op->chunks));
        ck_assert(!schedule_point_legal(&g, op, 0, 1, 1));
        ck_assert(!schedule_point_legal(&g, op, 1, 0, 1));
        ck_assert(!schedule_point_legal(&g, op, 1, 5, 1));
        const Tensor *x = &g.tensors[op->x], *y = &g.tensors[op->y];
        int ch = op->kind == OP_CONV_BWD_DATA ? x->c : y->c;
        ck_assert(!schedule_point_legal(&g, op, 1, 3, 1) || (ch / 16) % 3 == 0);
        if (op->kind == OP_CONV_BWD_WEIGHT) {
            ck_assert(!schedule_point_legal(&g, op, 1, 1, 0));
            ck_assert(!schedule_point_legal(&g, op, 9, 1, 1));
            if (x->c == 3)
                ck_assert(!schedule_point_legal(&g, op, 2, 1, 1));   /* does not divide IC */
        } else {
            ck_assert(!schedule_point_legal(&g, op, 33, 1, 1));
            ck_assert(!schedule_point_legal(&g, op, 15, 2, 1));   /* 30 accumulators */
        }
    }
    free_graph(&g);
}
END_TEST

/* ---- the database ---------------------------------------------------------- */

static TuneEntry entry(int i) {
    TuneEntry e = {.key = 0x1234567890abcdefULL + (uint64_t)i * 7919, .tw = 1 + i % 28, .cv = 1 + i % 4,
                   .chunks = i, .dtw = 8, .dcv = 1, .dchunks = 32, .speedup = 1.0 + i / 100.0};
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
        ck_assert_int_eq(f->tw, e.tw);
        ck_assert_int_eq(f->cv, e.cv);
        ck_assert_int_eq(f->chunks, e.chunks);
        ck_assert_int_eq(f->dchunks, e.dchunks);
        ck_assert_double_eq_tol(f->speedup, e.speedup, 1e-4);
        ck_assert_ptr_null(tunedb_find(&back, e.key, "other"));   /* the signature must match too */
    }
    /* saving merges with what is on disk; the same key is replaced */
    TuneDB more = {0};
    TuneEntry e = entry(3);
    e.tw = 2;
    tunedb_put(&more, &e);
    TuneEntry e2 = entry(50);
    tunedb_put(&more, &e2);
    ck_assert(tunedb_save(dbpath, &more));
    tunedb_free(&back);
    ck_assert(tunedb_load(dbpath, &back));
    ck_assert_int_eq(back.n, 11);
    ck_assert_int_eq(tunedb_find(&back, e.key, e.sig)->tw, 2);
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
        ck_assert(g.ops[i].tile_w == d.ops[i].tile_w && g.ops[i].tile_c == d.ops[i].tile_c);
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

/* Best: tw 2, cv 1 (input channels per tile 1 for weight gradients).  The
 * point tw 1, cv 1 would be fastest but computes wrong results. */
static bool fake_measure(void *ud, const Graph *g, const TunePoint *pts, int n, double *times) {
    (void)ud;
    fake_calls++;
    for (int i = 0; i < n; i++) {
        const TunePoint *p = &pts[i];
        ck_assert(schedule_point_legal(g, p->op, p->tw, p->cv, p->chunks));   /* illegal points never measured */
        fake_points++;
        int best_tw = p->op->kind == OP_CONV_BWD_WEIGHT ? 1 : 2;
        if (p->op->kind != OP_CONV_BWD_WEIGHT && p->tw == 1 && p->cv == 1)
            times[i] = -1;   /* "wrong output" */
        else
            times[i] = 1e-3 * (1 + abs(p->tw - best_tw) + 2 * abs(p->cv - 1) +
                               (p->op->kind == OP_CONV_BWD_WEIGHT ? (p->chunks != p->op->chunks) : 0));
    }
    return true;
}

START_TEST(fake_search_picks_best) {
    Graph g;
    compile_tiny(&g, true, NULL);
    TuneOptions o = {.budget_s = 3600, .db_path = dbpath, .quiet = true, .skip_step_check = true,
                     .measure = fake_measure};
    ck_assert_int_eq(tune_graph(&g, &o), 13);
    ck_assert_int_gt(fake_points, 13 * 3);
    TuneDB db;
    ck_assert(tunedb_load(dbpath, &db));
    ck_assert_int_eq(db.n, 13);
    for (int i = 0; i < db.n; i++) {
        const TuneEntry *e = &db.e[i];
        bool bw = !strncmp(e->sig, "bwd_weight", 10);
        ck_assert_int_eq(e->tw, bw ? 1 : 2);
        ck_assert_int_eq(e->cv, 1);
        if (bw)
            ck_assert_int_eq(e->chunks, e->dchunks);
        ck_assert(e->speedup >= 1.0);
    }
    tunedb_free(&db);
    /* a build now uses it, and says so; --no-tune does not */
    Graph t, n;
    compile_tiny(&t, false, dbpath);
    compile_tiny(&n, true, dbpath);
    for (int i = 0; i < t.n_ops; i++) {
        char s[96];
        if (!conv_kernel_sig(&t, &t.ops[i], s, sizeof s))
            continue;
        ck_assert_int_eq(t.ops[i].tile_w, t.ops[i].kind == OP_CONV_BWD_WEIGHT ? 1 : 2);
        ck_assert_int_eq(t.ops[i].tile_c, 1);
        ck_assert_int_eq(n.ops[i].tile_w, g.ops[i].tile_w);
    }
    char *text;
    size_t len;
    FILE *m = open_memstream(&text, &len);
    emit_c(m, &t);
    fclose(m);
    ck_assert_ptr_nonnull(strstr(text, " * Tuned: 13 of 13 kernels from "));
    ck_assert_ptr_nonnull(strstr(text, " *   fwd_stats:b4:8x8x16:8x8x16:k3s1p1: 2x1 (default 6x1)"));
    free(text);
    m = open_memstream(&text, &len);
    emit_c(m, &n);
    fclose(m);
    ck_assert_ptr_nonnull(strstr(text, " * Tuned: none (--no-tune)"));
    free(text);
    /* identical signatures are tuned once: a second run finds nothing to do */
    int calls = fake_calls;
    ck_assert_int_eq(tune_graph(&g, &o), 0);
    ck_assert_int_eq(fake_calls, calls);
    free_graph(&g);
    free_graph(&t);
    free_graph(&n);
}
END_TEST

/* ---- a real tuned build ----------------------------------------------------- */

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(real_tuned_build_passes_golden) {
    setenv("RNC_INCLUDE_DIR", SOURCE_DIR "/include", 1);
    Graph g;
    compile_tiny(&g, true, NULL);
    TuneOptions o = {.budget_s = 20, .db_path = dbpath, .quiet = true, .skip_step_check = true};
    ck_assert_int_eq(tune_graph(&g, &o), 13);
    free_graph(&g);
    Graph t;
    compile_tiny(&t, false, dbpath);
    char net[320];
    snprintf(net, sizeof net, "%s/tiny_a.c", dir);
    FILE *f = fopen(net, "w");
    ck_assert_ptr_nonnull(f);
    emit_c(f, &t);
    fclose(f);
    free_graph(&t);
    size_t len;
    char *text = read_text_file(net, &len);
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

int main(void) {
    Suite *s = suite_create("tune");
    TCase *tc = tcase_create("tune");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, key_stability);
    tcase_add_test(tc, legality);
    tcase_add_test(tc, roundtrip);
    tcase_add_test(tc, damaged_files_ignored);
    tcase_add_test(tc, concurrent_writers);
    tcase_add_test(tc, fake_search_picks_best);
    tcase_add_test(tc, real_tuned_build_passes_golden);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
