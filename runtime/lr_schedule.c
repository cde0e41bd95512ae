/* lr_schedule.c - the step learning-rate schedule of He et al. (2016).
 *
 * CIFAR: 0.1, divided by 10 at 32k and 48k iterations (or epochs 91 and 136
 * with 45k images at batch 128); the 110-layer net warms up at 0.01 for the
 * first ~400 iterations. Everything here is a function of the iteration
 * number alone, so a resumed run gets the same rates.
 */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include "rnc/runtime.h"

double rnc_lr_at(const rnc_recipe *r, int64_t it, int64_t iters_per_epoch) {
    if (it < r->warmup_iterations)
        return r->warmup_lr;
    int64_t now = it;
    if (!r->lr_steps_in_iterations)
        now = iters_per_epoch > 0 ? it / iters_per_epoch : 0;
    double lr = r->lr;
    for (int i = 0; i < r->n_lr_steps && i < RNC_MAX_LR_STEPS; i++)
        if (now >= r->lr_steps[i])
            lr *= r->lr_decay;
    return lr;
}
