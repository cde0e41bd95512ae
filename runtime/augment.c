/* augment.c - epoch order, the paper's augmentation and batch assembly.
 *
 * He et al. (2016), section 4.2: "4 pixels are padded on each side, and a
 * 32x32 crop is randomly sampled from the padded image or its horizontal
 * flip." We follow the common PyTorch recipe exactly: RandomCrop(32,
 * padding=4) pads raw pixels with 0, RandomHorizontalFlip(p=0.5), then
 * Normalize - so a padded pixel becomes (0 - mean) / std.
 */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include <string.h>

#include "rnc/runtime.h"

static inline float normalize(uint8_t v, int c) {
    return ((float)v * (1.0f / 255.0f) - rnc_cifar_mean[c]) / rnc_cifar_std[c];
}

rnc_aug rnc_aug_draw(uint64_t seed, int64_t epoch, int64_t index, int pad) {
    rnc_rng r = rnc_rng_stream(seed, RNC_STREAM_AUGMENT, (uint64_t)epoch, (uint64_t)index);
    rnc_aug a;
    a.dx = (int)rnc_rng_below(&r, (uint32_t)(2 * pad + 1)) - pad;
    a.dy = (int)rnc_rng_below(&r, (uint32_t)(2 * pad + 1)) - pad;
    a.flip = (int)(rnc_rng_u64(&r) >> 63);
    return a;
}

void rnc_image_nhwc(const rnc_dataset *ds, int idx, const rnc_aug *aug, float *out) {
    enum { S = RNC_CIFAR_SIDE, C = RNC_CIFAR_CHANNELS };
    const uint8_t *img = ds->pixels + (size_t)idx * RNC_CIFAR_IMAGE_BYTES;
    int dx = aug ? aug->dx : 0, dy = aug ? aug->dy : 0, flip = aug ? aug->flip : 0;
    for (int y = 0; y < S; y++) {
        int sy = y + dy;  /* source row in the unpadded image */
        for (int x = 0; x < S; x++) {
            /* Flip after cropping: output column x shows cropped column S-1-x. */
            int sx = (flip ? S - 1 - x : x) + dx;
            float *o = out + ((size_t)y * S + x) * C;
            int inside = sy >= 0 && sy < S && sx >= 0 && sx < S;
            for (int c = 0; c < C; c++)
                o[c] = normalize(inside ? img[c * S * S + sy * S + sx] : 0, c);
        }
    }
}

void rnc_shuffle(int32_t *perm, int n, uint64_t seed, int64_t epoch) {
    rnc_rng r = rnc_rng_stream(seed, RNC_STREAM_SHUFFLE, (uint64_t)epoch, 0);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    /* Fisher-Yates, walking down so every permutation is equally likely. */
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rnc_rng_below(&r, (uint32_t)i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void rnc_make_batch(const rnc_dataset *ds, const int32_t *perm, int64_t first, int count,
                    int batch, int augment, uint64_t seed, int64_t epoch,
                    float *images, int32_t *labels) {
    const size_t image_floats = RNC_CIFAR_IMAGE_BYTES;
    /* Each sample is a pure function of its position: safe to run in parallel. */
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; b++) {
        float *out = images + (size_t)b * image_floats;
        if (b >= count) {
            memset(out, 0, image_floats * sizeof *out);
            labels[b] = 0;
            continue;
        }
        int64_t pos = first + b;
        int idx = perm ? perm[pos] : (int)pos;
        if (augment) {
            rnc_aug a = rnc_aug_draw(seed, epoch, pos, RNC_AUG_PAD);
            rnc_image_nhwc(ds, idx, &a, out);
        } else {
            rnc_image_nhwc(ds, idx, NULL, out);
        }
        labels[b] = ds->labels[idx];
    }
}
