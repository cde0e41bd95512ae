/* test_golden.c - a generated network against PyTorch (tools/torch_golden.py).
 *
 * Built once per (spec, schedule): MODEL names the generated model and
 * GOLDEN the golden file (either format: tests/golden.h).  One training step must reproduce PyTorch's loss,
 * logits, every parameter's gradient and the BN running statistics, and the
 * evaluation-mode forward after it; a second identical step, with every
 * kernel call timed (net->profile, as `bench --profile`), must reproduce the
 * first bit for bit. */
#define _GNU_SOURCE  /* testutil.h: mkdtemp, nftw */
#include <check.h>
#include <stdio.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "golden.h"
#include "rnc/model.h"
#include "testutil.h"

extern const rnc_model MODEL;

static golden G;
static rnc_net net;

static void setup(void) {
    ck_assert_int_eq(golden_load(GOLDEN, &G), 0);
    const rnc_model *m = &MODEL;
    if (G.version == 1)
        ck_assert_uint_eq(G.params.n, m->param_count);
    else
        ck_assert_int_eq(G.n_probe_tensors, m->n_params);
    ck_assert_uint_eq(G.state.n, m->state_count);
    ck_assert_uint_eq(G.images.n, (size_t)m->batch * m->height * m->width * m->channels);
    alloc_net(&net, m, omp_get_max_threads());
}

static void teardown(void) {
    free_net(&net);
    golden_free(&G);
}

static void load_inputs(float *images, int32_t *labels) {
    if (G.version == 1)
        for (size_t i = 0; i < MODEL.param_count; i++)
            net.params[i] = (float)G.params.v[i];
    else
        golden_param_init(&MODEL, G.seed, net.params);
    for (size_t i = 0; i < MODEL.state_count; i++)
        net.state[i] = (float)G.state.v[i];
    for (size_t i = 0; i < G.images.n; i++)
        images[i] = (float)G.images.v[i];
    for (size_t i = 0; i < G.labels.n; i++)
        labels[i] = (int32_t)G.labels.v[i];
}

/* Relative tolerance.  PyTorch's own float32 gradients differ from its
 * float64 ones by ~1e-6 to 1e-5 on the tiny networks; wider, larger ones
 * set GOLDEN_TOL from `tools/torch_golden.py --fp32-error` (tests/CMakeLists.txt). */
#ifndef GOLDEN_TOL
#define GOLDEN_TOL 1e-4
#endif
static const double TOL = GOLDEN_TOL;

START_TEST(step_matches_pytorch) {
    const rnc_model *m = &MODEL;
    float *images = alloc_zeroed(sizeof(float) * G.images.n);
    int32_t *labels = alloc_zeroed(sizeof(int32_t) * G.labels.n);
    float *logits = alloc_zeroed(sizeof(float) * G.logits.n);
    load_inputs(images, labels);
    rnc_step_stats st;
    m->train_step(&net, images, labels, logits, &st);

    ck_assert_msg(fabs(st.loss - G.loss.v[0]) <= TOL * fabs(G.loss.v[0]), "loss %.8f, PyTorch %.8f", st.loss,
                  G.loss.v[0]);
    double e = rel_error(logits, G.logits.v, G.logits.n, 1e-6);
    ck_assert_msg(e <= TOL, "logits differ from PyTorch: relative error %.3g", e);
    for (int i = 0; i < m->n_params; i++) {
        const rnc_tensor_info *p = &m->params[i];
        e = G.version == 1 ? rel_error(net.grads + p->offset, G.grads.v + p->offset, p->count, 1e-6)
                           : golden_probe_error(&G, i, net.grads + p->offset, p->count, 1e-6);
        ck_assert_msg(e <= TOL, "gradient of %s differs from PyTorch: relative error %.3g", p->name, e);
    }
    for (int i = 0; i < m->n_state; i++) {
        const rnc_tensor_info *s = &m->state[i];
        e = rel_error(net.state + s->offset, G.state_after.v + s->offset, s->count, 1e-6);
        ck_assert_msg(e <= TOL, "%s differs from PyTorch after the step: relative error %.3g", s->name, e);
    }
    m->infer(&net, images, logits);
    e = rel_error(logits, G.eval_logits.v, G.eval_logits.n, 1e-6);
    ck_assert_msg(e <= TOL, "evaluation logits differ from PyTorch: relative error %.3g", e);
    free(images);
    free(labels);
    free(logits);
}
END_TEST

START_TEST(step_is_deterministic) {
    const rnc_model *m = &MODEL;
    float *images = alloc_zeroed(sizeof(float) * G.images.n);
    int32_t *labels = alloc_zeroed(sizeof(int32_t) * G.labels.n);
    float *first = alloc_zeroed(sizeof(float) * m->param_count);
    rnc_step_stats a, b;
    load_inputs(images, labels);
    m->train_step(&net, images, labels, NULL, &a);
    memcpy(first, net.grads, sizeof(float) * m->param_count);
    memset(net.grads, 0x7f, sizeof(float) * m->param_count);   /* every gradient must be rewritten */
    load_inputs(images, labels);
    ck_assert_int_gt(m->n_sites, 0);
    double *prof = alloc_zeroed(sizeof(double) * m->n_sites);
    net.profile = prof;
    double wall = omp_get_wtime();
    m->train_step(&net, images, labels, NULL, &b);
    wall = omp_get_wtime() - wall;
    net.profile = NULL;
    ck_assert(a.loss == b.loss);
    ck_assert_int_eq(a.correct, b.correct);
    ck_assert_int_eq(memcmp(first, net.grads, sizeof(float) * m->param_count), 0);
    /* the profile: every call site timed, all within the step's time */
    double timed = 0;
    for (int i = 0; i < m->n_sites; i++) {
        ck_assert_msg(prof[i] > 0, "call %d (%s) timed %g s", i, m->sites[i], prof[i]);
        ck_assert_msg(strstr(m->sites[i], ": ") != NULL, "call site name '%s'", m->sites[i]);
        timed += prof[i];
    }
    ck_assert_msg(timed > 0 && timed <= wall, "calls took %g s of a %g s step", timed, wall);
    free(prof);
    free(images);
    free(labels);
    free(first);
}
END_TEST

int main(void) {
    if (cpu_cannot_run(&MODEL))   /* CTest: SKIP_RETURN_CODE 77 */
        return 77;
    Suite *s = suite_create("golden");
    TCase *tc = tcase_create(MODEL.name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, step_matches_pytorch);
    tcase_add_test(tc, step_is_deterministic);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
