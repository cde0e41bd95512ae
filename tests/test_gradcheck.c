/* test_gradcheck.c - every parameter gradient of a generated network against
 * finite differences of its own loss.
 *
 * For each parameter tensor, a direction d (scaled to the tensor's norm) gives the directional derivative two ways: the analytic g . d from
 * train_step, and (L(p + eps d) - L(p - eps d)) / 2 eps.  A wrong backward
 * kernel shows up as an O(1) relative difference; float rounding and ReLU
 * kinks stay well under the tolerance.  MODEL names the generated network. */
#define _GNU_SOURCE  /* testutil.h: mkdtemp, nftw */
#include <check.h>
#include <stdio.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "rnc/model.h"
#include "testutil.h"

extern const rnc_model MODEL;

static rnc_net net;
static float *images, *saved, *grads;
static int32_t *labels;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double uniform(void) {   /* xorshift64*: deterministic, no libc state */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return ((rng * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}

static double normal(void) {
    double u = uniform(), v = uniform();
    return sqrt(-2 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static double loss_at(void) {
    rnc_step_stats st;
    MODEL.train_step(&net, images, labels, NULL, &st);
    return st.loss;
}

static void setup(void) {
    const rnc_model *m = &MODEL;
    alloc_net(&net, m, omp_get_max_threads());
    saved = alloc_zeroed(sizeof(float) * m->param_count);
    grads = alloc_zeroed(sizeof(float) * m->param_count);
    size_t n_img = (size_t)m->batch * m->height * m->width * m->channels;
    images = alloc_zeroed(sizeof(float) * n_img);
    labels = alloc_zeroed(sizeof(int32_t) * m->batch);
    for (int i = 0; i < m->n_params; i++) {
        const rnc_tensor_info *p = &m->params[i];
        for (size_t k = 0; k < p->count; k++) {
            double v = normal();
            if (p->init == RNC_INIT_ONE)
                v = 1 + 0.2 * v;
            else if (p->init == RNC_INIT_ZERO)
                v = 0.2 * v;
            else
                v *= sqrt(2.0 / p->fan_in);
            net.params[p->offset + k] = (float)v;
        }
    }
    for (size_t i = 0; i < n_img; i++)
        images[i] = (float)normal();
    for (int i = 0; i < m->batch; i++)
        labels[i] = (int32_t)(uniform() * m->classes);
}

static void teardown(void) {
    free_net(&net);
    free(saved);
    free(grads);
    free(images);
    free(labels);
}

START_TEST(gradients_match_finite_differences) {
    const rnc_model *m = &MODEL;
    const double eps = 1e-3;
    const double l0 = loss_at();
    memcpy(grads, net.grads, sizeof(float) * m->param_count);
    memcpy(saved, net.params, sizeof(float) * m->param_count);
    double *dir = malloc(sizeof(double) * m->param_count);
    int checked = 0;
    for (int i = 0; i < m->n_params; i++) {
        const rnc_tensor_info *p = &m->params[i];
        /* d leans on the gradient itself, so the difference quotient is large
         * against the loss's float rounding, plus a random part that checks
         * directions the gradient does not point in. */
        double pnorm = 0, gnorm = 0, rnorm = 0, analytic = 0;
        for (size_t k = 0; k < p->count; k++) {
            dir[k] = normal();
            rnorm += dir[k] * dir[k];
            gnorm += (double)grads[p->offset + k] * grads[p->offset + k];
            pnorm += (double)saved[p->offset + k] * saved[p->offset + k];
        }
        double size = sqrt(pnorm > p->count * 1e-2 ? pnorm : p->count * 1e-2);
        for (size_t k = 0; k < p->count; k++) {
            dir[k] = size * (0.6 * dir[k] / sqrt(rnorm) + 0.8 * grads[p->offset + k] / sqrt(gnorm + 1e-30));
            analytic += grads[p->offset + k] * dir[k];
        }
        /* central differences at eps and eps/2, Richardson-extrapolated */
        double d[2];
        for (int half = 0; half < 2; half++) {
            double h = half ? eps / 2 : eps, l[2];
            for (int side = 0; side < 2; side++) {
                for (size_t k = 0; k < p->count; k++)
                    net.params[p->offset + k] = (float)(saved[p->offset + k] + (side ? -h : h) * dir[k]);
                l[side] = loss_at();
            }
            d[half] = (l[0] - l[1]) / (2 * h);
        }
        memcpy(net.params + p->offset, saved + p->offset, sizeof(float) * p->count);
        double numeric = (4 * d[1] - d[0]) / 3;
        /* float rounding of the loss bounds what differences can resolve */
        double noise = 4 * 6e-8 * (1 + fabs(l0)) / eps;
        double err = fabs(numeric - analytic) / (fabs(analytic) + fabs(numeric) + noise);
        if (getenv("GRADCHECK_VERBOSE"))
            printf("%-40s numeric %12.6g analytic %12.6g rel %.3g\n", p->name, numeric, analytic, err);
        ck_assert_msg(err < 3e-2, "%s: finite differences %.6g, backward %.6g (relative %.3g)", p->name, numeric,
                      analytic, err);
        checked++;
    }
    ck_assert_int_eq(checked, m->n_params);
    free(dir);
}
END_TEST

int main(void) {
    if (cpu_cannot_run(&MODEL))   /* CTest: SKIP_RETURN_CODE 77 */
        return 77;
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create(MODEL.name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, gradients_match_finite_differences);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
