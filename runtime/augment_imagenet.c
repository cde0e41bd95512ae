/* augment_imagenet.c - the paper's ImageNet augmentation and evaluation views.
 *
 * He et al. (2016), section 3.4: "The image is resized with its shorter side
 * randomly sampled in [256, 480] for scale augmentation. A 224x224 crop is
 * randomly sampled from an image or its horizontal flip, with the per-pixel
 * mean subtracted. The standard color augmentation in [21] is used." and
 * "In testing ... we adopt the standard 10-crop testing" (evaluation at
 * shorter side 256, centre crop, for single-crop numbers).
 *
 * For a model whose input is not 224, every size scales by side / 224: a
 * 32x32 model trains on shorter sides in [37, 69] and evaluates at 37.
 * The colour augmentation is AlexNet's PCA lighting noise with the ImageNet
 * eigenvalues and eigenvectors (as fb.resnet.torch, which the paper's
 * released models were trained with), alpha ~ N(0, 0.1); normalization uses
 * torchvision's per-channel mean and std in place of a mean image.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>

#include "rnc/data.h"

const float rnc_imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
const float rnc_imagenet_std[3] = {0.229f, 0.224f, 0.225f};
const float rnc_imagenet_eigval[3] = {0.2175f, 0.0188f, 0.0045f};
const float rnc_imagenet_eigvec[3][3] = {
    {-0.5675f, 0.7192f, 0.4009f},
    {-0.5808f, -0.0045f, -0.8140f},
    {-0.5836f, -0.6948f, 0.4203f},
};

static int scaled(int base, int side) {
    return (int)lround((double)base * side / 224.0);
}

void rnc_imagenet_scales(int model_side, int *min_short, int *max_short) {
    *min_short = scaled(256, model_side);
    *max_short = scaled(480, model_side);
}

int rnc_imagenet_eval_side(int model_side) {
    return scaled(256, model_side);
}

rnc_view rnc_view_draw(uint64_t seed, int64_t epoch, int64_t index, int min_short, int max_short,
                       double lighting_std) {
    rnc_rng r = rnc_rng_stream(seed, RNC_STREAM_AUGMENT, (uint64_t)epoch, (uint64_t)index);
    rnc_view v;
    memset(&v, 0, sizeof v);
    v.short_side = min_short + (int)rnc_rng_below(&r, (uint32_t)(max_short - min_short + 1));
    v.crop_u = (float)rnc_rng_uniform(&r);
    v.crop_v = (float)rnc_rng_uniform(&r);
    v.flip = (int)(rnc_rng_u64(&r) >> 63);
    for (int c = 0; c < 3; c++)
        v.alpha[c] = (float)(lighting_std * rnc_rng_normal(&r));
    return v;
}

rnc_view rnc_view_fixed(int short_side, int which, int flip) {
    static const float pos[5][2] = {{0.5f, 0.5f}, {0, 0}, {1, 0}, {0, 1}, {1, 1}};
    rnc_view v;
    memset(&v, 0, sizeof v);
    v.short_side = short_side;
    v.crop_u = pos[which][0];
    v.crop_v = pos[which][1];
    v.flip = flip;
    return v;
}

static int offset(float u, int slack) {
    if (u == 0.5f)  /* the centre: (size - crop) / 2 rounded down */
        return slack / 2;
    int o = (int)floorf(u * (float)(slack + 1));
    if (o > slack)
        o = slack;
    if (o < 0)
        o = 0;
    return o;
}

void rnc_view_geometry(const rnc_view *v, int w, int h, int out_w, int out_h, int *rw, int *rh,
                       int *x0, int *y0) {
    /* torchvision's Resize(int): the shorter side becomes S, the longer
     * int(S * long / short). Never smaller than the crop. */
    int s = v->short_side;
    long a, b;
    if (w <= h) {
        a = s;
        b = (long)((double)s * h / w);
    } else {
        b = s;
        a = (long)((double)s * w / h);
    }
    if (a < out_w)
        a = out_w;
    if (b < out_h)
        b = out_h;
    *rw = (int)a;
    *rh = (int)b;
    *x0 = offset(v->crop_u, *rw - out_w);
    *y0 = offset(v->crop_v, *rh - out_h);
}

int rnc_view_render(const uint8_t *rgb, int w, int h, size_t stride, int orig_w, int orig_h,
                    const rnc_view *v, int out_w, int out_h, float *out, rnc_buf *scratch) {
    int rw, rh, x0, y0;
    rnc_view_geometry(v, orig_w, orig_h, out_w, out_h, &rw, &rh, &x0, &y0);
    /* Resample straight into out, then flip and normalize in place. */
    float *crop = out;
    int rc = rnc_resize_window(rgb, w, h, stride, 3, rw, rh, x0, y0, out_w, out_h, crop, scratch);
    if (rc)
        return rc;
    /* Lighting: an RGB offset on the 0..1 scale, the same for every pixel. */
    float add[3], mul[3], bias[3];
    for (int c = 0; c < 3; c++) {
        float s = 0;
        for (int j = 0; j < 3; j++)
            s += rnc_imagenet_eigvec[c][j] * v->alpha[j] * rnc_imagenet_eigval[j];
        add[c] = s;
        /* ((p / 255 + add) - mean) / std = p * mul + bias */
        mul[c] = 1.0f / (255.0f * rnc_imagenet_std[c]);
        bias[c] = (add[c] - rnc_imagenet_mean[c]) / rnc_imagenet_std[c];
    }
    for (int y = 0; y < out_h; y++) {
        float *row = out + (size_t)y * out_w * 3;
        if (v->flip) {
            for (int a = 0, b = out_w - 1; a < b; a++, b--)
                for (int c = 0; c < 3; c++) {
                    float t = row[3 * a + c];
                    row[3 * a + c] = row[3 * b + c];
                    row[3 * b + c] = t;
                }
        }
        for (int x = 0; x < out_w; x++)
            for (int c = 0; c < 3; c++)
                row[3 * x + c] = row[3 * x + c] * mul[c] + bias[c];
    }
    return RNC_OK;
}
