/* infer_ref.c - the training binary's side of the inference-file test
 * (tests/infer_cli.sh): MODEL, trained for a few steps so that its batch
 * norms have real running statistics, exported as DIR/w.safetensors, and
 * its evaluation-mode logits (model->infer, batch by batch) of N generated
 * images: DIR/images.f32 and DIR/logits.f32 (raw floats).
 * Usage: infer_ref DIR N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rnc/runtime.h"
#include "rnc/safetensors.h"

extern const rnc_model MODEL;

static int write_floats(const char *dir, const char *name, const float *v, size_t n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(v, sizeof *v, n, f) == n;
    if (f)
        ok = (fclose(f) == 0) && ok;
    if (!ok)
        fprintf(stderr, "infer_ref: cannot write %s\n", path);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: infer_ref DIR N\n");
        return 2;
    }
    const char *dir = argv[1];
    const int n = atoi(argv[2]);
    const rnc_model *m = &MODEL;
    rnc_err err;
    rnc_net net;
    rnc_sgd sgd;
    if (rnc_net_alloc(&net, m, &err) || rnc_sgd_init(&sgd, m->param_count, 0.9, 1e-4, &err)) {
        fprintf(stderr, "infer_ref: %s\n", err.msg);
        return 1;
    }
    rnc_net_init(&net, 11);
    const size_t image = (size_t)m->height * m->width * m->channels, B = (size_t)m->batch;
    float *x = calloc(B * image, sizeof(float)), *logits = calloc(B * (size_t)m->classes, sizeof(float));
    int32_t *labels = calloc(B, sizeof(int32_t));
    float *images = calloc((size_t)n * image + 1, sizeof(float)), *out = calloc((size_t)n * m->classes + 1, sizeof(float));
    rnc_rng r = rnc_rng_stream(11, 77, 0, 0);
    for (int step = 0; step < 4; step++) {   /* running statistics away from 0 and 1 */
        for (size_t i = 0; i < B * image; i++)
            x[i] = (float)(0.3 + 1.7 * rnc_rng_normal(&r));
        for (size_t i = 0; i < B; i++)
            labels[i] = (int32_t)rnc_rng_below(&r, (uint32_t)m->classes);
        rnc_step_stats st;
        m->train_step(&net, x, labels, NULL, &st);
        rnc_sgd_step(&sgd, net.params, net.grads, 0.05);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    if (rnc_weights_export(&net, path, &err)) {
        fprintf(stderr, "infer_ref: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < (size_t)n * image; i++)
        images[i] = (float)(0.3 + 1.7 * rnc_rng_normal(&r));
    for (int first = 0; first < n; first += (int)B) {
        int count = n - first < (int)B ? n - first : (int)B;
        memset(x, 0, B * image * sizeof(float));
        memcpy(x, images + (size_t)first * image, (size_t)count * image * sizeof(float));
        m->infer(&net, x, logits);
        memcpy(out + (size_t)first * m->classes, logits, (size_t)count * m->classes * sizeof(float));
    }
    int rc = write_floats(dir, "images.f32", images, (size_t)n * image) ||
             write_floats(dir, "logits.f32", out, (size_t)n * m->classes);
    printf("infer_ref: %s, %d images, weights and logits in %s\n", m->name, n, dir);
    free(x), free(logits), free(labels), free(images), free(out);
    rnc_sgd_free(&sgd);
    rnc_net_free(&net);
    return rc;
}
