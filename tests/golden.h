/* golden.h - reading the golden files written by tools/torch_golden.py. */
#ifndef RNC_TEST_GOLDEN_H
#define RNC_TEST_GOLDEN_H

#include <stddef.h>
#include <stdint.h>
#include "rnc/model.h"

typedef struct {
    double *v;
    size_t n;
} golden_array;

/* Format 1 lists params and grads in full.  Format 2 (--compact) has
 * neither: params come from golden_param_init(seed), and each gradient
 * tensor t is given by probes[t]: GOLDEN_PROJECTIONS projections onto
 * golden_probe_sign vectors, then GOLDEN_SAMPLES entries at
 * golden_probe_index. */
enum { GOLDEN_PROJECTIONS = 16, GOLDEN_SAMPLES = 64 };

typedef struct {
    int version;
    uint64_t seed;
    golden_array params, state, images, labels, loss, logits, grads, state_after, eval_logits;
    golden_array probes;   /* format 2: n_probe_tensors * (PROJECTIONS + SAMPLES) values */
    int n_probe_tensors;
} golden;

/* Returns 0 on success; on failure prints why and returns -1. */
int golden_load(const char *path, golden *g);
void golden_free(golden *g);

/* ||a - b|| / max(||b||, floor), over n values. */
double rel_error(const float *a, const double *b, size_t n, double floor);

/* Format 2's generators (the same as tools/torch_golden.py's). */
uint64_t golden_mix(uint64_t x);
void golden_param_init(const rnc_model *m, uint64_t seed, float *params);
double golden_probe_sign(uint64_t seed, int tensor, int k, size_t i);
size_t golden_probe_index(uint64_t seed, int tensor, int j, size_t count);

/* Relative error of gradient tensor t (count values at g) against the
 * probes: the larger of the projections' and the samples' relative L2
 * errors. */
double golden_probe_error(const golden *gd, int t, const float *g, size_t count, double floor);

#endif
