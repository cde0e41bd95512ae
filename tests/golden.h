/* golden.h - reading the golden files written by tools/torch_golden.py. */
#ifndef RNC_TEST_GOLDEN_H
#define RNC_TEST_GOLDEN_H

#include <stddef.h>

typedef struct {
    double *v;
    size_t n;
} golden_array;

typedef struct {
    golden_array params, state, images, labels, loss, logits, grads, state_after, eval_logits;
} golden;

/* Returns 0 on success; on failure prints why and returns -1. */
int golden_load(const char *path, golden *g);
void golden_free(golden *g);

/* ||a - b|| / max(||b||, floor), over n values. */
double rel_error(const float *a, const double *b, size_t n, double floor);

#endif
