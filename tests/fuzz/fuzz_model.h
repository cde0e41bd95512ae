/* fuzz_model.h - a tiny model description for the runtime's fuzz targets
 * and their seeds (nothing is ever trained with it). */
#ifndef RNC_FUZZ_MODEL_H
#define RNC_FUZZ_MODEL_H

#include "rnc/model.h"

static void fuzz_step(const rnc_net *net, const float *images, const int32_t *labels, float *logits,
                      rnc_step_stats *stats) {
    (void)net, (void)images, (void)labels, (void)logits;
    stats->loss = 0;
    stats->correct = 0;
}

static void fuzz_infer(const rnc_net *net, const float *images, float *logits) {
    (void)net, (void)images, (void)logits;
}

static const rnc_tensor_info fuzz_params[] = {
    {"fc.weight", 0, 16, 2, {4, 4}, RNC_INIT_FC_UNIFORM, 4, 4},
    {"fc.bias", 16, 4, 1, {4}, RNC_INIT_ZERO, 4, 4},
};
static const rnc_tensor_info fuzz_state[] = {
    {"bn.running_mean", 0, 2, 1, {2}, RNC_INIT_ZERO, 0, 0},
    {"bn.running_var", 2, 2, 1, {2}, RNC_INIT_ONE, 0, 0},
};
static const char *const fuzz_sites[] = {"fc: fc fuzz"};

static const rnc_model fuzz_model = {
    .abi_version = RNC_ABI_VERSION,
    .name = "fuzz",
    .spec_file = "fuzz.spec",
    .rnc_version = "fuzz",
    .schedule = "none",
    .batch = 4, .height = 32, .width = 32, .channels = 3, .classes = 10,
    .param_count = 20, .state_count = 4, .work_bytes = 64,
    .n_params = 2, .params = fuzz_params, .n_state = 2, .state = fuzz_state,
    .recipe = {.batch = 4, .epochs = 1, .lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4, .lr_decay = 0.1},
    .bn_momentum = 0.1,
    .train_step = fuzz_step,
    .infer = fuzz_infer,
    .n_sites = 1,
    .sites = fuzz_sites,
};

/* 16 synthetic images: the training set a fuzzed resume is checked against
 * (fuzz_seeds makes its checkpoints' run states match it). */
#ifdef RNC_RUNTIME_H
static rnc_dataset fuzz_images(void) {
    static uint8_t pixels[16 * RNC_CIFAR_IMAGE_BYTES];
    static int32_t labels[16];
    for (int i = 0; i < 16; i++)
        labels[i] = i % 10;
    return (rnc_dataset){16, pixels, labels, 0};
}
#endif

#endif
