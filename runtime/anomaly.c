/* anomaly.c - --detect-anomaly: after each call of the training step, every
 * float tensor the call wrote (model->site_writes: activations, saved
 * statistics, activation and parameter gradients, BN running statistics) is
 * checked for NaN and Inf; the first one found names the layer, the tensor
 * and the call.  After the SGD step the parameters are checked too.  The
 * checks read every tensor once more, so a step takes longer (the tests
 * measure nothing here). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct rnc_anomaly {
    const rnc_model *m;
    int *first;          /* site -> its first site_write (n_sites + 1 entries) */
    int found;
    int site, write;
    size_t index;
    float value;
};

static int first_bad(const float *p, size_t n, size_t *at) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) {
            *at = i;
            return 1;
        }
    return 0;
}

static void check_site(const rnc_net *net, int site, const float *params, const float *grads, const float *state,
                       const char *work) {
    rnc_anomaly *a = net->check_data;
    if (a->found || site < 0 || site >= a->m->n_sites)
        return;
    for (int w = a->first[site]; w < a->first[site + 1]; w++) {
        const rnc_site_write *sw = &a->m->site_writes[w];
        const float *base = sw->buffer == RNC_BUF_WORK     ? (const float *)(const void *)work
                            : sw->buffer == RNC_BUF_PARAMS ? params
                            : sw->buffer == RNC_BUF_GRADS  ? grads
                                                           : state;
        size_t at;
        if (base && first_bad(base + sw->offset, sw->count, &at)) {
            a->found = 1;
            a->site = site;
            a->write = w;
            a->index = at;
            a->value = base[sw->offset + at];
            return;
        }
    }
}

int rnc_anomaly_start(rnc_net *net, rnc_anomaly **out, rnc_err *err) {
    const rnc_model *m = net->model;
    *out = NULL;
    if (m->n_sites <= 0 || m->n_site_writes <= 0 || !m->site_writes)
        return rnc_fail(err, RNC_E_ARG, "network %s was generated without the tables --detect-anomaly needs "
                                        "(regenerate it with this rnc)", m->name);
    rnc_anomaly *a = calloc(1, sizeof *a);
    int *first = a ? malloc(((size_t)m->n_sites + 1) * sizeof *first) : NULL;
    if (!a || !first) {
        free(a);
        return rnc_fail(err, RNC_E_NOMEM, "out of memory");
    }
    a->m = m;
    a->first = first;
    int w = 0;
    for (int s = 0; s <= m->n_sites; s++) {
        while (w < m->n_site_writes && m->site_writes[w].site < s)
            w++;
        first[s] = w;
    }
    net->check = check_site;
    net->check_data = a;
    *out = a;
    return RNC_OK;
}

void rnc_anomaly_stop(rnc_net *net, rnc_anomaly *a) {
    net->check = NULL;
    net->check_data = NULL;
    if (a)
        free(a->first);
    free(a);
}

static const char *what_of(const rnc_site_write *sw) {
    switch (sw->buffer) {
    case RNC_BUF_GRADS: return "parameter gradient";
    case RNC_BUF_STATE: return "BN running statistic";
    case RNC_BUF_PARAMS: return "parameter";
    default: return strncmp(sw->tensor, "d.", 2) ? "output" : "gradient";
    }
}

int rnc_anomaly_after_step(const rnc_anomaly *a, int64_t step, rnc_err *err) {
    const rnc_model *m = a->m;
    if (a->found) {
        const rnc_site_write *sw = &m->site_writes[a->write];
        const char *site = m->sites[a->site];
        return rnc_fail(err, RNC_E_ARG,
                        "anomaly at iteration %lld: the first non-finite value of the step is %s in %s %s "
                        "(element %zu of %zu), written by call %d, %s",
                        (long long)step, isnan(a->value) ? "NaN" : a->value > 0 ? "+Inf" : "-Inf", what_of(sw),
                        sw->tensor, a->index, sw->count, a->site, site);
    }
    return RNC_OK;
}

int rnc_anomaly_after_sgd(const rnc_anomaly *a, const rnc_net *net, int64_t step, double lr, rnc_err *err) {
    const rnc_model *m = a->m;
    for (int i = 0; i < m->n_params; i++) {
        size_t at;
        const rnc_tensor_info *t = &m->params[i];
        if (first_bad(net->params + t->offset, t->count, &at))
            return rnc_fail(err, RNC_E_ARG,
                            "anomaly at iteration %lld: the SGD step (lr %g) made parameter %s non-finite "
                            "(element %zu is %s) from finite gradients", (long long)step, lr, t->name, at,
                            isnan(net->params[t->offset + at]) ? "NaN" : "Inf");
    }
    return RNC_OK;
}
