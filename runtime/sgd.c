/* sgd.c - stochastic gradient descent with momentum and weight decay. */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include <stdlib.h>

#include "rnc/runtime.h"

int rnc_sgd_init(rnc_sgd *s, size_t n, double momentum, double weight_decay, rnc_err *err) {
    s->n = n;
    s->momentum = momentum;
    s->weight_decay = weight_decay;
    s->velocity = rnc_alloc_aligned(n * sizeof(float));  /* zeroed: v starts at 0 */
    if (!s->velocity)
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for %zu momentum buffers", n);
    return RNC_OK;
}

void rnc_sgd_step(rnc_sgd *s, float *params, const float *grads, double lr) {
    /* float arithmetic like torch.optim.SGD on float32 tensors. With v = 0
     * initially, the first step gives v = g, which is PyTorch's buffer init. */
    const float m = (float)s->momentum, wd = (float)s->weight_decay, rate = (float)lr;
    float *v = s->velocity;
    const long n = (long)s->n;
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float g = grads[i] + wd * params[i];
        v[i] = m * v[i] + g;
        params[i] -= rate * v[i];
    }
}

void rnc_sgd_free(rnc_sgd *s) {
    free(s->velocity);
    s->velocity = NULL;
    s->n = 0;
}
