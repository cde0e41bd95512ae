/* one_step.c - smoke test for one generated network: allocate its buffers,
 * initialize it, run a training step on random data, take a plain SGD step,
 * and run a second training step and an inference pass.
 *
 * Built by tests/every_spec.sh together with a generated file:
 *   cc ... -DRNC_NO_MAIN -DMODEL=rnc_model_<name> net.c one_step.c -lm
 * It needs nothing from the runtime library, so it checks the generated code
 * on its own.  Prints one line and exits 0 on success, 1 on any failure. */
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rnc/model.h"

#ifndef MODEL
#error "define MODEL as the generated model's symbol, e.g. -DMODEL=rnc_model_resnet20"
#endif

extern const rnc_model MODEL;

static const char *name = "?";

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s: ", name);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return 1;
}

/* 64-byte aligned, zeroed; aligned_alloc wants a multiple of the alignment. */
static void *alloc64(size_t bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p) {
        printf("FAIL %s: cannot allocate %zu bytes\n", name, rounded);
        exit(1);
    }
    memset(p, 0, rounded);
    return p;
}

/* xorshift64*: deterministic, so a failure can be reproduced. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return ((rng_state * 0x2545f4914f6cdd1dull) >> 11) * (1.0 / 9007199254740992.0);
}

/* Sum of four uniforms, centred and scaled to unit variance: normal enough. */
static double normalish(void) {
    double s = uniform() + uniform() + uniform() + uniform() - 2.0;
    return s * sqrt(3.0);
}

static void init_views(float *buf, const rnc_tensor_info *views, int n) {
    for (int i = 0; i < n; i++) {
        const rnc_tensor_info *v = &views[i];
        float *p = buf + v->offset;
        int is_weight = (v->init == RNC_INIT_HE_NORMAL || v->init == RNC_INIT_FC_UNIFORM) && v->rank >= 2;
        double scale = 1.0 / sqrt(v->fan_in > 0 ? v->fan_in : 1);
        for (size_t j = 0; j < v->count; j++)
            p[j] = is_weight ? (float)(scale * normalish()) : v->init == RNC_INIT_ONE ? 1.0f : 0.0f;
    }
}

static int all_finite(const float *p, size_t n, size_t *bad) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) {
            *bad = i;
            return 0;
        }
    return 1;
}

/* The parameter view holding float index `i`, for messages. */
static const char *view_of(const rnc_model *m, size_t i) {
    for (int v = 0; v < m->n_params; v++)
        if (i >= m->params[v].offset && i < m->params[v].offset + m->params[v].count)
            return m->params[v].name;
    return "(no view)";
}

int main(void) {
    const rnc_model *m = &MODEL;
    name = m->name;
    if (m->abi_version != RNC_ABI_VERSION)
        return fail("ABI version %d, expected %d", m->abi_version, RNC_ABI_VERSION);

    /* The views must tile the buffers exactly: every float in one view. */
    size_t covered = 0;
    for (int i = 0; i < m->n_params; i++) {
        covered += m->params[i].count;
        if (m->params[i].offset + m->params[i].count > m->param_count)
            return fail("parameter view %s runs past param_count", m->params[i].name);
    }
    if (covered != m->param_count)
        return fail("parameter views cover %zu floats, param_count is %zu", covered, m->param_count);

    rnc_net net = {.model = m};
    net.params = alloc64(m->param_count * sizeof(float));
    net.grads = alloc64(m->param_count * sizeof(float));
    net.state = alloc64(m->state_count * sizeof(float));
    net.work = alloc64(m->work_bytes);
    net.scratch_slots = omp_get_max_threads();
    net.scratch = alloc64(m->thread_scratch_bytes * net.scratch_slots + 64);
    init_views(net.params, m->params, m->n_params);
    init_views(net.state, m->state, m->n_state);

    const int B = m->batch;
    const size_t pixels = (size_t)B * m->height * m->width * m->channels;
    float *images = alloc64(pixels * sizeof(float));
    int32_t *labels = alloc64((size_t)B * sizeof(int32_t));
    float *logits = alloc64((size_t)B * m->classes * sizeof(float));
    for (size_t i = 0; i < pixels; i++)
        images[i] = (float)normalish();
    for (int i = 0; i < B; i++)
        labels[i] = (int32_t)(uniform() * m->classes) % m->classes;

    /* Poison the gradients: train_step must overwrite every one. */
    for (size_t i = 0; i < m->param_count; i++)
        net.grads[i] = NAN;

    rnc_step_stats s1 = {0};
    m->train_step(&net, images, labels, logits, &s1);
    if (!isfinite(s1.loss) || !(s1.loss > 0))
        return fail("first loss %g is not finite and positive", s1.loss);
    if (s1.correct < 0 || s1.correct > B)
        return fail("%d correct out of a batch of %d", s1.correct, B);
    size_t bad;
    if (!all_finite(logits, (size_t)B * m->classes, &bad))
        return fail("logit %zu is %g", bad, logits[bad]);
    if (!all_finite(net.grads, m->param_count, &bad))
        return fail("gradient %zu (%s) is %g", bad, view_of(m, bad), net.grads[bad]);

    /* Plain SGD, p -= 0.1 g; every parameter tensor must move. */
    float *before = alloc64(m->param_count * sizeof(float));
    memcpy(before, net.params, m->param_count * sizeof(float));
    for (size_t i = 0; i < m->param_count; i++)
        net.params[i] -= 0.1f * net.grads[i];
    int unchanged = 0;
    for (int v = 0; v < m->n_params; v++) {
        const rnc_tensor_info *t = &m->params[v];
        int moved = 0;
        for (size_t j = t->offset; j < t->offset + t->count && !moved; j++)
            moved = net.params[j] != before[j];
        if (!moved) {
            if (unchanged < 5)
                printf("FAIL %s: parameter %s did not change after the SGD step\n", name, t->name);
            unchanged++;
        }
    }
    if (unchanged)
        return fail("%d parameter tensors unchanged by the SGD step", unchanged);

    rnc_step_stats s2 = {0};
    m->train_step(&net, images, labels, logits, &s2);
    if (!isfinite(s2.loss) || !(s2.loss > 0))
        return fail("second loss %g is not finite and positive", s2.loss);
    if (!all_finite(net.grads, m->param_count, &bad))
        return fail("second-step gradient %zu (%s) is %g", bad, view_of(m, bad), net.grads[bad]);
    if (!all_finite(net.state, m->state_count, &bad))
        return fail("BN running statistic %zu is %g", bad, net.state[bad]);

    /* Evaluation mode with the running statistics. */
    m->infer(&net, images, logits);
    if (!all_finite(logits, (size_t)B * m->classes, &bad))
        return fail("inference logit %zu is %g", bad, logits[bad]);

    printf("ok %s: batch %d, %zu parameters in %d tensors, loss %.4f then %.4f\n", name, B, m->param_count,
           m->n_params, s1.loss, s2.loss);
    free(before);
    free(logits);
    free(labels);
    free(images);
    free(net.work);
    free(net.scratch);
    free(net.state);
    free(net.grads);
    free(net.params);
    return 0;
}
