/* golden.c - reader for tools/torch_golden.py's text format. */
#include "golden.h"
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_array(FILE *f, const char *path, const char *key, golden_array *a) {
    char got[64];
    size_t n;
    if (fscanf(f, "%63s %zu", got, &n) != 2 || strcmp(got, key) != 0) {
        fprintf(stderr, "%s: expected section '%s'\n", path, key);
        return -1;
    }
    a->n = n;
    a->v = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        if (fscanf(f, "%lf", &a->v[i]) != 1) {
            fprintf(stderr, "%s: section '%s' is truncated at value %zu\n", path, key, i);
            return -1;
        }
    return 0;
}

static int read_probes(FILE *f, const char *path, golden *g) {
    int k, s;
    if (fscanf(f, " grad_probes %d %d %d", &g->n_probe_tensors, &k, &s) != 3 || g->n_probe_tensors < 0 ||
        k != GOLDEN_PROJECTIONS || s != GOLDEN_SAMPLES) {
        fprintf(stderr, "%s: expected section 'grad_probes N %d %d'\n", path, GOLDEN_PROJECTIONS, GOLDEN_SAMPLES);
        return -1;
    }
    golden_array *a = &g->probes;
    a->n = (size_t)g->n_probe_tensors * (k + s);
    a->v = malloc(sizeof(double) * (a->n ? a->n : 1));
    for (size_t i = 0; i < a->n; i++)
        if (fscanf(f, "%lf", &a->v[i]) != 1) {
            fprintf(stderr, "%s: section 'grad_probes' is truncated at value %zu\n", path, i);
            return -1;
        }
    return 0;
}

int golden_load(const char *path, golden *g) {
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    char line[256];
    unsigned long long seed = 0;
    if (!fgets(line, sizeof line, f) || sscanf(line, "rnc-golden %d", &g->version) != 1 ||
        (g->version == 2 && !strstr(line, " seed ")) || (g->version != 1 && g->version != 2)) {
        fprintf(stderr, "%s: not an rnc golden file (format 1 or 2)\n", path);
        fclose(f);
        return -1;
    }
    if (g->version == 2)
        sscanf(strstr(line, " seed "), " seed %llu", &seed);
    g->seed = seed;
    golden_array *arrays[] = {&g->params, &g->state, &g->images, &g->labels, &g->loss,
                              &g->logits, &g->grads, &g->state_after, &g->eval_logits};
    const char *keys[] = {"params", "state", "images", "labels", "loss",
                          "logits", "grads", "state_after", "eval_logits"};
    int rc = 0;
    for (int i = 0; i < 9 && rc == 0; i++) {
        bool listed = g->version == 1 || (arrays[i] != &g->params && arrays[i] != &g->grads);
        if (listed)
            rc = read_array(f, path, keys[i], arrays[i]);
        else if (arrays[i] == &g->grads)
            rc = read_probes(f, path, g);
    }
    fclose(f);
    return rc;
}

void golden_free(golden *g) {
    golden_array *arrays[] = {&g->params, &g->state, &g->images, &g->labels, &g->loss,
                              &g->logits, &g->grads, &g->state_after, &g->eval_logits, &g->probes};
    for (int i = 0; i < 10; i++)
        free(arrays[i]->v);
}

double rel_error(const float *a, const double *b, size_t n, double floor) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    den = sqrt(den);
    return sqrt(num) / (den > floor ? den : floor);
}

uint64_t golden_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static bool ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && !strcmp(s + n - m, tail);
}

void golden_param_init(const rnc_model *m, uint64_t seed, float *params) {
    for (int t = 0; t < m->n_params; t++) {
        const rnc_tensor_info *p = &m->params[t];
        double fan_in = 1;
        for (int d = 0; d + 1 < p->rank; d++)
            fan_in *= p->shape[d];
        for (size_t i = 0; i < p->count; i++) {
            double u = (double)(golden_mix((seed << 40) ^ (p->offset + i)) >> 11) * 0x1.0p-53 - 0.5, v;
            if (ends_with(p->name, ".gamma"))
                v = 1 + 0.4 * u;
            else if (ends_with(p->name, ".beta") || ends_with(p->name, ".bias"))
                v = 0.4 * u;
            else
                v = 2 * u * sqrt(6.0 / fan_in);
            params[p->offset + i] = (float)v;
        }
    }
}

double golden_probe_sign(uint64_t seed, int tensor, int k, size_t i) {
    uint64_t h = golden_mix((((seed << 16) ^ (uint64_t)(tensor * GOLDEN_PROJECTIONS + k + 1)) << 32) ^ i);
    return h >> 63 ? 1.0 : -1.0;
}

size_t golden_probe_index(uint64_t seed, int tensor, int j, size_t count) {
    return golden_mix((((seed << 20) ^ (uint64_t)(tensor + 1)) << 24) ^ (uint64_t)(j + 0x5A5A)) % count;
}

double golden_probe_error(const golden *gd, int t, const float *g, size_t count, double floor) {
    const double *ref = gd->probes.v + (size_t)t * (GOLDEN_PROJECTIONS + GOLDEN_SAMPLES);
    float proj[GOLDEN_PROJECTIONS], samples[GOLDEN_SAMPLES];
    for (int k = 0; k < GOLDEN_PROJECTIONS; k++) {
        double s = 0;
        for (size_t i = 0; i < count; i++)
            s += golden_probe_sign(gd->seed, t, k, i) * g[i];
        proj[k] = (float)s;
    }
    for (int j = 0; j < GOLDEN_SAMPLES; j++)
        samples[j] = g[golden_probe_index(gd->seed, t, j, count)];
    double ep = rel_error(proj, ref, GOLDEN_PROJECTIONS, floor);
    double es = rel_error(samples, ref + GOLDEN_PROJECTIONS, GOLDEN_SAMPLES, floor);
    return ep > es ? ep : es;
}
