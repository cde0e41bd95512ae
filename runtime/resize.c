/* resize.c - antialiased bilinear resampling, and growable scratch buffers.
 *
 * The filter is PIL's BILINEAR (Image.resize, Pillow >= 2.7): output pixel i
 * of a size-out axis resampled from size-in has its centre at
 * c = (i + 0.5) * in / out in input coordinates; input pixel j (centre
 * j + 0.5) weighs tri((j + 0.5 - c) / f) with tri(t) = max(0, 1 - |t|) and
 * f = max(1, in / out), and the weights are normalized to sum to 1. For
 * upscaling that is plain bilinear interpolation; for downscaling the
 * triangle widens with the scale factor, so every input pixel contributes
 * (area-like averaging, no aliasing).
 *
 * The two passes are separable: horizontal over the input rows the output
 * window needs, then vertical. Only the requested window of the virtual
 * resized image is computed, which is what a random crop needs.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rnc/data.h"

void *rnc_buf_reserve(rnc_buf *b, size_t bytes) {
    if (bytes <= b->cap && b->p)
        return b->p;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < bytes)
        cap *= 2;
    void *p = rnc_alloc_aligned(cap);
    if (!p)
        return NULL;
    free(b->p);
    b->p = p;
    b->cap = cap;
    return p;
}

void rnc_buf_free(rnc_buf *b) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
}

/* Taps of output pixels [first, first + count) of a size-out axis from size-in. */
static int taps_max(int in, int out) {
    double scale = (double)in / out;
    double support = scale > 1 ? scale : 1;   /* triangle support 1, times the filter scale */
    return (int)ceil(support) * 2 + 1;
}

static void coeffs(int in, int out, int first, int count, int taps, int *start, int *n,
                   float *w) {
    double scale = (double)in / out;
    double fscale = scale > 1 ? scale : 1;
    double support = fscale, inv = 1.0 / fscale;
    for (int k = 0; k < count; k++) {
        double center = (first + k + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in)
            hi = in;
        if (hi - lo > taps)
            hi = lo + taps;
        double sum = 0;
        for (int j = lo; j < hi; j++) {
            double t = fabs((j + 0.5 - center) * inv);
            sum += t < 1 ? 1 - t : 0;
        }
        /* Normalized in double, stored as float. sum > 0 whenever in, out >= 1:
         * the input pixel nearest the centre is always within the support. */
        float *wk = w + (size_t)k * taps;
        for (int j = lo; j < hi; j++) {
            double t = fabs((j + 0.5 - center) * inv);
            wk[j - lo] = (float)((t < 1 ? 1 - t : 0) / sum);
        }
        start[k] = lo;
        n[k] = hi - lo;
    }
}

int rnc_resize_window(const uint8_t *src, int sw, int sh, size_t stride, int ch, int rw, int rh,
                      int x0, int y0, int ow, int oh, float *dst, rnc_buf *scratch) {
    if (sw <= 0 || sh <= 0 || rw <= 0 || rh <= 0 || ow <= 0 || oh <= 0 || ch <= 0 || x0 < 0 ||
        y0 < 0 || x0 + ow > rw || y0 + oh > rh)
        return RNC_E_ARG;
    const int tx = taps_max(sw, rw), ty = taps_max(sh, rh);
    /* Layout: x starts/counts/weights, y starts/counts/weights, then the
     * horizontally resampled rows [rows][ow][ch]. */
    size_t bx = (size_t)ow * (2 * sizeof(int) + tx * sizeof(float));
    size_t by = (size_t)oh * (2 * sizeof(int) + ty * sizeof(float));
    bx = (bx + 63) & ~(size_t)63;
    by = (by + 63) & ~(size_t)63;
    /* Rows needed: bounded by the span of the vertical windows, at most sh. */
    size_t tmp_bytes = (size_t)sh * ow * ch * sizeof(float);
    char *base = rnc_buf_reserve(scratch, bx + by + tmp_bytes);
    if (!base)
        return RNC_E_NOMEM;
    int *xs = (int *)base, *xn = xs + ow;
    float *xw = (float *)(xn + ow);
    int *ys = (int *)(base + bx), *yn = ys + oh;
    float *yw = (float *)(yn + oh);
    float *tmp = (float *)(base + bx + by);
    coeffs(sw, rw, x0, ow, tx, xs, xn, xw);
    coeffs(sh, rh, y0, oh, ty, ys, yn, yw);

    int row_lo = ys[0], row_hi = ys[0] + yn[0];
    for (int k = 1; k < oh; k++) {
        if (ys[k] < row_lo)
            row_lo = ys[k];
        if (ys[k] + yn[k] > row_hi)
            row_hi = ys[k] + yn[k];
    }

    /* Horizontal pass: rows row_lo..row_hi-1 -> tmp[row - row_lo][ow][ch]. */
    for (int r = row_lo; r < row_hi; r++) {
        const uint8_t *in = src + (size_t)r * stride;
        float *o = tmp + (size_t)(r - row_lo) * ow * ch;
        if (ch == 3) {
            for (int x = 0; x < ow; x++) {
                const float *w = xw + (size_t)x * tx;
                const uint8_t *p = in + (size_t)xs[x] * 3;
                float a = 0, b = 0, c = 0;
                for (int j = 0; j < xn[x]; j++) {
                    a += w[j] * p[3 * j];
                    b += w[j] * p[3 * j + 1];
                    c += w[j] * p[3 * j + 2];
                }
                o[3 * x] = a;
                o[3 * x + 1] = b;
                o[3 * x + 2] = c;
            }
        } else {
            for (int x = 0; x < ow; x++) {
                const float *w = xw + (size_t)x * tx;
                for (int c = 0; c < ch; c++) {
                    float a = 0;
                    for (int j = 0; j < xn[x]; j++)
                        a += w[j] * in[(size_t)(xs[x] + j) * ch + c];
                    o[(size_t)x * ch + c] = a;
                }
            }
        }
    }
    /* Vertical pass. */
    const size_t row_floats = (size_t)ow * ch;
    for (int y = 0; y < oh; y++) {
        const float *w = yw + (size_t)y * ty;
        float *o = dst + (size_t)y * row_floats;
        const float *t0 = tmp + (size_t)(ys[y] - row_lo) * row_floats;
        for (size_t i = 0; i < row_floats; i++)
            o[i] = w[0] * t0[i];
        for (int j = 1; j < yn[y]; j++) {
            const float *t = t0 + (size_t)j * row_floats;
            const float wj = w[j];
            for (size_t i = 0; i < row_floats; i++)
                o[i] += wj * t[i];
        }
    }
    return RNC_OK;
}
