/* net.c - a model's buffers, their initialization, and evaluation. */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "rnc/runtime.h"

static int check_tensors(const rnc_model *m, const rnc_tensor_info *t, int n, size_t total,
                         const char *what, rnc_err *err) {
    for (int i = 0; i < n; i++) {
        size_t product = 1;
        for (int d = 0; d < t[i].rank; d++)
            product *= (size_t)t[i].shape[d];
        if (t[i].rank < 0 || t[i].rank > 4 || product != t[i].count)
            return rnc_fail(err, RNC_E_FORMAT, "network %s: %s tensor %s: shape does not match count %zu",
                            m->name, what, t[i].name, t[i].count);
        if (t[i].offset > total || t[i].count > total - t[i].offset)
            return rnc_fail(err, RNC_E_FORMAT, "network %s: %s tensor %s lies outside the buffer",
                            m->name, what, t[i].name);
        if ((t[i].init == RNC_INIT_HE_NORMAL && t[i].fan_out <= 0) ||
            (t[i].init == RNC_INIT_FC_UNIFORM && t[i].fan_in <= 0))
            return rnc_fail(err, RNC_E_FORMAT, "network %s: %s tensor %s has no fan for its init",
                            m->name, what, t[i].name);
    }
    return RNC_OK;
}

int rnc_model_check(const rnc_model *m, rnc_err *err) {
    if (m->abi_version != RNC_ABI_VERSION)
        return rnc_fail(err, RNC_E_MISMATCH,
                        "network %s was generated for runtime ABI %d, this runtime is ABI %d",
                        m->name ? m->name : "?", m->abi_version, RNC_ABI_VERSION);
    if (!m->name || !m->train_step || !m->infer)
        return rnc_fail(err, RNC_E_FORMAT, "model description is incomplete");
    if (m->batch <= 0 || m->height <= 0 || m->width <= 0 || m->channels <= 0 || m->classes <= 0)
        return rnc_fail(err, RNC_E_FORMAT, "network %s: bad batch or input shape", m->name);
    if (m->n_sites < 0 || (m->n_sites > 0 && !m->sites))
        return rnc_fail(err, RNC_E_FORMAT, "network %s: bad profile call-site table", m->name);
    int rc = check_tensors(m, m->params, m->n_params, m->param_count, "parameter", err);
    if (rc == RNC_OK)
        rc = check_tensors(m, m->state, m->n_state, m->state_count, "state", err);
    return rc;
}

void rnc_net_free(rnc_net *net) {
    free(net->params);
    free(net->grads);
    free(net->state);
    free(net->work);
    free(net->scratch);
    *net = (rnc_net){0};
}

int rnc_net_alloc(rnc_net *net, const rnc_model *m, rnc_err *err) {
    *net = (rnc_net){0};
    /* Refused before allocating: zero-filling more than the machine has
     * would end with the kernel killing the process. */
    const char *what;
    double need = rnc_net_bytes(m, omp_get_max_threads(), 0), have = rnc_machine_memory(NULL, &what);
    if (have > 0 && need > have)
        return rnc_fail(err, RNC_E_NOMEM, "network %s at batch %d needs %.1f GiB for its buffers, more than "
                        "%s (%.1f GiB); nothing was allocated", m->name, m->batch, need / 1073741824.0, what,
                        have / 1073741824.0);
    net->model = m;
    net->params = rnc_alloc_aligned(m->param_count * sizeof(float));
    net->grads = rnc_alloc_aligned(m->param_count * sizeof(float));
    net->state = rnc_alloc_aligned(m->state_count * sizeof(float));
    net->work = rnc_alloc_aligned(m->work_bytes);
    /* Threads set after this (omp_set_num_threads) beyond the slots are not
     * used by the kernels that need one. */
    net->scratch_slots = omp_get_max_threads();
    net->scratch = rnc_alloc_aligned(m->thread_scratch_bytes * (size_t)net->scratch_slots);
    if (!net->params || !net->grads || !net->state || !net->work || !net->scratch) {
        rnc_net_free(net);
        return rnc_fail(err, RNC_E_NOMEM, "network %s: out of memory (%zu parameters, %zu work bytes)",
                        m->name, m->param_count, m->work_bytes);
    }
    return RNC_OK;
}

static void init_tensor(float *buf, const rnc_tensor_info *t, rnc_rng *r) {
    float *p = buf + t->offset;
    switch (t->init) {
    case RNC_INIT_ZERO:
        memset(p, 0, t->count * sizeof *p);
        break;
    case RNC_INIT_ONE:
        for (size_t i = 0; i < t->count; i++)
            p[i] = 1.0f;
        break;
    case RNC_INIT_HE_NORMAL: {
        /* He et al. 2015, "fan_out" mode as in torchvision's ResNet. */
        double std = sqrt(2.0 / t->fan_out);
        for (size_t i = 0; i < t->count; i++)
            p[i] = (float)(std * rnc_rng_normal(r));
        break;
    }
    case RNC_INIT_FC_UNIFORM: {
        double bound = 1.0 / sqrt((double)t->fan_in);
        for (size_t i = 0; i < t->count; i++)
            p[i] = (float)(bound * (2.0 * rnc_rng_uniform(r) - 1.0));
        break;
    }
    }
}

void rnc_net_init(rnc_net *net, uint64_t seed) {
    const rnc_model *m = net->model;
    memset(net->params, 0, m->param_count * sizeof(float));
    memset(net->grads, 0, m->param_count * sizeof(float));
    memset(net->state, 0, m->state_count * sizeof(float));
    /* One stream per tensor: adding a layer does not reshuffle the others. */
    for (int i = 0; i < m->n_params; i++) {
        rnc_rng r = rnc_rng_stream(seed, RNC_STREAM_INIT, (uint64_t)i, 0);
        init_tensor(net->params, &m->params[i], &r);
    }
    for (int i = 0; i < m->n_state; i++) {
        rnc_rng r = rnc_rng_stream(seed, RNC_STREAM_INIT, (uint64_t)i, 1);
        init_tensor(net->state, &m->state[i], &r);
    }
}

void rnc_logits_stats(const float *logits, const int32_t *labels, int n, int classes,
                      double *loss_sum, int *correct) {
    double loss = 0;
    int hits = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * classes;
        int best = 0;
        for (int k = 1; k < classes; k++)
            if (z[k] > z[best])
                best = k;
        /* log-sum-exp shifted by the max so large logits do not overflow. */
        double sum = 0;
        for (int k = 0; k < classes; k++)
            sum += exp((double)z[k] - (double)z[best]);
        loss += log(sum) + (double)z[best] - (double)z[labels[i]];
        hits += best == labels[i];
    }
    *loss_sum = loss;
    *correct = hits;
}

int rnc_evaluate(const rnc_net *net, const rnc_dataset *ds, rnc_eval_result *res, rnc_err *err) {
    const rnc_model *m = net->model;
    int rc = rnc_cifar_check_model(m, err);  /* batches are built as CIFAR images */
    if (rc)
        return rc;
    size_t image_floats = (size_t)m->height * m->width * m->channels;
    float *images = rnc_alloc_aligned((size_t)m->batch * image_floats * sizeof(float));
    float *logits = rnc_alloc_aligned((size_t)m->batch * m->classes * sizeof(float));
    int32_t *labels = rnc_alloc_aligned((size_t)m->batch * sizeof(int32_t));
    if (!images || !logits || !labels) {
        free(images);
        free(logits);
        free(labels);
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for an evaluation batch");
    }
    double loss = 0;
    long correct = 0;
    for (int first = 0; first < ds->n; first += m->batch) {
        int count = ds->n - first < m->batch ? ds->n - first : m->batch;
        rnc_make_batch(ds, NULL, first, count, m->batch, 0, 0, 0, images, labels);
        m->infer(net, images, logits);
        /* Only the real rows count; the padding rows are ignored. */
        double l;
        int c;
        rnc_logits_stats(logits, labels, count, m->classes, &l, &c);
        loss += l;
        correct += c;
    }
    free(images);
    free(logits);
    free(labels);
    res->images = ds->n;
    res->loss = ds->n ? loss / ds->n : 0;
    res->accuracy = ds->n ? (double)correct / ds->n : 0;
    return RNC_OK;
}

/* ---- identity and size ----------------------------------------------------- */

static void hash_str(XXH3_state_t *h, const char *s) {
    s = s ? s : "";
    XXH3_64bits_update(h, s, strlen(s) + 1);
}

static void hash_tensors(XXH3_state_t *h, const rnc_tensor_info *t, int n) {
    XXH3_64bits_update(h, &n, sizeof n);
    for (int i = 0; i < n; i++) {
        hash_str(h, t[i].name);
        uint64_t v[9] = {t[i].offset, t[i].count, (uint64_t)t[i].rank, (uint64_t)t[i].shape[0],
                         (uint64_t)t[i].shape[1], (uint64_t)t[i].shape[2], (uint64_t)t[i].shape[3],
                         (uint64_t)t[i].init, (uint64_t)t[i].fan_in * 65536 + (uint64_t)t[i].fan_out};
        XXH3_64bits_update(h, v, sizeof v);
    }
}

uint64_t rnc_model_code_id(const rnc_model *m) {
    XXH3_state_t *h = XXH3_createState();
    if (!h)
        return 0;
    XXH3_64bits_reset(h);
    hash_str(h, m->name);
    hash_str(h, m->rnc_version);
    hash_str(h, m->schedule);
    /* ranks: code for one process of N (rnc --ranks N) is not one process's code at the same batch */
    uint64_t v[10] = {(uint64_t)m->abi_version, (uint64_t)m->batch, (uint64_t)m->height, (uint64_t)m->width,
                      (uint64_t)m->channels, (uint64_t)m->classes, m->param_count, m->state_count, m->work_bytes,
                      (uint64_t)(m->ranks > 1 ? m->ranks : 1)};
    XXH3_64bits_update(h, v, sizeof v);
    XXH3_64bits_update(h, &m->thread_scratch_bytes, sizeof m->thread_scratch_bytes);
    XXH3_64bits_update(h, &m->bn_momentum, sizeof m->bn_momentum);
    hash_tensors(h, m->params, m->n_params);
    hash_tensors(h, m->state, m->n_state);
    XXH3_64bits_update(h, &m->n_sites, sizeof m->n_sites);
    for (int i = 0; i < m->n_sites; i++)
        hash_str(h, m->sites[i]);
    uint64_t id = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return id;
}

double rnc_net_bytes(const rnc_model *m, int threads, int sgd) {
    return 4.0 * ((2.0 + (sgd ? 1 : 0)) * (double)m->param_count + (double)m->state_count) +
           (double)m->work_bytes + (double)threads * (double)m->thread_scratch_bytes;
}
