/* test_bf16.c - a network's bf16 build (activations and their gradients
 * stored as bfloat16) against its fp32 build: one training step from the
 * same weights and images, then inference.
 *
 * Bounds, and why: every activation and gradient is rounded to bf16 (8 bits
 * of mantissa: a relative error of at most 2^-9 = 0.2% each), and the
 * gradients of early layers pass back through batch norm, whose backward
 * pass subtracts nearly equal sums and so amplifies the rounding; PyTorch in
 * float64 with the same tensors rounded to bf16 (the recipe itself, not this
 * implementation) differs from float64 by 2-17% per parameter tensor on
 * mixed_b.  So each parameter gradient must be within 35% (relative L2) and
 * a cosine similarity of 0.97 of fp32's, the loss within 1e-3 and the logits
 * within 2e-2; a kernel that computes something else is off by O(1).  The
 * bf16 step must also be deterministic, bit for bit. */
#define _GNU_SOURCE  /* testutil.h: mkdtemp, nftw */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rnc/model.h"
#include "testutil.h"

extern const rnc_model MODEL, MODEL_BF16;

typedef struct {
    rnc_net net;
    float *logits;
} Run;

static Run runs[2];
static float *images;
static int32_t *labels;
static uint64_t rng = 0x243F6A8885A308D3ull;

static double uniform(void) {   /* xorshift64 */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) * 0x1.0p-53;
}

static void *alloc(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    ck_assert_ptr_nonnull(p);
    memset(p, 0, bytes);
    return p;
}

static void setup(void) {
    const rnc_model *m[2] = {&MODEL, &MODEL_BF16};
    ck_assert_uint_eq(m[0]->param_count, m[1]->param_count);
    for (int k = 0; k < 2; k++) {
        rnc_net *n = &runs[k].net;
        *n = (rnc_net){.model = m[k], .params = alloc(4 * m[k]->param_count), .grads = alloc(4 * m[k]->param_count),
                       .state = alloc(4 * m[k]->state_count), .work = alloc(m[k]->work_bytes),
                       .scratch_slots = omp_get_max_threads()};
        n->scratch = alloc(m[k]->thread_scratch_bytes * n->scratch_slots + 64);
        runs[k].logits = alloc(sizeof(float) * m[k]->batch * m[k]->classes);
    }
    for (int i = 0; i < MODEL.n_params; i++) {
        const rnc_tensor_info *p = &MODEL.params[i];
        for (size_t j = 0; j < p->count; j++) {
            double u = uniform() - 0.5;
            double v = p->init == RNC_INIT_ONE ? 1 + 0.4 * u : p->init == RNC_INIT_ZERO ? 0.4 * u
                                                                                        : 2 * u * sqrt(6.0 / p->fan_in);
            runs[0].net.params[p->offset + j] = runs[1].net.params[p->offset + j] = (float)v;
        }
    }
    for (int i = 0; i < MODEL.n_state; i++) {
        const rnc_tensor_info *s = &MODEL.state[i];
        if (strstr(s->name, "running_var"))
            for (size_t j = 0; j < s->count; j++)
                runs[0].net.state[s->offset + j] = runs[1].net.state[s->offset + j] = 1;
    }
    size_t n = (size_t)MODEL.batch * MODEL.height * MODEL.width * MODEL.channels;
    images = alloc(sizeof(float) * n);
    labels = alloc(sizeof(int32_t) * MODEL.batch);
    for (size_t i = 0; i < n; i++)
        images[i] = (float)(2 * uniform() - 1);
    for (int i = 0; i < MODEL.batch; i++)
        labels[i] = (int32_t)(uniform() * MODEL.classes);
}

static void teardown(void) {
    for (int k = 0; k < 2; k++) {
        free(runs[k].net.params);
        free(runs[k].net.grads);
        free(runs[k].net.state);
        free(runs[k].net.work);
        free(runs[k].net.scratch);
        free(runs[k].logits);
    }
    free(images);
    free(labels);
}

static double rel(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(d / (r > 1e-30 ? r : 1e-30));
}

static double cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1 : 0);
}

START_TEST(step_close_to_fp32) {
    rnc_step_stats st[2];
    for (int k = 0; k < 2; k++)
        runs[k].net.model->train_step(&runs[k].net, images, labels, runs[k].logits, &st[k]);
    const size_t nl = (size_t)MODEL.batch * MODEL.classes;
    ck_assert_msg(fabs(st[1].loss - st[0].loss) <= 1e-3 * fabs(st[0].loss), "loss %.6f, fp32 %.6f", st[1].loss,
                  st[0].loss);
    double e = rel(runs[1].logits, runs[0].logits, nl);
    ck_assert_msg(e <= 2e-2, "logits: relative error %.3g", e);
    for (int i = 0; i < MODEL.n_params; i++) {
        const rnc_tensor_info *p = &MODEL.params[i];
        const float *a = runs[1].net.grads + p->offset, *b = runs[0].net.grads + p->offset;
        double r = rel(a, b, p->count), c = cosine(a, b, p->count);
        if (getenv("RNC_TEST_VERBOSE"))
            printf("%-40s relative %.3g cosine %.5f\n", p->name, r, c);
        ck_assert_msg(r <= 0.35 && c >= 0.97, "gradient of %s: relative error %.3g, cosine %.4f", p->name, r, c);
    }
    e = rel(runs[1].net.state, runs[0].net.state, MODEL.state_count);
    ck_assert_msg(e <= 2e-2, "BN running statistics: relative error %.3g", e);
    for (int k = 0; k < 2; k++)
        runs[k].net.model->infer(&runs[k].net, images, runs[k].logits);
    e = rel(runs[1].logits, runs[0].logits, nl);
    ck_assert_msg(e <= 2e-2, "evaluation logits: relative error %.3g", e);
}
END_TEST

START_TEST(bf16_step_is_deterministic) {
    rnc_net *n = &runs[1].net;
    float *first = alloc(sizeof(float) * MODEL.param_count);
    rnc_step_stats a, b;
    float *state0 = alloc(sizeof(float) * MODEL.state_count);
    memcpy(state0, n->state, sizeof(float) * MODEL.state_count);
    MODEL_BF16.train_step(n, images, labels, NULL, &a);
    memcpy(first, n->grads, sizeof(float) * MODEL.param_count);
    memcpy(n->state, state0, sizeof(float) * MODEL.state_count);
    memset(n->grads, 0x7f, sizeof(float) * MODEL.param_count);
    MODEL_BF16.train_step(n, images, labels, NULL, &b);
    ck_assert(a.loss == b.loss);
    ck_assert_int_eq(memcmp(first, n->grads, sizeof(float) * MODEL.param_count), 0);
    free(first);
    free(state0);
}
END_TEST

int main(void) {
    if (!rnc_cpu_has(MODEL_BF16.cpu_feature)) {   /* e.g. the amx target's build on a CPU without AMX */
        printf("skipped: the bf16 build needs %s, which this CPU lacks\n", MODEL_BF16.cpu_feature);
        return 77;
    }
    Suite *s = suite_create("bf16");
    TCase *tc = tcase_create(MODEL.name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, step_close_to_fp32);
    tcase_add_test(tc, bf16_step_is_deterministic);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
