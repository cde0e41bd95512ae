/* test_jit.c - the in-process JIT (compiler/jit.c, compiler/jit_clang.cpp).
 *
 *   shim      Clang compiles a string; compile errors come back as Clang's
 *             diagnostics; bad flags too; OpenMP in JIT code runs on libomp
 *             with every thread.
 *   network   tests/specs/tiny_a.spec at batch 4, JIT-compiled, against the
 *             same generated C built ahead of time by gcc (AOT_MODEL, linked
 *             in): one train_step's loss, logits, gradients and BN state,
 *             and an inference pass, within 1e-5 relative; with Clang's own
 *             object output and with the backend split over two threads.
 *   cache     a miss stores an entry, the next load hits it; flipped bytes,
 *             truncation, a foreign entry under the name: reported, rebuilt.
 *
 * Every test uses its own fresh RNC_CACHE_DIR under the build directory. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jit_clang.h"
#include "rnc.h"
#include "rnc/runtime.h"
#include "testutil.h"

#ifndef AOT_MODEL
#error "define AOT_MODEL (the ahead-of-time build of SPEC at batch 4)"
#endif
extern const rnc_model AOT_MODEL;

static char cache_dir[4096];

/* A fresh, empty cache directory for each test. */
static void fresh_cache(void) {
    static int n;
    snprintf(cache_dir, sizeof cache_dir, "%s/jit-cache-%ld-%d", TEST_TMP_DIR, (long)getpid(), n++);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
    ck_assert_int_eq(system(cmd), 0);
    setenv("RNC_CACHE_DIR", cache_dir, 1);
    unsetenv("RNC_JIT_CFLAGS");
}

static void remove_cache(void) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
    (void)system(cmd);
}

/* ---- the shim ------------------------------------------------------------ */

START_TEST(compile_error_shows_clang_diagnostics) {
    const char *src = "int broken(void) {\n    return undeclared_thing + 1;\n}\n";
    rnc_jit *jit = NULL;
    char *diag = NULL;
    ck_assert_int_ne(rnc_jit_compile(src, strlen(src), NULL, 0, NULL, &jit, &diag), 0);
    ck_assert_ptr_null(jit);
    ck_assert_ptr_nonnull(diag);
    ck_assert_msg(strstr(diag, "undeclared_thing") && strstr(diag, "error"), "diagnostics: %s", diag);
    ck_assert_msg(strstr(diag, ":2:"), "no line number in: %s", diag);
    free(diag);
}
END_TEST

START_TEST(bad_flags_show_driver_diagnostics) {
    const char *src = "int ok(void) { return 1; }\n";
    const char *extra[] = {"--no-such-flag-for-rnc"};
    rnc_jit *jit = NULL;
    char *diag = NULL;
    ck_assert_int_ne(rnc_jit_compile(src, strlen(src), extra, 1, NULL, &jit, &diag), 0);
    ck_assert_ptr_nonnull(diag);
    ck_assert_msg(strstr(diag, "no-such-flag-for-rnc"), "diagnostics: %s", diag);
    free(diag);
}
END_TEST

/* JIT code calls libomp; the test binary's own OpenMP (gcc's GOMP_* calls in
 * the AOT object) resolves to the same libomp. */
START_TEST(openmp_uses_every_thread) {
    const char *src =
        "#include <omp.h>\n"
        "int team_size(void) {\n"
        "    int seen[64] = {0}, n = 0;\n"
        "    #pragma omp parallel\n"
        "    { int t = omp_get_thread_num(); if (t < 64) seen[t] = 1; }\n"
        "    for (int i = 0; i < 64; i++) n += seen[i];\n"
        "    return n;\n"
        "}\n"
        "int max_threads(void) { return omp_get_max_threads(); }\n";
    rnc_jit *jit = NULL;
    char *diag = NULL;
    ck_assert_msg(rnc_jit_compile(src, strlen(src), NULL, 0, NULL, &jit, &diag) == 0, "%s", diag);
    int (*team)(void) = (int (*)(void))rnc_jit_lookup(jit, "team_size", &diag);
    int (*maxt)(void) = (int (*)(void))rnc_jit_lookup(jit, "max_threads", &diag);
    ck_assert_ptr_nonnull(team);
    ck_assert_ptr_nonnull(maxt);
    int want = maxt();
    ck_assert_int_ge(want, 1);
    ck_assert_int_eq(team(), want);
    ck_assert_ptr_null(rnc_jit_lookup(jit, "no_such_symbol", &diag));
    ck_assert_ptr_nonnull(diag);
    free(diag);
    rnc_jit_free(jit);
}
END_TEST

/* ---- the network against its ahead-of-time build --------------------------- */

static char *generate(const char *spec, int batch, size_t *len) {
    Graph g;
    ScheduleOptions opt = {0};
    ck_assert(compile_spec(spec, batch, &opt, &g));
    char *src = NULL;
    FILE *f = open_memstream(&src, len);
    ck_assert_ptr_nonnull(f);
    emit_c(f, &g);
    fclose(f);
    free_graph(&g);
    return src;
}

static void fill(float *p, size_t n, uint64_t seed, float scale) {
    rnc_rng r;
    rnc_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(scale * rnc_rng_normal(&r));
}

/* |a - b| <= 1e-5 relative to b, with a floor of 1e-5 of the array's largest
 * magnitude so values that are nearly 0 in both are not compared bit by bit. */
static void assert_close(const char *what, const float *a, const float *b, size_t n) {
    double big = 0;
    for (size_t i = 0; i < n; i++)
        big = fmax(big, fabs(b[i]));
    for (size_t i = 0; i < n; i++) {
        double tol = 1e-5 * fmax(fabs(b[i]), 1e-3 * big) + 1e-30;
        ck_assert_msg(isfinite(a[i]) && fabs(a[i] - b[i]) <= tol, "%s[%zu]: jit %.9g, aot %.9g", what, i,
                      a[i], b[i]);
    }
}

/* _i = backend jobs: 1 is Clang's own object output, 2 the split backend. */
START_TEST(tiny_a_matches_ahead_of_time_build) {
    fresh_cache();
    char jobs[8];
    snprintf(jobs, sizeof jobs, "%d", _i);
    setenv("RNC_JIT_JOBS", jobs, 1);
    size_t len;
    char *src = generate(SPEC, 4, &len);
    rnc_jit *jit;
    void *addr;
    rnc_jit_stats st;
    char *diag = NULL;
    ck_assert_msg(rnc_jit_load_source(src, len, "tiny_a", "rnc_model_tiny_a", &jit, &addr, &st, &diag) == 0,
                  "%s", diag);
    ck_assert_int_eq(st.cache_misses, 1);
    free(src);
    const rnc_model *jm = addr, *am = &AOT_MODEL;
    ck_assert_ptr_ne(jm, am);
    ck_assert_int_eq(jm->batch, 4);
    ck_assert_int_eq(am->batch, 4);
    ck_assert_str_eq(jm->name, am->name);
    ck_assert_uint_eq(jm->param_count, am->param_count);
    ck_assert_uint_eq(jm->state_count, am->state_count);
    ck_assert_uint_eq(jm->work_bytes, am->work_bytes);

    rnc_net jn, an;
    rnc_err err;
    ck_assert_int_eq(rnc_net_alloc(&jn, jm, &err), 0);
    ck_assert_int_eq(rnc_net_alloc(&an, am, &err), 0);
    rnc_net_init(&jn, 7);
    rnc_net_init(&an, 7);
    assert_close("init params", jn.params, an.params, jm->param_count);
    /* Non-trivial BN state, so the running-statistics update is checked too. */
    fill(jn.state, jm->state_count, 3, 0.1f);
    for (size_t i = 0; i < jm->state_count; i++)
        jn.state[i] = an.state[i] = fabsf(jn.state[i]) + 0.5f;

    size_t n_img = (size_t)jm->batch * jm->height * jm->width * jm->channels;
    size_t n_log = (size_t)jm->batch * jm->classes;
    float *images = malloc(n_img * sizeof *images);
    float *jl = malloc(n_log * sizeof *jl), *al = malloc(n_log * sizeof *al);
    int32_t labels[4];
    fill(images, n_img, 11, 1.0f);
    for (int i = 0; i < 4; i++)
        labels[i] = (i * 3 + 1) % jm->classes;

    rnc_step_stats js, as;
    jm->train_step(&jn, images, labels, jl, &js);
    am->train_step(&an, images, labels, al, &as);
    ck_assert_msg(isfinite(js.loss) && fabs(js.loss - as.loss) <= 1e-5 * fabs(as.loss), "loss: jit %.9g aot %.9g",
                  js.loss, as.loss);
    ck_assert_int_eq(js.correct, as.correct);
    assert_close("logits", jl, al, n_log);
    assert_close("grads", jn.grads, an.grads, jm->param_count);
    assert_close("state", jn.state, an.state, jm->state_count);

    jm->infer(&jn, images, jl);
    am->infer(&an, images, al);
    assert_close("infer logits", jl, al, n_log);

    free(images);
    free(jl);
    free(al);
    rnc_net_free(&jn);
    rnc_net_free(&an);
    rnc_jit_free(jit);
    unsetenv("RNC_JIT_JOBS");
    remove_cache();
}
END_TEST

/* ---- the cache --------------------------------------------------------------- */

static const char CACHE_SRC[] = "int rnc_cache_probe = 4242;\nint probe(void) { return rnc_cache_probe + 1; }\n";

/* Loads CACHE_SRC through the cache and checks the code works. */
static rnc_jit_stats load_probe(void) {
    rnc_jit *jit;
    void *addr;
    rnc_jit_stats st;
    char *diag = NULL;
    ck_assert_msg(rnc_jit_load_source(CACHE_SRC, strlen(CACHE_SRC), "probe", "probe", &jit, &addr, &st, &diag) ==
                      0,
                  "%s", diag);
    ck_assert_int_eq(((int (*)(void))addr)(), 4243);
    rnc_jit_free(jit);
    return st;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

START_TEST(cache_miss_then_hit) {
    fresh_cache();
    rnc_jit_stats a = load_probe();
    ck_assert_int_eq(a.cache_misses, 1);
    ck_assert_int_eq(a.cache_hits, 0);
    ck_assert_int_eq(a.cache_corrupt, 0);
    ck_assert_msg(strncmp(a.cache_path, cache_dir, strlen(cache_dir)) == 0, "entry %s", a.cache_path);
    ck_assert_int_gt(file_size(a.cache_path), 48);

    rnc_jit_stats b = load_probe();
    ck_assert_int_eq(b.cache_hits, 1);
    ck_assert_int_eq(b.cache_misses, 0);
    ck_assert_str_eq(b.cache_path, a.cache_path);
    ck_assert(b.compile_seconds == 0);

    /* Other flags are another entry. */
    setenv("RNC_JIT_CFLAGS", "-O1 -march=native -fopenmp", 1);
    rnc_jit_stats c = load_probe();
    ck_assert_int_eq(c.cache_misses, 1);
    ck_assert_str_ne(c.cache_path, a.cache_path);
    unsetenv("RNC_JIT_CFLAGS");
    remove_cache();
}
END_TEST

static void corrupt_file(const char *path, long offset, int truncate_to) {
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    if (truncate_to >= 0) {
        ck_assert_int_eq(ftruncate(fileno(f), truncate_to), 0);
    } else {
        ck_assert_int_eq(fseek(f, offset, SEEK_SET), 0);
        int c = fgetc(f);
        ck_assert_int_ne(c, EOF);
        ck_assert_int_eq(fseek(f, offset, SEEK_SET), 0);
        fputc(c ^ 0x10, f);
    }
    fclose(f);
}

/* After damage: the load reports it, recompiles, rewrites; then hits again. */
static void assert_rebuilt(const char *path) {
    rnc_jit_stats st = load_probe();
    ck_assert_int_eq(st.cache_corrupt, 1);
    ck_assert_int_eq(st.cache_misses, 1);
    ck_assert_int_eq(st.cache_hits, 0);
    ck_assert_str_eq(st.cache_path, path);
    st = load_probe();
    ck_assert_int_eq(st.cache_hits, 1);
    ck_assert_int_eq(st.cache_corrupt, 0);
}

START_TEST(damaged_entries_are_rebuilt) {
    fresh_cache();
    rnc_jit_stats st = load_probe();
    char path[4096];
    snprintf(path, sizeof path, "%s", st.cache_path);
    long size = file_size(path);
    ck_assert_int_gt(size, 100);

    corrupt_file(path, size / 2, -1);      /* a flipped bit in the object */
    assert_rebuilt(path);
    corrupt_file(path, 20, -1);            /* in the header (the key) */
    assert_rebuilt(path);
    corrupt_file(path, 0, (int)size - 7);  /* truncated object */
    assert_rebuilt(path);
    corrupt_file(path, 0, 10);             /* truncated header */
    assert_rebuilt(path);
    corrupt_file(path, 0, 0);              /* empty */
    assert_rebuilt(path);

    /* A valid entry of another source under this entry's name. */
    setenv("RNC_JIT_CFLAGS", "-O1", 1);
    rnc_jit_stats other = load_probe();
    unsetenv("RNC_JIT_CFLAGS");
    ck_assert_int_eq(rename(other.cache_path, path), 0);
    assert_rebuilt(path);
    remove_cache();
}
END_TEST

/* An entry compiled for another CPU or by another Clang (the host id: LLVM
 * and Clang versions, triple, CPU name and features) has another key: it is
 * another file, never loaded here; put under this machine's name, it is
 * found out (its key is not the name's) and rebuilt. */
START_TEST(entries_of_another_host_unused) {
    fresh_cache();
    setenv("RNC_TEST_JIT_HOST", "LLVM 99.0.0 / x86_64-pc-linux-gnu / znver9 / +avx10", 1);
    rnc_jit_stats other = load_probe();
    ck_assert_int_eq(other.cache_misses, 1);
    unsetenv("RNC_TEST_JIT_HOST");
    rnc_jit_stats here = load_probe();
    ck_assert_int_eq(here.cache_misses, 1);   /* the other host's entry is not this one */
    ck_assert_int_eq(here.cache_corrupt, 0);
    ck_assert_str_ne(here.cache_path, other.cache_path);
    char path[4096];
    snprintf(path, sizeof path, "%s", here.cache_path);
    ck_assert_int_eq(rename(other.cache_path, path), 0);
    assert_rebuilt(path);
    remove_cache();
}
END_TEST

/* An unwritable cache is a warning, not a failure. */
START_TEST(unwritable_cache_still_runs) {
    fresh_cache();
    char file[4200];
    snprintf(file, sizeof file, "%s", cache_dir);
    FILE *f = fopen(file, "w");   /* a file where the directory should be */
    ck_assert_ptr_nonnull(f);
    fclose(f);
    rnc_jit_stats st = load_probe();
    ck_assert_int_eq(st.cache_misses, 1);
    ck_assert_int_eq(st.cache_write_failures, 1);
    unlink(file);
}
END_TEST

int main(void) {
    Suite *s = suite_create("jit");
    TCase *shim = tcase_create("shim");
    tcase_set_timeout(shim, 120);
    tcase_add_test(shim, compile_error_shows_clang_diagnostics);
    tcase_add_test(shim, bad_flags_show_driver_diagnostics);
    tcase_add_test(shim, openmp_uses_every_thread);
    suite_add_tcase(s, shim);
    TCase *net = tcase_create("network");
    tcase_set_timeout(net, 300);
    tcase_add_loop_test(net, tiny_a_matches_ahead_of_time_build, 1, 3);
    suite_add_tcase(s, net);
    TCase *cache = tcase_create("cache");
    tcase_set_timeout(cache, 300);
    tcase_add_test(cache, cache_miss_then_hit);
    tcase_add_test(cache, damaged_entries_are_rebuilt);
    tcase_add_test(cache, entries_of_another_host_unused);
    tcase_add_test(cache, unwritable_cache_still_runs);
    suite_add_tcase(s, cache);
    return run_suite(s);
}
