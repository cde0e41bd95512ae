/* test_bn_rows.c - the batch-norm backward rows of rnc/kernels.h: where the
 * forward pass added no residual, the backward pass takes the ReLU's mask
 * by recomputing scale*x + shift from x instead of reading y.  That must be
 * the forward's own test bit for bit, on the kink too (pre-activations that
 * round to about zero), or the two passes would disagree about which
 * gradients the ReLU lets through.  So, over fp32 and bf16 storage and
 * channel counts on and off the vector width: the rows with y NULL give
 * exactly the bits of the rows reading y, and both match a plain double
 * reference of the masked sums and dx.
 *
 * Built with RNC_NET_CFLAGS, as generated networks are (and at the other
 * x86 targets' vector widths). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "rnc/kernels.h"

enum { W = 7 };

static uint64_t rng;

static double uniform(void) {   /* xorshift64*: deterministic */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return ((rng * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}

static double sym(void) { return 2 * uniform() - 1; }

typedef struct {
    int C, dt;
    float *mean, *invstd, *gamma, *beta, *scale, *shift, *b, *c3;
    void *x, *y, *dy;
} Case;

static void *alloc_elems(long n, int dt) {
    void *p = calloc((size_t)n, dt == RNC_BF16 ? 2 : 4);
    ck_assert_ptr_nonnull(p);
    return p;
}

static float *alloc_floats(int n) {
    float *p = calloc((size_t)n, sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Random statistics and parameters; x random but for pixel 0, where every
 * channel sits on its kink (x = -shift/scale, rounded as stored), and pixel
 * 1 of every third channel, exactly on it (shift 0, x 0: y = 0, masked);
 * y from the forward row with ReLU and no residual. */
static Case make_case(int C, int dt, uint64_t seed) {
    rng = seed;
    Case k = {.C = C, .dt = dt};
    float **f[] = {&k.mean, &k.invstd, &k.gamma, &k.beta, &k.scale, &k.shift, &k.b, &k.c3};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        *f[i] = alloc_floats(C);
    for (int c = 0; c < C; c++) {
        k.mean[c] = (float)(0.5 * sym());
        k.invstd[c] = (float)(0.5 + uniform());
        k.gamma[c] = (float)(c % 5 == 4 ? -(0.5 + uniform()) : 0.5 + uniform());   /* some negative */
        k.beta[c] = (float)(0.3 * sym());
        if (c % 3 == 0)   /* shift exactly 0: x = 0 (pixel 1) is exactly on the kink */
            k.mean[c] = k.beta[c] = 0;
        k.b[c] = (float)(0.1 * sym());
        k.c3[c] = (float)(0.1 * sym());
    }
    rnc_bn_scale_shift(k.gamma, k.beta, k.mean, k.invstd, k.scale, k.shift, C);
    k.x = alloc_elems((long)W * C, dt);
    k.y = alloc_elems((long)W * C, dt);
    k.dy = alloc_elems((long)W * C, dt);
    for (int w = 0; w < W; w++)
        for (int c = 0; c < C; c++) {
            const long i = (long)w * C + c;
            const float kink = w == 0 ? -k.shift[c] / k.scale[c] : 0;
            rnc_st(k.x, i, w == 0 || (w == 1 && c % 3 == 0) ? kink : (float)sym(), dt);
            rnc_st(k.dy, i, (float)sym(), dt);
        }
    rnc_bn_apply_row(k.x, dt, NULL, RNC_F32, k.y, dt, k.scale, k.shift, W, C, RNC_RELU);
    return k;
}

static void free_case(Case *k) {
    float *f[] = {k->mean, k->invstd, k->gamma, k->beta, k->scale, k->shift, k->b, k->c3};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        free(f[i]);
    free(k->x);
    free(k->y);
    free(k->dy);
}

static const int channels[] = {16, 24, 48, 64, 3};
static const int storage[] = {RNC_F32, RNC_BF16};

static Case case_of(int i) {
    const int C = channels[i / 2], dt = storage[i % 2];
    return make_case(C, dt, 0x9e3779b97f4a7c15ull + (uint64_t)i);
}

/* The masked gradient g, as the forward pass's y says. */
static double g_ref(const Case *k, long i) { return rnc_ld(k->y, i, k->dt) > 0 ? rnc_ld(k->dy, i, k->dt) : 0; }

START_TEST(sums_recomputed_mask_is_y_mask) {
    Case k = case_of(_i);
    const int C = k.C;
    float *by_y = alloc_floats(2 * C), *by_x = alloc_floats(2 * C);
    rnc_bn_bwd_sums_row(k.x, k.y, k.dy, k.dt, k.mean, k.invstd, k.scale, k.shift, by_y, W, C, RNC_RELU);
    rnc_bn_bwd_sums_row(k.x, NULL, k.dy, k.dt, k.mean, k.invstd, k.scale, k.shift, by_x, W, C, RNC_RELU);
    ck_assert_msg(!memcmp(by_y, by_x, sizeof(float) * 2 * (size_t)C), "C=%d dt=%d: the sums differ", C, k.dt);
    int live = 0;
    for (int c = 0; c < C; c++) {
        double sg = 0, sgx = 0;
        for (int w = 0; w < W; w++) {
            const long i = (long)w * C + c;
            const double g = g_ref(&k, i);
            live += g != 0;
            sg += g;
            sgx += g * ((double)rnc_ld(k.x, i, k.dt) - k.mean[c]) * k.invstd[c];
        }
        ck_assert_msg(fabs(by_x[c] - sg) <= 1e-5 * (1 + fabs(sg)), "C=%d c=%d: sum g %g, reference %g", C, c,
                      by_x[c], sg);
        ck_assert_msg(fabs(by_x[C + c] - sgx) <= 1e-5 * (1 + fabs(sgx)), "C=%d c=%d: sum g*xhat %g, reference %g",
                      C, c, by_x[C + c], sgx);
    }
    ck_assert_int_gt(live, 0);               /* the mask lets some through ... */
    ck_assert_int_lt(live, W * C);           /* ... and stops some */
    free(by_y);
    free(by_x);
    free_case(&k);
}
END_TEST

START_TEST(dx_recomputed_mask_is_y_mask) {
    Case k = case_of(_i);
    const int C = k.C;
    const long n = (long)W * C;
    void *dx_y = alloc_elems(n, k.dt), *dx_x = alloc_elems(n, k.dt);
    rnc_bn_bwd_dx_row(k.x, k.y, k.dy, k.dt, k.mean, k.invstd, k.scale, k.shift, k.b, k.c3, dx_y, NULL, W, C,
                      RNC_RELU, RNC_STORE, RNC_STORE);
    rnc_bn_bwd_dx_row(k.x, NULL, k.dy, k.dt, k.mean, k.invstd, k.scale, k.shift, k.b, k.c3, dx_x, NULL, W, C,
                      RNC_RELU, RNC_STORE, RNC_STORE);
    ck_assert_msg(!memcmp(dx_y, dx_x, (size_t)n * (k.dt == RNC_BF16 ? 2 : 4)), "C=%d dt=%d: dx differs", C, k.dt);
    const double tol = k.dt == RNC_BF16 ? 1.0 / 128 : 1e-5;   /* bf16: one rounding of dx, 8 bits */
    for (long i = 0; i < n; i++) {
        const int c = (int)(i % C);
        const double xhat = ((double)rnc_ld(k.x, i, k.dt) - k.mean[c]) * k.invstd[c];
        const double ref = (double)k.gamma[c] * k.invstd[c] * (g_ref(&k, i) - k.b[c] - xhat * k.c3[c]);
        const double got = rnc_ld(dx_x, i, k.dt);
        ck_assert_msg(fabs(got - ref) <= tol * (1e-3 + fabs(ref)) + 1e-6, "C=%d i=%ld: dx %g, reference %g", C, i, got,
                      ref);
    }
    free(dx_y);
    free(dx_x);
    free_case(&k);
}
END_TEST

int main(void) {
    Suite *s = suite_create("bn_rows");
    TCase *tc = tcase_create("mask");
    const int n = (int)(sizeof channels / sizeof *channels) * 2;
    tcase_add_loop_test(tc, sums_recomputed_mask_is_y_mask, 0, n);
    tcase_add_loop_test(tc, dx_recomputed_mask_is_y_mask, 0, n);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    const int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
