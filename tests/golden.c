/* golden.c - reader for tools/torch_golden.py's text format. */
#include "golden.h"
#include <math.h>
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

int golden_load(const char *path, golden *g) {
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    char line[256];
    if (!fgets(line, sizeof line, f) || strncmp(line, "rnc-golden 1 ", 13) != 0) {
        fprintf(stderr, "%s: not an rnc golden file\n", path);
        fclose(f);
        return -1;
    }
    golden_array *arrays[] = {&g->params, &g->state, &g->images, &g->labels, &g->loss,
                              &g->logits, &g->grads, &g->state_after, &g->eval_logits};
    const char *keys[] = {"params", "state", "images", "labels", "loss",
                          "logits", "grads", "state_after", "eval_logits"};
    int rc = 0;
    for (int i = 0; i < 9 && rc == 0; i++)
        rc = read_array(f, path, keys[i], arrays[i]);
    fclose(f);
    return rc;
}

void golden_free(golden *g) {
    golden_array *arrays[] = {&g->params, &g->state, &g->images, &g->labels, &g->loss,
                              &g->logits, &g->grads, &g->state_after, &g->eval_logits};
    for (int i = 0; i < 9; i++)
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
