/* hello.c - a program of yours with an rnc network in it: one training step
 * and one inference on made-up data, through the runtime's API
 * (rnc/runtime.h).  HELLO_MODEL is the network's rnc_model_<name>. */
#include <stdio.h>
#include <stdlib.h>

#include "rnc/runtime.h"

#ifndef HELLO_MODEL
#define HELLO_MODEL rnc_model_resnet20
#endif
extern const rnc_model HELLO_MODEL;

int main(void) {
    const rnc_model *m = &HELLO_MODEL;
    rnc_net net;
    rnc_err err;
    if (rnc_net_alloc(&net, m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    rnc_net_init(&net, 1);
    size_t n = (size_t)m->batch * m->height * m->width * m->channels;
    float *images = calloc(n, sizeof(float)), *logits = calloc((size_t)m->batch * m->classes, sizeof(float));
    int32_t *labels = calloc((size_t)m->batch, sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        images[i] = (float)(i % 7) - 3;
    rnc_step_stats st;
    m->train_step(&net, images, labels, logits, &st);
    m->infer(&net, images, logits);
    printf("hello: %s, %d classes, loss %.4f, first logit %.4f\n", m->name, m->classes, st.loss, logits[0]);
    free(images), free(logits), free(labels);
    rnc_net_free(&net);
    return st.loss > 0 ? 0 : 1;
}
