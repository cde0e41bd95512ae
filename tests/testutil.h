/* testutil.h - the helpers the Check test programs share: a temp root for
 * the run and a temp dir per test, whole files written and read back, the
 * data directories, and main()'s run of a suite.  Everything is static
 * inline (or marked unused), so a program pays only for what it calls and
 * no file gets an unused-function warning.
 *
 * Include it last, after check.h (Check's, or tests/mini_check's in the
 * aarch64 build) and the project's headers: the helpers for generated
 * networks are there when rnc/model.h came first, those for rnc_main and
 * the runtime's types when rnc/runtime.h did.  mkdtemp and nftw need
 * _GNU_SOURCE (gnu11 alone does not declare nftw), defined before any
 * include. */
#ifndef RNC_TESTUTIL_H
#define RNC_TESTUTIL_H

#ifndef _GNU_SOURCE
#error "testutil.h: #define _GNU_SOURCE before any include (mkdtemp, nftw)"
#endif

#include <check.h>
#include <ftw.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- temp dirs ------------------------------------------------------------ */

/* main() makes one root dir for the run (make_tmproot) and removes it at the
 * end, so even the files of a failed test (whose child exits early) are
 * cleaned up.  tmpdir is a test's own dir below it (make_tmpdir). */
static char tmproot[256] __attribute__((unused));
static char tmpdir[512] __attribute__((unused));

/* nftw's callback for remove_tree: every entry, children first. */
static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Removes dir and everything below it (links not followed); "" is a no-op. */
static inline void remove_tree(const char *dir) {
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes the run's root from template (ending in XXXXXX); 0, or -1 after
 * perror when it cannot. */
static inline int make_tmproot(const char *template) {
    snprintf(tmproot, sizeof tmproot, "%s", template);
    if (!mkdtemp(tmproot)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

/* A fresh dir for the calling test, below the root: tmpdir. */
static inline void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", tmproot);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* Removes the test's dir (the root's removal would too, at the end). */
static inline void remove_tmpdir(void) {
    remove_tree(tmpdir);
    tmpdir[0] = 0;
}

/* A path (printf-style) inside the test's dir, or in the root itself in a
 * program whose tests make none.  Rotating buffers, enough that no test
 * reuses one while an earlier result is still in use. */
static inline __attribute__((format(printf, 1, 2))) const char *tmp_path(const char *fmt, ...) {
    static char bufs[256][1024];
    static int next;
    char *b = bufs[next++ % 256];
    int n = snprintf(b, 1024, "%s/", tmpdir[0] ? tmpdir : tmproot);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, 1024 - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

/* ---- files ---------------------------------------------------------------- */

/* Writes n bytes to path (replacing it); the test fails if it cannot. */
static inline void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* The whole file, malloc'd with a NUL after it (text or bytes); *len its
 * size when len is not NULL.  The test fails if it cannot be read. */
static inline char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    if (len)
        *len = (size_t)n;
    return s;
}

/* Whether anything (file, dir, ...) is at path. */
static inline int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- data ----------------------------------------------------------------- */

/* The data dir named by the environment variable env, else
 * ../../shared/data/<rel> beside the tests' sources (tests/CMakeLists.txt's
 * RNC_DATA_DIR default).  buf (4096 bytes) holds the latter. */
static inline const char *data_dir(const char *env, const char *rel, char *buf) {
    const char *e = getenv(env);
    if (e && *e)
        return e;
    char src[4096];
    snprintf(src, sizeof src, "%s", __FILE__);
    snprintf(buf, 4096, "%s/../../shared/data/%s", dirname(src), rel);
    return buf;
}

/* CIFAR-10's binary files: $RNC_CIFAR_DIR, else the shared data dir's. */
static inline const char *cifar_dir(void) {
    static char buf[4096];
    return data_dir("RNC_CIFAR_DIR", "cifar10", buf);
}

/* ---- main() ----------------------------------------------------------------- */

/* Runs every test of s (Check's default mode: each in its own child), frees
 * the runner and the suite; main's exit status. */
static inline int run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* main() for the programs that write files: s run inside a temp root made
 * from template (ending in XXXXXX), removed after the last test. */
static inline int run_suite_in_tmproot(const char *template, Suite *s) {
    /* rnc_main restarts its process with OpenMP's short waits unless a wait
     * policy is set (runtime/cli.c): in a test that would rerun the suite
     * inside a test.  ctest sets it; this covers running a test by hand. */
    setenv("OMP_WAIT_POLICY", "passive", 0);
    if (make_tmproot(template))
        return EXIT_FAILURE;
    int rc = run_suite(s);
    remove_tree(tmproot);
    return rc;
}

/* The runtime, data and reliability programs name their tests in a table
 * of groups: one TCase a group, up to 8 tests each.  (Not in mini_check,
 * which has no TTest.) */
#ifndef RNC_MINI_CHECK_H
typedef struct {
    const char *name;
    const TTest *tests[8];
} TestGroup;

/* A TCase for each of the n groups, added to s, with timeout seconds. */
static inline void add_groups(Suite *s, const TestGroup *groups, size_t n, double timeout) {
    for (size_t g = 0; g < n; g++) {
        TCase *tc = tcase_create(groups[g].name);
        tcase_set_timeout(tc, timeout);
        for (int t = 0; t < 8 && groups[g].tests[t]; t++)
            tcase_add_test(tc, groups[g].tests[t]);
        suite_add_tcase(s, tc);
    }
}
#endif

/* ---- generated networks --------------------------------------------------------- */

#ifdef RNC_MODEL_H
/* `bytes` zeroed, 64-byte aligned and rounded up to whole 64-byte lines, as
 * the generated code's buffers are. */
static inline void *alloc_zeroed(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    ck_assert_ptr_nonnull(p);
    memset(p, 0, bytes);
    return p;
}

/* net's buffers for m, zeroed, with scratch for `slots` threads
 * (omp_get_max_threads()); in place of the runtime's rnc_net_alloc in the
 * programs that link only a generated network (golden, gradcheck, also on
 * aarch64). */
static inline void alloc_net(rnc_net *net, const rnc_model *m, int slots) {
    net->model = m;
    net->params = alloc_zeroed(sizeof(float) * m->param_count);
    net->grads = alloc_zeroed(sizeof(float) * m->param_count);
    net->state = alloc_zeroed(sizeof(float) * m->state_count);
    net->work = alloc_zeroed(m->work_bytes);
    net->scratch_slots = slots;
    net->scratch = alloc_zeroed(m->thread_scratch_bytes * net->scratch_slots + 64);
}

/* Frees what alloc_net allocated. */
static inline void free_net(rnc_net *net) {
    free(net->params);
    free(net->grads);
    free(net->state);
    free(net->work);
    free(net->scratch);
}

/* Whether this CPU lacks what m was generated for; then says so, and main
 * returns 77 (CTest's SKIP_RETURN_CODE). */
static inline int cpu_cannot_run(const rnc_model *m) {
    if (rnc_cpu_has(m->cpu_feature))
        return 0;
    printf("skipped: %s was generated for the %s target; this CPU has no %s\n", m->name, m->target, m->cpu_feature);
    return 1;
}
#endif

/* ---- the runtime ---------------------------------------------------------------- */

#ifdef RNC_RUNTIME_H
#include <fcntl.h>
#include <unistd.h>

/* rnc_main(m) on the NULL-terminated arguments ap, with stderr (and stdout,
 * or stdout into the existing file out_path) captured in the test's dir:
 * the exit status, *out what was captured (malloc'd; freed when out is
 * NULL).  stdout's error flag is cleared after, for tests that make its
 * writes fail. */
static inline int run_cli_v(const rnc_model *m, const char *out_path, char **out, va_list ap) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "fake";
    for (char *a; (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    argv[argc] = NULL;
    const char *cap = tmp_path("captured.txt");
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    int ofd = out_path ? open(out_path, O_WRONLY) : fd;
    ck_assert_int_ge(ofd, 0);
    dup2(ofd, 1);
    dup2(fd, 2);
    close(fd);
    if (out_path)
        close(ofd);
    int rc = rnc_main(m, argc, argv);
    fflush(stdout);
    clearerr(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    char *text = read_all(cap, NULL);
    if (out)
        *out = text;
    else
        free(text);
    return rc;
}

/* run_cli(m, &out, "train", "--epochs", "1", NULL): both streams in *out. */
static inline int run_cli(const rnc_model *m, char **out, ...) {
    va_list ap;
    va_start(ap, out);
    int rc = run_cli_v(m, NULL, out, ap);
    va_end(ap);
    return rc;
}

/* The same with stdout into stdout_path (which must exist), *err_out
 * stderr alone. */
static inline int run_cli_stdout(const rnc_model *m, const char *stdout_path, char **err_out, ...) {
    va_list ap;
    va_start(ap, err_out);
    int rc = run_cli_v(m, stdout_path, err_out, ap);
    va_end(ap);
    return rc;
}

/* Distinct values in every parameter, velocity and state slot (from base),
 * so that a checkpoint's round trip shows any slot lost or moved. */
static inline void fill_net(rnc_net *net, rnc_sgd *s, float base) {
    for (size_t i = 0; i < net->model->param_count; i++) {
        net->params[i] = base + (float)i * 0.001f;
        s->velocity[i] = -base - (float)i;
    }
    for (size_t i = 0; i < net->model->state_count; i++)
        net->state[i] = base * 2 + (float)i;
}
#endif

#endif
