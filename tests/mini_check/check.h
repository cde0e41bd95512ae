/* mini_check/check.h - the part of Check's API the golden and gradient
 * tests use, for machines where the test runs under emulation and the
 * Check library is not built (tests/cross.cmake: aarch64 under qemu-user).
 * Each test runs once, in-process, with its fixture; a failed assertion
 * prints Check's "file:line:F:..." line and ends that test. */
#ifndef RNC_MINI_CHECK_H
#define RNC_MINI_CHECK_H

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*mc_fn)(int);
typedef struct {
    const char *name;
    mc_fn tests[16];
    const char *test_names[16];
    int n;
    void (*setup)(void), (*teardown)(void);
} TCase;
typedef struct {
    const char *name;
    TCase *cases[8];
    int n;
} Suite;
typedef struct {
    Suite *s;
    int failed, run;
} SRunner;
enum { CK_NORMAL = 0 };

static jmp_buf mc_jump;
static const char *mc_test;

#define START_TEST(fn)          \
    static void fn##_fn(int _i) \
    {                           \
        (void)_i;
#define END_TEST }
#define tcase_add_test(tc, fn) mc_add((tc), fn##_fn, #fn)

#define ck_assert_msg(cond, ...)                                                       \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            printf("%s:%d:F:%s: Assertion '%s' failed: ", __FILE__, __LINE__, mc_test, #cond); \
            printf(__VA_ARGS__);                                                       \
            printf("\n");                                                              \
            longjmp(mc_jump, 1);                                                       \
        }                                                                              \
    } while (0)
#define ck_assert(cond) ck_assert_msg(cond, "%s", "")
#define ck_abort_msg(...) ck_assert_msg(0, __VA_ARGS__)
#define ck_assert_int_eq(a, b) ck_assert_msg((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))
#define ck_assert_int_gt(a, b) ck_assert_msg((long long)(a) > (long long)(b), "%lld <= %lld", (long long)(a), (long long)(b))
#define ck_assert_uint_eq(a, b)                                                              \
    ck_assert_msg((unsigned long long)(a) == (unsigned long long)(b), "%llu != %llu", \
                  (unsigned long long)(a), (unsigned long long)(b))
#define ck_assert_ptr_nonnull(p) ck_assert_msg((p) != NULL, "%s is NULL", #p)

static inline Suite *suite_create(const char *name) {
    Suite *s = calloc(1, sizeof *s);
    s->name = name;
    return s;
}
static inline TCase *tcase_create(const char *name) {
    TCase *t = calloc(1, sizeof *t);
    t->name = name;
    return t;
}
static inline void tcase_add_checked_fixture(TCase *t, void (*setup)(void), void (*teardown)(void)) {
    t->setup = setup;
    t->teardown = teardown;
}
static inline void tcase_set_timeout(TCase *t, double s) { (void)t, (void)s; }
static inline void mc_add(TCase *t, mc_fn f, const char *name) {
    t->test_names[t->n] = name;
    t->tests[t->n++] = f;
}
static inline void suite_add_tcase(Suite *s, TCase *t) { s->cases[s->n++] = t; }
static inline SRunner *srunner_create(Suite *s) {
    SRunner *r = calloc(1, sizeof *r);
    r->s = s;
    return r;
}
/* One test with its fixture; 1 when it failed. */
static inline int mc_run_one(const TCase *t, int i) {
    volatile int set_up = 0, failed = 0;
    mc_test = t->test_names[i];
    if (setjmp(mc_jump) == 0) {
        if (t->setup)
            t->setup();
        set_up = 1;
        t->tests[i](0);
    } else {
        failed = 1;
    }
    if (set_up && t->teardown)
        t->teardown();
    return failed;
}
static inline void srunner_run_all(SRunner *r, int mode) {
    (void)mode;
    for (int c = 0; c < r->s->n; c++)
        for (int i = 0; i < r->s->cases[c]->n; i++) {
            r->run++;
            r->failed += mc_run_one(r->s->cases[c], i);
        }
    printf("%d%%: Checks: %d, Failures: %d, Errors: 0\n", r->run ? 100 * (r->run - r->failed) / r->run : 100, r->run,
           r->failed);
}
static inline int srunner_ntests_failed(SRunner *r) { return r->failed; }
static inline void srunner_free(SRunner *r) {
    for (int c = 0; c < r->s->n; c++)
        free(r->s->cases[c]);
    free(r->s);
    free(r);
}

#endif
