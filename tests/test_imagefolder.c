/* test_imagefolder.c - Check tests for JPEG image folders, resizing, the
 * ImageNet augmentation, the prefetching loader and --data detection.
 *
 * Real data: RNC_JPEG_SAMPLE_DIR (the 1,000-image CIFAR-10 JPEG sample in
 * ImageFolder layout), else ../../shared/data/cifar10-jpg-sample next to this
 * source file; RNC_CIFAR_DIR likewise for the CIFAR binary comparison.
 * Generated trees are written with libjpeg's compressor into a temp dir, and
 * the index cache goes there too ($XDG_CACHE_HOME is pointed at it).
 *
 * `test_imagefolder --bench` instead measures decode + augment throughput
 * (images/s on one core) on the sample and on a synthetic 500x375 JPEG.
 */
#define _GNU_SOURCE  /* mkdtemp, nftw, utimensat, symlink */
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>

#include "fake_model.h"
#include "rnc/data.h"
#include "rnc/runtime.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------ */

static const char *sample_dir(void) {
    static char buf[4096];
    return data_dir("RNC_JPEG_SAMPLE_DIR", "cifar10-jpg-sample", buf);
}

/* Writes pix (w x h x comps, in color space cs) as a JPEG; for CMYK, jpeg_cs
 * picks the stored space (JCS_CMYK or JCS_YCCK) and adobe whether the Adobe
 * marker (inverted CMYK) is written. */
static void write_jpeg_ex(const char *path, int w, int h, int comps, J_COLOR_SPACE cs,
                          J_COLOR_SPACE jpeg_cs, int adobe, const uint8_t *pix, int quality) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    if (!f)  /* not ck_assert: --bench runs this outside a test */
        ck_abort_msg("cannot write %s", path);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    if (cs == JCS_CMYK) {
        jpeg_set_colorspace(&c, jpeg_cs);
        c.write_Adobe_marker = adobe ? TRUE : FALSE;
    }
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    fclose(f);
    jpeg_destroy_compress(&c);
}

/* A smooth RGB test picture (compresses well, decodes close to the input). */
static uint8_t *picture(int w, int h, int seed) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(40 + 170 * x / (w > 1 ? w - 1 : 1));
            q[1] = (uint8_t)(40 + 170 * y / (h > 1 ? h - 1 : 1));
            q[2] = (uint8_t)((seed * 37 + 60) % 200 + 20);
        }
    return p;
}

static void write_rgb_jpeg(const char *path, int w, int h, int seed) {
    uint8_t *p = picture(w, h, seed);
    write_jpeg_ex(path, w, h, 3, JCS_RGB, JCS_YCbCr, 0, p, 90);
    free(p);
}

static void mkdirs(const char *path) {
    char b[1024];
    snprintf(b, sizeof b, "%s", path);
    for (char *p = b + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(b, 0755);
            *p = '/';
        }
    mkdir(b, 0755);
}

/* Sets the modification time of path an hour back, so the index cache trusts it. */
static void age(const char *path) {
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= 3600;
    ts[1] = ts[0];
    ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* Opens f with a captured log; returns the log text (caller frees). */
static char *open_logged(rnc_imagefolder *f, const char *dir, int *rc, rnc_err *err) {
    const char *logp = tmp_path("scan.log");
    FILE *log = fopen(logp, "w");
    ck_assert_ptr_nonnull(log);
    rnc_folder_options o = {NULL, 2, log, 0};
    *rc = rnc_imagefolder_open(f, dir, &o, err);
    fclose(log);
    return read_all(logp, NULL);
}

static void open_sample(rnc_imagefolder *f) {
    rnc_err err;
    rnc_folder_options o = {NULL, 2, NULL, 1};
    int rc = rnc_imagefolder_open(f, sample_dir(), &o, &err);
    ck_assert_msg(rc == RNC_OK, "%s (set RNC_JPEG_SAMPLE_DIR)", err.msg);
}

/* ---- resize -------------------------------------------------------------------- */

/* The reference: the same triangle filter, directly in 2-D and in double. */
static void ref_weights(int in, int out, int i, int *lo, int *hi, double *w) {
    double scale = (double)in / out, fs = scale > 1 ? scale : 1;
    double c = (i + 0.5) * scale;
    *lo = (int)(c - fs + 0.5);
    *hi = (int)(c + fs + 0.5);
    if (*lo < 0)
        *lo = 0;
    if (*hi > in)
        *hi = in;
    double sum = 0;
    for (int j = *lo; j < *hi; j++) {
        double t = fabs((j + 0.5 - c) / fs);
        w[j - *lo] = t < 1 ? 1 - t : 0;
        sum += w[j - *lo];
    }
    for (int j = *lo; j < *hi; j++)
        w[j - *lo] /= sum;
}

static double ref_pixel(const uint8_t *src, int sw, int sh, int ch, int rw, int rh, int x, int y,
                        int c) {
    double wx[512], wy[512];
    int xl, xh, yl, yh;
    ref_weights(sw, rw, x, &xl, &xh, wx);
    ref_weights(sh, rh, y, &yl, &yh, wy);
    double s = 0;
    for (int j = yl; j < yh; j++)
        for (int i = xl; i < xh; i++)
            s += wy[j - yl] * wx[i - xl] * src[((size_t)j * sw + i) * ch + c];
    return s;
}

static uint8_t *noise(int w, int h, int ch, unsigned seed) {
    uint8_t *p = malloc((size_t)w * h * ch);
    rnc_rng r = rnc_rng_stream(seed, 99, 0, 0);
    for (size_t i = 0; i < (size_t)w * h * ch; i++)
        p[i] = (uint8_t)rnc_rng_below(&r, 256);
    return p;
}

START_TEST(test_resize_reference) {
    static const int cases[][6] = {
        /* sw, sh, rw, rh, ch, window? */
        {37, 23, 17, 41, 3, 0},  {100, 80, 31, 29, 3, 1}, {20, 20, 50, 60, 3, 1},
        {500, 375, 69, 51, 3, 1}, {64, 48, 64, 48, 1, 0}, {13, 7, 200, 3, 2, 1},
        {300, 200, 7, 5, 3, 0},
    };
    rnc_buf scratch = {0};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int sw = cases[k][0], sh = cases[k][1], rw = cases[k][2], rh = cases[k][3];
        int ch = cases[k][4];
        uint8_t *src = noise(sw, sh, ch, (unsigned)k + 1);
        int x0 = 0, y0 = 0, ow = rw, oh = rh;
        if (cases[k][5]) {  /* a window inside the virtual resized image */
            x0 = rw / 3;
            y0 = rh / 4;
            ow = rw - x0 - rw / 5;
            oh = rh - y0 - rh / 6;
        }
        float *out = malloc((size_t)ow * oh * ch * sizeof *out);
        /* Source rows with padding between them (stride > sw * ch). */
        size_t stride = (size_t)sw * ch + 5;
        uint8_t *padded = calloc((size_t)sh, stride);
        for (int y = 0; y < sh; y++)
            memcpy(padded + y * stride, src + (size_t)y * sw * ch, (size_t)sw * ch);
        ck_assert_int_eq(rnc_resize_window(padded, sw, sh, stride, ch, rw, rh, x0, y0, ow, oh, out,
                                           &scratch), RNC_OK);
        double maxerr = 0;
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
                for (int c = 0; c < ch; c++) {
                    double want = ref_pixel(src, sw, sh, ch, rw, rh, x0 + x, y0 + y, c);
                    double got = out[((size_t)y * ow + x) * ch + c];
                    maxerr = fmax(maxerr, fabs(want - got));
                }
        ck_assert_msg(maxerr < 2e-3, "case %zu: max error %g", k, maxerr);
        free(src);
        free(out);
        free(padded);
    }
    /* Bad windows are refused. */
    uint8_t px[12] = {0};
    float o[12];
    ck_assert_int_eq(rnc_resize_window(px, 2, 2, 6, 3, 4, 4, 3, 0, 2, 2, o, &scratch), RNC_E_ARG);
    rnc_buf_free(&scratch);
}
END_TEST

START_TEST(test_resize_properties) {
    rnc_buf scratch = {0};
    /* A constant image stays constant, up or down. */
    uint8_t *flat = malloc(90 * 70 * 3);
    memset(flat, 173, 90 * 70 * 3);
    int sizes[][2] = {{23, 17}, {90, 70}, {200, 31}, {1, 1}};
    for (int k = 0; k < 4; k++) {
        int rw = sizes[k][0], rh = sizes[k][1];
        float *out = malloc((size_t)rw * rh * 3 * sizeof *out);
        ck_assert_int_eq(rnc_resize_window(flat, 90, 70, 90 * 3, 3, rw, rh, 0, 0, rw, rh, out,
                                           &scratch), RNC_OK);
        for (int i = 0; i < rw * rh * 3; i++)
            ck_assert_msg(fabsf(out[i] - 173) < 1e-3, "%dx%d: %g", rw, rh, out[i]);
        free(out);
    }
    free(flat);
    /* Same size is the identity, exactly. */
    uint8_t *img = noise(41, 29, 3, 7);
    float *same = malloc(41 * 29 * 3 * sizeof *same);
    ck_assert_int_eq(rnc_resize_window(img, 41, 29, 41 * 3, 3, 41, 29, 0, 0, 41, 29, same, &scratch),
                     RNC_OK);
    for (int i = 0; i < 41 * 29 * 3; i++)
        ck_assert_float_eq(same[i], (float)img[i]);
    free(same);
    free(img);
    /* A 1-pixel checkerboard halved (or quartered) averages to grey away from the border. */
    uint8_t *cb = malloc(64 * 64);
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
            cb[y * 64 + x] = (x + y) % 2 ? 255 : 0;
    for (int f = 2; f <= 4; f *= 2) {
        int n = 64 / f;
        float *out = malloc((size_t)n * n * sizeof *out);
        ck_assert_int_eq(rnc_resize_window(cb, 64, 64, 64, 1, n, n, 0, 0, n, n, out, &scratch), RNC_OK);
        for (int y = 1; y < n - 1; y++)
            for (int x = 1; x < n - 1; x++)
                ck_assert_msg(fabsf(out[y * n + x] - 127.5f) < 1e-3, "1/%d at %d,%d: %g", f, x, y,
                              out[y * n + x]);
        for (int i = 0; i < n * n; i++)  /* the border is still a weighted average */
            ck_assert(out[i] >= 0 && out[i] <= 255);
        free(out);
    }
    free(cb);
    rnc_buf_free(&scratch);
}
END_TEST

/* ---- decoding ------------------------------------------------------------------- */

START_TEST(test_decode_gray_cmyk) {
    make_tmpdir();
    rnc_decoder *d = rnc_decoder_new();
    ck_assert_ptr_nonnull(d);
    rnc_err err;
    const uint8_t *rgb;
    int w, h;
    /* Grayscale: expanded to R = G = B. */
    uint8_t gray[24 * 16];
    for (int i = 0; i < 24 * 16; i++)
        gray[i] = (uint8_t)(30 + (i % 24) * 8);
    write_jpeg_ex(tmp_path("gray.jpg"), 24, 16, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 0, gray, 100);
    ck_assert_int_eq(rnc_decode_jpeg(d, tmp_path("gray.jpg"), 0, 0, &rgb, &w, &h, &err), RNC_OK);
    ck_assert_int_eq(w, 24);
    ck_assert_int_eq(h, 16);
    for (int i = 0; i < 24 * 16; i++) {
        ck_assert_int_eq(rgb[3 * i], rgb[3 * i + 1]);
        ck_assert_int_eq(rgb[3 * i], rgb[3 * i + 2]);
        ck_assert_msg(abs(rgb[3 * i] - gray[i]) <= 3, "gray %d vs %d", rgb[3 * i], gray[i]);
    }
    /* CMYK: red, green, blue, white, black stripes; Adobe (inverted: 255 = no
     * ink) as CMYK and as YCCK, and plain CMYK without the Adobe marker. */
    static const uint8_t want[5][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}, {0, 0, 0}};
    static const uint8_t ink[5][4] = {{0, 255, 255, 0}, {255, 0, 255, 0}, {255, 255, 0, 0},
                                      {0, 0, 0, 0}, {0, 0, 0, 255}};  /* plain: 255 = full ink */
    const int W = 40, H = 16;
    for (int variant = 0; variant < 3; variant++) {
        int adobe = variant < 2;
        uint8_t cmyk[40 * 16 * 4];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 4; c++) {
                    uint8_t v = ink[x / 8][c];
                    cmyk[(y * W + x) * 4 + c] = adobe ? (uint8_t)(255 - v) : v;
                }
        const char *p = tmp_path("cmyk%d.jpg", variant);
        write_jpeg_ex(p, W, H, 4, JCS_CMYK, variant == 1 ? JCS_YCCK : JCS_CMYK, adobe, cmyk, 100);
        ck_assert_int_eq(rnc_decode_jpeg(d, p, 0, 0, &rgb, &w, &h, &err), RNC_OK);
        ck_assert_int_eq(w, W);
        for (int s = 0; s < 5; s++) {
            const uint8_t *q = rgb + ((size_t)(H / 2) * W + s * 8 + 4) * 3;
            for (int c = 0; c < 3; c++)
                ck_assert_msg(abs(q[c] - want[s][c]) <= 6, "variant %d stripe %d channel %d: %d vs %d",
                              variant, s, c, q[c], want[s][c]);
        }
    }
    /* DCT scaling: the largest reduction that keeps the minimum size. */
    write_rgb_jpeg(tmp_path("big.jpg"), 500, 375, 1);
    ck_assert_int_eq(rnc_decode_jpeg(d, tmp_path("big.jpg"), 100, 60, &rgb, &w, &h, &err), RNC_OK);
    ck_assert_int_eq(w, 125);  /* 2/8 */
    ck_assert_int_eq(h, 94);
    ck_assert_int_eq(rnc_decode_jpeg(d, tmp_path("big.jpg"), 400, 10, &rgb, &w, &h, &err), RNC_OK);
    ck_assert_int_eq(w, 438);  /* 7/8, rounded up */
    ck_assert_int_eq(h, 329);
    ck_assert_int_eq(rnc_decode_jpeg(d, tmp_path("big.jpg"), 500, 300, &rgb, &w, &h, &err), RNC_OK);
    ck_assert_int_eq(w, 500);
    ck_assert_int_eq(rnc_decode_jpeg(d, tmp_path("big.jpg"), 0, 0, &rgb, &w, &h, &err), RNC_OK);
    ck_assert_int_eq(w, 500);
    ck_assert_int_eq(h, 375);
    /* Errors name the file and leave the decoder usable. */
    ck_assert_int_eq(rnc_decode_jpeg(d, tmp_path("missing.jpg"), 0, 0, &rgb, &w, &h, &err), RNC_E_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "missing.jpg"));
    size_t n;
    char *jpg = read_all(tmp_path("big.jpg"), &n);
    ck_assert_int_eq(rnc_decode_jpeg_mem(d, (uint8_t *)jpg, n / 2, "half.jpg", 0, 0, &rgb, &w, &h,
                                         &err), RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "half.jpg"));
    ck_assert_int_eq(rnc_decode_jpeg_mem(d, (uint8_t *)jpg, n, "whole.jpg", 0, 0, &rgb, &w, &h, &err),
                     RNC_OK);
    free(jpg);
    rnc_decoder_free(d);
    remove_tree(tmpdir);
}
END_TEST

/* ---- folders ------------------------------------------------------------------ */

START_TEST(test_sample_index) {
    make_tmpdir();
    rnc_imagefolder f;
    open_sample(&f);
    static const char *names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                    "dog", "frog", "horse", "ship", "truck"};
    ck_assert_int_eq(f.n_classes, 10);
    for (int k = 0; k < 10; k++)
        ck_assert_str_eq(f.classes[k], names[k]);
    ck_assert_int_eq(f.n, 1000);
    ck_assert_int_eq(f.n_skipped, 0);
    int counts[10];
    rnc_imagefolder_counts(&f, counts);
    for (int k = 0; k < 10; k++)
        ck_assert_int_eq(counts[k], 100);
    for (int i = 0; i < f.n; i++) {
        ck_assert_int_eq(f.widths[i], 32);
        ck_assert_int_eq(f.heights[i], 32);
        const char *nm = rnc_imagefolder_name(&f, i);
        ck_assert_int_eq(strncmp(nm, names[f.labels[i]], strlen(names[f.labels[i]])), 0);
        if (i > 0) {  /* class order, then file name order */
            ck_assert_int_ge(f.labels[i], f.labels[i - 1]);
            ck_assert_int_lt(strcmp(rnc_imagefolder_name(&f, i - 1), nm), 0);
        }
    }
    ck_assert_str_eq(rnc_imagefolder_name(&f, 0), "airplane/0000.jpg");
    /* A second open reads the cache and gives the same index. */
    rnc_imagefolder g;
    open_sample(&g);
    ck_assert_int_eq(g.from_cache, 1);
    ck_assert_int_eq(g.n, f.n);
    for (int i = 0; i < f.n; i++) {
        ck_assert_int_eq(g.labels[i], f.labels[i]);
        ck_assert_str_eq(rnc_imagefolder_name(&g, i), rnc_imagefolder_name(&f, i));
    }
    rnc_imagefolder_free(&f);
    rnc_imagefolder_free(&g);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(test_bad_files_skipped) {
    make_tmpdir();
    const char *root = tmp_path("tree");
    mkdirs(tmp_path("tree/apple"));
    mkdirs(tmp_path("tree/banana"));
    mkdirs(tmp_path("tree/cherry"));  /* empty: still a class */
    mkdirs(tmp_path("tree/banana/nested"));
    for (int i = 0; i < 3; i++)
        write_rgb_jpeg(tmp_path("tree/apple/a%d.jpg", i), 40 + i, 30, i);
    for (int i = 0; i < 2; i++)
        write_rgb_jpeg(tmp_path("tree/banana/b%d.JPEG", i), 30, 50, i + 5);
    /* corrupt: a JPEG SOI followed by junk */
    uint8_t junk[300];
    for (int i = 0; i < 300; i++)
        junk[i] = (uint8_t)(i * 7 + 3);
    junk[0] = 0xFF, junk[1] = 0xD8, junk[2] = 0xFF, junk[3] = 0xDB;
    write_bytes(tmp_path("tree/apple/corrupt.jpg"), junk, sizeof junk);
    /* truncated: the first 60% of a good file */
    write_rgb_jpeg(tmp_path("whole.jpg"), 64, 64, 9);
    size_t n;
    char *whole = read_all(tmp_path("whole.jpg"), &n);
    write_bytes(tmp_path("tree/apple/truncated.jpg"), whole, n * 6 / 10);
    free(whole);
    write_bytes(tmp_path("tree/banana/notes.txt"), "not an image\n", 13);
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10, 0, 0};
    write_bytes(tmp_path("tree/banana/disguised.JPEG"), png, sizeof png);
    write_bytes(tmp_path("tree/empty.jpg"), "", 0);  /* beside the classes */
    /* grayscale and CMYK images are fine */
    uint8_t gray[20 * 20];
    memset(gray, 99, sizeof gray);
    write_jpeg_ex(tmp_path("tree/banana/gray.jpg"), 20, 20, 1, JCS_GRAYSCALE,
                  JCS_GRAYSCALE, 0, gray, 90);
    uint8_t cmyk[20 * 20 * 4];
    memset(cmyk, 200, sizeof cmyk);
    write_jpeg_ex(tmp_path("tree/banana/cmyk.jpg"), 20, 20, 4, JCS_CMYK, JCS_YCCK, 1, cmyk, 90);

    rnc_imagefolder f;
    rnc_err err;
    int rc;
    char *log = open_logged(&f, root, &rc, &err);
    ck_assert_msg(rc == RNC_OK, "%s", err.msg);
    ck_assert_int_eq(f.n_classes, 3);
    ck_assert_str_eq(f.classes[2], "cherry");
    int counts[3];
    rnc_imagefolder_counts(&f, counts);
    ck_assert_int_eq(counts[0], 3);
    ck_assert_int_eq(counts[1], 4);  /* b0, b1, cmyk, gray */
    ck_assert_int_eq(counts[2], 0);
    ck_assert_int_eq(f.n, 7);
    ck_assert_int_eq(f.n_skipped, 6);
    static const char *bad[] = {"apple/corrupt.jpg", "apple/truncated.jpg", "banana/notes.txt",
                                "banana/disguised.JPEG", "banana/nested", "tree/empty.jpg"};
    for (int i = 0; i < 6; i++)
        ck_assert_msg(strstr(log, bad[i]), "%s not reported:\n%s", bad[i], log);
    ck_assert_ptr_nonnull(strstr(log, "skipped 6 files"));
    ck_assert_ptr_nonnull(strstr(log, "a PNG image"));
    ck_assert_ptr_nonnull(strstr(log, "Premature end of JPEG file"));
    free(log);
    for (int i = 0; i < f.n; i++)
        ck_assert_ptr_null(strstr(rnc_imagefolder_name(&f, i), "corrupt"));
    rnc_imagefolder_free(&f);

    /* The skip report survives the cache: the count is printed again. */
    age(root);
    age(tmp_path("tree/apple"));
    age(tmp_path("tree/banana"));
    age(tmp_path("tree/cherry"));
    age(tmp_path("tree/banana/nested"));
    log = open_logged(&f, root, &rc, &err);
    rnc_imagefolder_free(&f);
    free(log);
    log = open_logged(&f, root, &rc, &err);
    ck_assert_int_eq(rc, RNC_OK);
    ck_assert_int_eq(f.from_cache, 1);
    ck_assert_int_eq(f.n_skipped, 6);
    ck_assert_ptr_nonnull(strstr(log, "skipped 6 files"));
    free(log);
    rnc_imagefolder_free(&f);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(test_no_images) {
    make_tmpdir();
    rnc_imagefolder f;
    rnc_err err;
    int rc;
    /* Class folders but no images in them. */
    mkdirs(tmp_path("empty/a"));
    mkdirs(tmp_path("empty/b"));
    free(open_logged(&f, tmp_path("empty"), &rc, &err));
    ck_assert_int_eq(rc, RNC_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "no JPEG images in its 2 class folders"), "%s", err.msg);
    ck_assert_ptr_nonnull(strstr(err.msg, "empty"));
    /* Only files that are not images. */
    mkdirs(tmp_path("junk/a"));
    write_bytes(tmp_path("junk/a/x.jpg"), "hello", 5);
    char *log = open_logged(&f, tmp_path("junk"), &rc, &err);
    ck_assert_int_eq(rc, RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "every file was skipped"));
    ck_assert_ptr_nonnull(strstr(log, "junk/a/x.jpg"));
    free(log);
    /* No class folders at all, and no folder. */
    mkdirs(tmp_path("flat"));
    write_rgb_jpeg(tmp_path("flat/x.jpg"), 8, 8, 0);
    free(open_logged(&f, tmp_path("flat"), &rc, &err));
    ck_assert_int_eq(rc, RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "no class folders"));
    free(open_logged(&f, tmp_path("nowhere"), &rc, &err));
    ck_assert_int_eq(rc, RNC_E_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "nowhere"));
    remove_tree(tmpdir);
}
END_TEST

START_TEST(test_index_cache) {
    make_tmpdir();
    const char *root = tmp_path("tree");
    mkdirs(tmp_path("tree/x"));
    mkdirs(tmp_path("tree/y"));
    for (int i = 0; i < 4; i++)
        write_rgb_jpeg(tmp_path("tree/%s/%d.jpg", i % 2 ? "y" : "x", i), 16, 16, i);
    /* A folder changed in the last seconds is not cached (coarse timestamps). */
    rnc_imagefolder f;
    rnc_err err;
    int rc;
    free(open_logged(&f, root, &rc, &err));
    ck_assert_int_eq(rc, RNC_OK);
    ck_assert_int_eq(f.from_cache, 0);
    ck_assert_ptr_null(f.index_path);
    rnc_imagefolder_free(&f);
    age(root);
    age(tmp_path("tree/x"));
    age(tmp_path("tree/y"));
    free(open_logged(&f, root, &rc, &err));
    ck_assert_int_eq(f.from_cache, 0);
    ck_assert_ptr_nonnull(f.index_path);
    ck_assert_ptr_nonnull(strstr(f.index_path, "/cache/rnc/index-"));
    char idx[1024];
    snprintf(idx, sizeof idx, "%s", f.index_path);
    rnc_imagefolder_free(&f);
    /* Reused... */
    free(open_logged(&f, root, &rc, &err));
    ck_assert_int_eq(f.from_cache, 1);
    ck_assert_int_eq(f.n, 4);
    rnc_imagefolder_free(&f);
    /* ...a cached index is keyed by the path: the same tree by another path is its own */
    ck_assert_int_eq(symlink(root, tmp_path("link")), 0);
    free(open_logged(&f, tmp_path("link"), &rc, &err));
    ck_assert_int_eq(f.from_cache, 1);  /* the real path is the same */
    ck_assert_str_eq(f.root, tmp_path("link"));
    rnc_imagefolder_free(&f);
    /* ...and rebuilt when a file is added. */
    write_rgb_jpeg(tmp_path("tree/y/new.jpg"), 16, 16, 9);
    free(open_logged(&f, root, &rc, &err));
    ck_assert_int_eq(rc, RNC_OK);
    ck_assert_int_eq(f.from_cache, 0);
    ck_assert_int_eq(f.n, 5);
    ck_assert_str_eq(rnc_imagefolder_name(&f, 4), "y/new.jpg");
    rnc_imagefolder_free(&f);
    /* ...or removed */
    age(tmp_path("tree/y"));
    free(open_logged(&f, root, &rc, &err));
    rnc_imagefolder_free(&f);
    ck_assert_int_eq(remove(tmp_path("tree/x/0.jpg")), 0);
    free(open_logged(&f, root, &rc, &err));
    ck_assert_int_eq(f.from_cache, 0);
    ck_assert_int_eq(f.n, 4);
    rnc_imagefolder_free(&f);
    /* A damaged index file is ignored and rebuilt, never trusted. */
    age(tmp_path("tree/x"));
    free(open_logged(&f, root, &rc, &err));
    rnc_imagefolder_free(&f);
    free(open_logged(&f, root, &rc, &err));
    ck_assert_int_eq(f.from_cache, 1);
    rnc_imagefolder_free(&f);
    size_t n;
    char *bytes = read_all(idx, &n);
    bytes[n / 2] ^= 0x40;
    write_bytes(idx, bytes, n);
    write_bytes(idx, bytes, n / 3);
    free(bytes);
    free(open_logged(&f, root, &rc, &err));
    ck_assert_int_eq(rc, RNC_OK);
    ck_assert_int_eq(f.from_cache, 0);
    ck_assert_int_eq(f.n, 4);
    rnc_imagefolder_free(&f);
    /* No cache at all. */
    rnc_folder_options o = {"", 1, NULL, 1};
    ck_assert_int_eq(rnc_imagefolder_open(&f, root, &o, &err), RNC_OK);
    ck_assert_ptr_null(f.index_path);
    ck_assert_int_eq(f.from_cache, 0);
    rnc_imagefolder_free(&f);
    remove_tree(tmpdir);
}
END_TEST

/* ---- views ----------------------------------------------------------------------- */

START_TEST(test_view_draws_and_bounds) {
    int lo, hi;
    rnc_imagenet_scales(224, &lo, &hi);
    ck_assert_int_eq(lo, 256);
    ck_assert_int_eq(hi, 480);
    ck_assert_int_eq(rnc_imagenet_eval_side(224), 256);
    rnc_imagenet_scales(32, &lo, &hi);
    ck_assert_int_eq(lo, 37);
    ck_assert_int_eq(hi, 69);
    ck_assert_int_eq(rnc_imagenet_eval_side(32), 37);
    /* Pure function of (seed, epoch, index). */
    rnc_view a = rnc_view_draw(5, 2, 17, 256, 480, 0.1), b = rnc_view_draw(5, 2, 17, 256, 480, 0.1);
    ck_assert_mem_eq(&a, &b, sizeof a);
    rnc_view c = rnc_view_draw(5, 3, 17, 256, 480, 0.1), e = rnc_view_draw(6, 2, 17, 256, 480, 0.1);
    ck_assert(memcmp(&a, &c, sizeof a) && memcmp(&a, &e, sizeof a));
    /* Every draw keeps its crop inside the resized image; all scales, both flips and
     * the full crop range are reached; lighting has about the right spread. */
    int seen_lo = 0, seen_hi = 0, flips = 0, left = 0, right = 0;
    double sq = 0;
    const int N = 20000;
    static const int sizes[][2] = {{500, 375}, {375, 500}, {32, 32}, {224, 224}, {1000, 40}};
    for (int i = 0; i < N; i++) {
        rnc_view v = rnc_view_draw(1, 0, i, 256, 480, 0.1);
        ck_assert(v.short_side >= 256 && v.short_side <= 480);
        seen_lo |= v.short_side == 256;
        seen_hi |= v.short_side == 480;
        flips += v.flip;
        for (int c = 0; c < 3; c++)
            sq += v.alpha[c] * v.alpha[c];
        const int *s = sizes[i % 5];
        int rw, rh, x0, y0;
        rnc_view_geometry(&v, s[0], s[1], 224, 224, &rw, &rh, &x0, &y0);
        ck_assert_int_eq(s[0] <= s[1] ? rw : rh, s[0] == 1000 ? v.short_side : v.short_side);
        ck_assert(x0 >= 0 && y0 >= 0 && x0 + 224 <= rw && y0 + 224 <= rh);
        left += x0 == 0;
        right += x0 == rw - 224;
    }
    ck_assert(seen_lo && seen_hi);
    ck_assert(flips > N * 0.45 && flips < N * 0.55);
    ck_assert(left > 0 && right > 0);
    ck_assert_double_eq_tol(sqrt(sq / (3.0 * N)), 0.1, 0.005);
    /* Aspect ratio kept like torchvision's Resize(int): long = int(S * long / short). */
    rnc_view v = rnc_view_fixed(256, 0, 0);
    int rw, rh, x0, y0;
    rnc_view_geometry(&v, 500, 375, 224, 224, &rw, &rh, &x0, &y0);
    ck_assert_int_eq(rh, 256);
    ck_assert_int_eq(rw, 341);
    ck_assert_int_eq(x0, 58);  /* centre */
    ck_assert_int_eq(y0, 16);
    v = rnc_view_fixed(256, 4, 1);  /* bottom-right, mirrored */
    rnc_view_geometry(&v, 500, 375, 224, 224, &rw, &rh, &x0, &y0);
    ck_assert_int_eq(x0, 341 - 224);
    ck_assert_int_eq(y0, 256 - 224);
    ck_assert_int_eq(v.flip, 1);
    /* Non-square models crop their own shape; a thin image is never smaller than the crop. */
    v = rnc_view_fixed(20, 0, 0);
    rnc_view_geometry(&v, 10, 300, 24, 40, &rw, &rh, &x0, &y0);
    ck_assert(rw >= 24 && rh >= 40 && x0 + 24 <= rw && y0 + 40 <= rh);
}
END_TEST

START_TEST(test_view_render) {
    make_tmpdir();
    rnc_imagefolder f;
    open_sample(&f);
    rnc_decoder *d = rnc_decoder_new();
    rnc_err err;
    const uint8_t *rgb;
    int w, h;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", f.root, rnc_imagefolder_name(&f, 123));
    ck_assert_int_eq(rnc_decode_jpeg(d, path, 0, 0, &rgb, &w, &h, &err), RNC_OK);
    ck_assert_int_eq(w, 32);
    rnc_buf s = {0};
    float a[32 * 32 * 3], b[32 * 32 * 3], c[32 * 32 * 3];
    /* Centre view at 37 against the reference resize + normalization. */
    rnc_view v = rnc_view_fixed(37, 0, 0);
    ck_assert_int_eq(rnc_view_render(rgb, w, h, (size_t)w * 3, w, h, &v, 32, 32, a, &s), RNC_OK);
    int rw, rh, x0, y0;
    rnc_view_geometry(&v, 32, 32, 32, 32, &rw, &rh, &x0, &y0);
    ck_assert_int_eq(rw, 37);
    ck_assert_int_eq(x0, 2);  /* (37 - 32) / 2 */
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int ch = 0; ch < 3; ch++) {
                double p = ref_pixel(rgb, w, h, 3, rw, rh, x0 + x, y0 + y, ch);
                double want = (p / 255.0 - rnc_imagenet_mean[ch]) / rnc_imagenet_std[ch];
                ck_assert_double_eq_tol(a[(y * 32 + x) * 3 + ch], want, 1e-4);
            }
    /* The mirror is the same crop reversed, exactly. */
    v.flip = 1;
    ck_assert_int_eq(rnc_view_render(rgb, w, h, (size_t)w * 3, w, h, &v, 32, 32, b, &s), RNC_OK);
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int ch = 0; ch < 3; ch++)
                ck_assert_float_eq(b[(y * 32 + x) * 3 + ch], a[(y * 32 + 31 - x) * 3 + ch]);
    /* Lighting moves each channel by one constant: sum_j eigvec[c][j] alpha_j eigval_j / std_c. */
    v.flip = 0;
    v.alpha[0] = 0.1f, v.alpha[1] = -0.2f, v.alpha[2] = 0.3f;
    ck_assert_int_eq(rnc_view_render(rgb, w, h, (size_t)w * 3, w, h, &v, 32, 32, c, &s), RNC_OK);
    for (int ch = 0; ch < 3; ch++) {
        double shift = 0;
        for (int j = 0; j < 3; j++)
            shift += rnc_imagenet_eigvec[ch][j] * v.alpha[j] * rnc_imagenet_eigval[j];
        shift /= rnc_imagenet_std[ch];
        for (int i = 0; i < 32 * 32; i++)
            ck_assert_double_eq_tol(c[i * 3 + ch] - a[i * 3 + ch], shift, 1e-5);
    }
    /* Training views differ between positions but repeat for the same key. */
    rnc_view t1 = rnc_view_draw(3, 0, 5, 37, 69, 0.1), t2 = rnc_view_draw(3, 0, 6, 37, 69, 0.1);
    ck_assert_int_eq(rnc_view_render(rgb, w, h, (size_t)w * 3, w, h, &t1, 32, 32, a, &s), RNC_OK);
    ck_assert_int_eq(rnc_view_render(rgb, w, h, (size_t)w * 3, w, h, &t2, 32, 32, b, &s), RNC_OK);
    ck_assert(memcmp(a, b, sizeof a));
    ck_assert_int_eq(rnc_view_render(rgb, w, h, (size_t)w * 3, w, h, &t1, 32, 32, c, &s), RNC_OK);
    ck_assert_mem_eq(a, c, sizeof a);
    rnc_buf_free(&s);
    rnc_decoder_free(d);
    rnc_imagefolder_free(&f);
    remove_tree(tmpdir);
}
END_TEST

/* ---- loader ----------------------------------------------------------------------- */

/* Every batch of pass p, concatenated. */
static float *all_batches(rnc_loader *L, const rnc_pass *p, int B, size_t image_floats,
                          int32_t **labels_out) {
    int64_t nb = p->end_batch - p->first_batch;
    float *img = malloc((size_t)nb * B * image_floats * sizeof *img);
    int32_t *lab = malloc((size_t)nb * B * sizeof *lab);
    rnc_err err;
    ck_assert_int_eq(rnc_loader_start(L, p, &err), RNC_OK);
    const rnc_batch *b;
    int64_t k = 0;
    while ((b = rnc_loader_next(L))) {
        ck_assert_int_eq(b->number, p->first_batch + k);
        memcpy(img + (size_t)k * B * image_floats, b->images, (size_t)B * image_floats * sizeof *img);
        memcpy(lab + (size_t)k * B, b->labels, (size_t)B * sizeof *lab);
        k++;
    }
    ck_assert_int_eq(k, nb);
    ck_assert_ptr_null(rnc_loader_next(L));
    *labels_out = lab;
    return img;
}

START_TEST(test_prefetch_identical) {
    make_tmpdir();
    rnc_imagefolder f;
    open_sample(&f);
    rnc_source src = {NULL, &f, NULL, f.n, f.n_classes};
    const int B = 48;
    int32_t *perm = malloc((size_t)f.n * sizeof *perm);
    rnc_shuffle(perm, f.n, 11, 3);
    struct {
        int H, W, mode;
        int64_t first, end;
    } cases[] = {
        {32, 32, RNC_VIEWS_TRAIN, 2, 20},
        {28, 36, RNC_VIEWS_TRAIN, 0, 5},
        {32, 32, RNC_VIEWS_CENTER, 0, 0},
        {32, 32, RNC_VIEWS_TEN_CROP, 3, 9},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int H = cases[c].H, W = cases[c].W;
        const size_t fl = (size_t)H * W * 3;
        rnc_pass p = {&src, cases[c].mode, cases[c].mode == RNC_VIEWS_TRAIN ? perm : NULL,
                      cases[c].first, cases[c].end, 11, 3};
        if (!p.end_batch)
            p.end_batch = rnc_pass_batches(&src, p.mode, B);
        float *ref = NULL;
        int32_t *ref_lab = NULL;
        for (int threads = 0; threads <= 2; threads++) {
            rnc_loader *L;
            rnc_err err;
            ck_assert_int_eq(rnc_loader_create(&L, B, H, W, threads, threads == 2 ? 3 : 0, &err),
                             RNC_OK);
            int32_t *lab;
            float *img = all_batches(L, &p, B, fl, &lab);
            /* Twice through the same loader: the same again (no state leaks between passes). */
            int32_t *lab2;
            float *img2 = all_batches(L, &p, B, fl, &lab2);
            size_t n = (size_t)(p.end_batch - p.first_batch) * B;
            ck_assert_mem_eq(img, img2, n * fl * sizeof *img);
            free(img2);
            free(lab2);
            ck_assert_int_eq(rnc_loader_failures(L), 0);
            rnc_loader_free(L);
            if (!ref) {
                ref = img;
                ref_lab = lab;
                /* labels follow the order; padding rows are zero */
                for (size_t r = 0; r < n; r++) {
                    int64_t row = p.first_batch * B + (int64_t)r;
                    int V = rnc_views_per_sample(p.mode);
                    if (row < (int64_t)f.n * V) {
                        int i = p.perm ? p.perm[row / V] : (int)(row / V);
                        ck_assert_int_eq(lab[r], f.labels[i]);
                    } else {
                        ck_assert_int_eq(lab[r], 0);
                        for (size_t k = 0; k < fl; k++)
                            ck_assert_float_eq(img[r * fl + k], 0);
                    }
                }
            } else {
                ck_assert_msg(!memcmp(ref, img, n * fl * sizeof *img),
                              "case %zu: %d loader threads differ from synchronous loading", c,
                              threads);
                ck_assert_mem_eq(ref_lab, lab, n * sizeof *lab);
                free(img);
                free(lab);
            }
        }
        /* Stopping in the middle of a pass and starting another works. */
        rnc_loader *L;
        rnc_err err;
        ck_assert_int_eq(rnc_loader_create(&L, B, H, W, 2, 0, &err), RNC_OK);
        ck_assert_int_eq(rnc_loader_start(L, &p, &err), RNC_OK);
        ck_assert_ptr_nonnull(rnc_loader_next(L));
        rnc_loader_stop(L);
        ck_assert_ptr_null(rnc_loader_next(L));
        int32_t *lab;
        float *img = all_batches(L, &p, B, fl, &lab);
        ck_assert_mem_eq(ref, img, (size_t)(p.end_batch - p.first_batch) * B * fl * sizeof *img);
        free(img);
        free(lab);
        rnc_loader_free(L);
        free(ref);
        free(ref_lab);
    }
    free(perm);
    rnc_imagefolder_free(&f);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(test_prefetch_cifar_matches_make_batch) {
    rnc_dataset ds = {0};
    rnc_err err;
    char path[4200];
    snprintf(path, sizeof path, "%s/data_batch_1.bin", cifar_dir());
    ck_assert_msg(rnc_cifar_load_file(&ds, path, &err) == RNC_OK, "%s (set RNC_CIFAR_DIR)", err.msg);
    rnc_dataset part = rnc_dataset_view(&ds, 0, 1000);
    rnc_source src = {&part, NULL, NULL, part.n, 10};
    const int B = 64;
    int32_t *perm = malloc(1000 * sizeof *perm);
    rnc_shuffle(perm, 1000, 4, 2);
    float *want = malloc((size_t)B * 3072 * sizeof *want);
    int32_t want_lab[64];
    for (int threads = 0; threads <= 2; threads++) {
        rnc_loader *L;
        ck_assert_int_eq(rnc_loader_create(&L, B, 32, 32, threads, 0, &err), RNC_OK);
        /* Training: exactly rnc_make_batch's batches (what train.c used before the loader). */
        rnc_pass p = {&src, RNC_VIEWS_TRAIN, perm, 1, 15, 4, 2};
        ck_assert_int_eq(rnc_loader_start(L, &p, &err), RNC_OK);
        const rnc_batch *b;
        int64_t k = 1;
        while ((b = rnc_loader_next(L))) {
            rnc_make_batch(&part, perm, k * B, B, B, 1, 4, 2, want, want_lab);
            ck_assert_int_eq(b->count, B);
            ck_assert_mem_eq(b->images, want, (size_t)B * 3072 * sizeof *want);
            ck_assert_mem_eq(b->labels, want_lab, sizeof want_lab);
            k++;
        }
        ck_assert_int_eq(k, 15);
        /* Evaluation: the plain images, last batch padded (1000 = 15 * 64 + 40). */
        p = (rnc_pass){&src, RNC_VIEWS_CENTER, NULL, 15, 16, 0, 0};
        ck_assert_int_eq(rnc_loader_start(L, &p, &err), RNC_OK);
        b = rnc_loader_next(L);
        ck_assert_int_eq(b->count, 40);
        rnc_make_batch(&part, NULL, 960, 40, B, 0, 0, 0, want, want_lab);
        ck_assert_mem_eq(b->images, want, (size_t)B * 3072 * sizeof *want);
        ck_assert_ptr_null(rnc_loader_next(L));
        /* Ten crops: the corner shifts and mirrors of the padded image. */
        p = (rnc_pass){&src, RNC_VIEWS_TEN_CROP, NULL, 0, 1, 0, 0};
        ck_assert_int_eq(rnc_loader_start(L, &p, &err), RNC_OK);
        b = rnc_loader_next(L);
        float one[3072];
        rnc_aug a = {-4, 4, 1};  /* view 8: bottom-left mirrored */
        rnc_image_nhwc(&part, 0, &a, one);
        ck_assert_mem_eq(b->images + 8 * 3072, one, sizeof one);
        rnc_image_nhwc(&part, 0, NULL, one);
        ck_assert_mem_eq(b->images, one, sizeof one);
        ck_assert_int_eq(b->labels[9], part.labels[0]);
        ck_assert_int_eq(b->labels[10], part.labels[1]);
        rnc_loader_free(L);
    }
    free(want);
    free(perm);
    rnc_dataset_free(&ds);
}
END_TEST

START_TEST(test_decode_failure_while_loading) {
    make_tmpdir();
    mkdirs(tmp_path("tree/a"));
    mkdirs(tmp_path("tree/b"));
    for (int i = 0; i < 4; i++)
        write_rgb_jpeg(tmp_path("tree/%c/%d.jpg", 'a' + i % 2, i), 48, 40, i);
    rnc_imagefolder f;
    rnc_err err;
    rnc_folder_options o = {"", 1, NULL, 1};
    ck_assert_int_eq(rnc_imagefolder_open(&f, tmp_path("tree"), &o, &err), RNC_OK);
    /* The file goes bad after indexing: reported, rendered as zeros, training goes on. */
    write_bytes(tmp_path("tree/b/1.jpg"), "broken", 6);
    rnc_source src = {NULL, &f, NULL, f.n, 2};
    rnc_loader *L;
    ck_assert_int_eq(rnc_loader_create(&L, 4, 16, 16, 1, 0, &err), RNC_OK);
    rnc_pass p = {&src, RNC_VIEWS_TRAIN, NULL, 0, 1, 1, 0};
    fflush(stderr);
    int saved = dup(2);
    int fd = open(tmp_path("err.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    ck_assert_int_eq(rnc_loader_start(L, &p, &err), RNC_OK);
    const rnc_batch *b = rnc_loader_next(L);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ck_assert_ptr_nonnull(b);
    int bad = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(rnc_imagefolder_name(&f, i), "b/1.jpg"))
            bad = i;
    ck_assert_int_ge(bad, 0);
    for (int k = 0; k < 16 * 16 * 3; k++)
        ck_assert_float_eq(b->images[(size_t)bad * 768 + k], 0);
    ck_assert_int_eq(rnc_loader_failures(L), 1);
    char *msg = read_all(tmp_path("err.txt"), NULL);
    ck_assert_msg(strstr(msg, "tree/b/1.jpg") && strstr(msg, "replaced by zeros"), "%s", msg);
    free(msg);
    rnc_loader_free(L);
    rnc_imagefolder_free(&f);
    remove_tree(tmpdir);
}
END_TEST

/* ---- data sets and the driver ------------------------------------------------------- */

START_TEST(test_data_detection) {
    make_tmpdir();
    rnc_data d;
    rnc_err err;
    rnc_data_options o = {5000, 0, 0, 1, 0};
    /* A folder of class folders: held-out split of min(5000, 10%). */
    ck_assert_msg(rnc_data_open(&d, sample_dir(), &fake_model, &o, &err) == RNC_OK, "%s", err.msg);
    ck_assert_int_eq(d.kind, RNC_DATA_FOLDER);
    ck_assert_int_eq(d.train.n, 900);
    ck_assert_int_eq(d.val.n, 100);
    /* Train and validation images are disjoint and cover the folder. */
    char *seen = calloc(1000, 1);
    for (int i = 0; i < d.train.n; i++)
        seen[d.train.index[i]]++;
    for (int i = 0; i < d.val.n; i++)
        seen[d.val.index[i]]++;
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(seen[i], 1);
    free(seen);
    int32_t first_val = d.val.index[0];
    rnc_data_free(&d);
    o.val = 250;
    o.val_given = 1;
    ck_assert_int_eq(rnc_data_open(&d, sample_dir(), &fake_model, &o, &err), RNC_OK);
    ck_assert_int_eq(d.val.n, 250);
    rnc_data_free(&d);
    o.val_given = 0;
    ck_assert_int_eq(rnc_data_open(&d, sample_dir(), &fake_model, &o, &err), RNC_OK);
    ck_assert_int_eq(d.val.index[0], first_val);  /* the split is fixed */
    rnc_data_free(&d);
    /* train/ and val/: validation on val/. */
    mkdirs(tmp_path("inet"));
    ck_assert_int_eq(symlink(sample_dir(), tmp_path("inet/train")), 0);
    ck_assert_int_eq(symlink(sample_dir(), tmp_path("inet/val")), 0);
    ck_assert_int_eq(rnc_data_open(&d, tmp_path("inet"), &fake_model, &o, &err), RNC_OK);
    ck_assert_int_eq(d.train.n, 1000);
    ck_assert_int_eq(d.val.n, 1000);
    rnc_data_free(&d);
    o.val = 0;
    o.val_given = 1;
    ck_assert_int_eq(rnc_data_open(&d, tmp_path("inet"), &fake_model, &o, &err), RNC_OK);
    ck_assert_int_eq(d.val.n, 0);
    rnc_data_free(&d);
    /* Wrong number of classes for the model. */
    rnc_model m5 = fake_model;
    m5.classes = 5;
    ck_assert_int_eq(rnc_data_open(&d, sample_dir(), &m5, &o, &err), RNC_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "10 class folders"));
    ck_assert_ptr_nonnull(strstr(err.msg, "--classes 10, or run rnc train SPEC --classes auto"));
    /* CIFAR: a directory with data_batch_1.bin, or a .bin file. */
    o.val = 5000;
    ck_assert_int_eq(rnc_data_open(&d, cifar_dir(), &fake_model, &o, &err), RNC_OK);
    ck_assert_int_eq(d.kind, RNC_DATA_CIFAR);
    ck_assert_int_eq(d.train.n, 45000);
    ck_assert_int_eq(d.val.n, 5000);
    rnc_data_free(&d);
    /* An empty directory: the CIFAR loader says what is missing. */
    mkdirs(tmp_path("nothing"));
    ck_assert_int_ne(rnc_data_open(&d, tmp_path("nothing"), &fake_model, &o, &err), RNC_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "data_batch_1.bin"));
    remove_tree(tmpdir);
}
END_TEST

/* --classes auto: the count rnc_data_open would find, before a network exists. */
START_TEST(test_data_classes) {
    make_tmpdir();
    rnc_err err;
    char what[8300];
    int n = 0;
    ck_assert_msg(rnc_data_classes(sample_dir(), &n, what, sizeof what, &err) == RNC_OK, "%s", err.msg);
    ck_assert_int_eq(n, 10);
    ck_assert_ptr_nonnull(strstr(what, "the class folders of "));
    ck_assert_int_eq(rnc_data_classes(cifar_dir(), &n, what, sizeof what, &err), RNC_OK);
    ck_assert_int_eq(n, 10);
    ck_assert_ptr_nonnull(strstr(what, "CIFAR-10"));
    /* train/ and val/: train/'s class folders; files beside them do not count */
    for (int k = 0; k < 3; k++)
        mkdirs(tmp_path("tree/train/c%d", k));
    mkdirs(tmp_path("tree/val/c0"));
    write_bytes(tmp_path("tree/train/notes.txt"), "x", 1);
    ck_assert_int_eq(rnc_data_classes(tmp_path("tree"), &n, what, sizeof what, &err), RNC_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_ptr_nonnull(strstr(what, "tree/train"));
    /* a folder of class folders */
    ck_assert_int_eq(rnc_data_classes(tmp_path("tree/train"), &n, what, sizeof what, &err), RNC_OK);
    ck_assert_int_eq(n, 3);
    /* one class, none, nothing there */
    mkdirs(tmp_path("one/only"));
    ck_assert_int_eq(rnc_data_classes(tmp_path("one"), &n, what, sizeof what, &err), RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "one class folder"));
    mkdirs(tmp_path("empty"));
    ck_assert_int_eq(rnc_data_classes(tmp_path("empty"), &n, what, sizeof what, &err), RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "neither CIFAR-10 files nor class folders"));
    ck_assert_int_eq(rnc_data_classes(tmp_path("missing"), &n, what, sizeof what, &err), RNC_E_IO);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(test_driver_jpeg_end_to_end) {
    make_tmpdir();
    char *out;
    /* The brief's end-to-end step: three training steps on the JPEG sample. */
    int rc = run_cli(&fake_model, &out, "train", "--data", sample_dir(), "--steps", "3", NULL);
    ck_assert_msg(rc == 0, "train failed:\n%s", out);
    ck_assert_ptr_nonnull(strstr(out, "900 training images, 100 validation"));
    ck_assert_ptr_nonnull(strstr(out, "final: train loss "));
    free(out);

    /* Resume is exact on image folders too, with any number of loader threads. */
    rc = run_cli(&fake_model, &out, "train", "--data", sample_dir(), "--steps", "130", "--seed", "3",
                 "--threads", "2", "--loader-threads", "2", "--quiet", "--checkpoint",
                 tmp_path("full.ckpt"), "--log", tmp_path("full.csv"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    rc = run_cli(&fake_model, &out, "train", "--data", sample_dir(), "--steps", "100", "--seed", "3",
                 "--threads", "2", "--loader-threads", "0", "--quiet", "--checkpoint",
                 tmp_path("part.ckpt"), "--log", tmp_path("part.csv"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    rc = run_cli(&fake_model, &out, "train", "--data", sample_dir(), "--steps", "130", "--threads",
                 "2", "--loader-threads", "1", "--quiet", "--checkpoint", tmp_path("part.ckpt"),
                 "--resume", tmp_path("part.ckpt"), "--log", tmp_path("part.csv"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    size_t na, nb;
    char *ca = read_all(tmp_path("full.ckpt"), &na), *cb = read_all(tmp_path("part.ckpt"), &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(!memcmp(ca, cb, na), "resumed run differs from the straight run");
    free(ca);
    free(cb);

    /* eval: held-out split, centre crop and 10 crops; top-1 and top-5. */
    rc = run_cli(&fake_model, &out, "eval", "--data", sample_dir(), "--weights",
                 tmp_path("full.ckpt"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "held-out validation split"));
    ck_assert_ptr_nonnull(strstr(out, "images: 100\n"));
    char *acc = strstr(out, "accuracy: "), *top5 = strstr(out, "top5: ");
    ck_assert(acc && top5);
    double a1 = atof(acc + 10), a5 = atof(top5 + 6);
    ck_assert(a1 >= 0 && a1 <= a5 && a5 <= 1);
    free(out);
    rc = run_cli(&fake_model, &out, "eval", "--data", sample_dir(), "--weights",
                 tmp_path("full.ckpt"), "--ten-crop", "--loader-threads", "2", NULL);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "10-crop"));
    ck_assert_ptr_nonnull(strstr(out, "images: 100\n"));
    acc = strstr(out, "accuracy: ");
    top5 = strstr(out, "top5: ");
    ck_assert(acc && top5 && atof(acc + 10) <= atof(top5 + 6));
    free(out);

    /* train/ + val/ layout: validation on val/, eval on val/. */
    mkdirs(tmp_path("inet"));
    ck_assert_int_eq(symlink(sample_dir(), tmp_path("inet/train")), 0);
    ck_assert_int_eq(symlink(sample_dir(), tmp_path("inet/val")), 0);
    rc = run_cli(&fake_model, &out, "train", "--data", tmp_path("inet"), "--steps", "2", "--val",
                 "40", "--log", tmp_path("inet.csv"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "1000 training images, 40 validation"));
    free(out);
    rc = run_cli(&fake_model, &out, "eval", "--data", tmp_path("inet"), "--weights",
                 tmp_path("full.ckpt"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "validation folder"));
    ck_assert_ptr_nonnull(strstr(out, "images: 1000\n"));
    free(out);
    /* Usage errors. */
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", "x", "--loader-threads", "-1",
                             NULL), 2);
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", "x", "--ten-crop", NULL), 2);
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "--help", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "--loader-threads"));
    ck_assert_ptr_nonnull(strstr(out, "--ten-crop"));
    free(out);
    remove_tree(tmpdir);
}
END_TEST

/* ---- benchmark -------------------------------------------------------------------------- */

static double bench_folder(const rnc_imagefolder *f, int H, int W, int mode, int reps) {
    rnc_source src = {NULL, f, NULL, f->n, f->n_classes};
    const int B = 50;
    rnc_loader *L;
    rnc_err err;
    if (rnc_loader_create(&L, B, H, W, 1, 2, &err))
        return 0;
    int64_t nb = rnc_pass_batches(&src, mode, B);
    double t0 = rnc_now();
    int64_t images = 0;
    for (int r = 0; r < reps; r++) {
        rnc_pass p = {&src, mode, NULL, 0, nb, 1, r};
        rnc_loader_start(L, &p, &err);
        const rnc_batch *b;
        while ((b = rnc_loader_next(L)))
            images += b->count;
    }
    double dt = rnc_now() - t0;
    rnc_loader_free(L);
    return images / dt;
}

static int bench(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/bench", tmproot);
    mkdir(tmpdir, 0755);
    rnc_imagefolder f;
    rnc_err err;
    rnc_folder_options o = {"", 1, NULL, 1};
    double t0 = rnc_now();
    if (rnc_imagefolder_open(&f, sample_dir(), &o, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double scan = rnc_now() - t0;
    printf("one loader thread; images/s of decode + augment, batches of 50\n");
    printf("sample (1000 32x32 JPEGs): index scan %.0f images/s (1 thread)\n", f.n / scan);
    printf("  train views 32x32:  %.0f images/s\n", bench_folder(&f, 32, 32, RNC_VIEWS_TRAIN, 5));
    printf("  centre views 32x32: %.0f images/s\n", bench_folder(&f, 32, 32, RNC_VIEWS_CENTER, 5));
    rnc_imagefolder_free(&f);
    /* 200 synthetic 500x375 photos-like JPEGs (noise on a gradient, quality 90). */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/syn/c", tmpdir);
    mkdirs(dir);
    const int N = 200;
    for (int i = 0; i < N; i++) {
        uint8_t *p = picture(500, 375, i);
        rnc_rng r = rnc_rng_stream(i, 77, 0, 0);
        for (size_t k = 0; k < 500 * 375 * 3; k++) {
            int v = p[k] + (int)rnc_rng_below(&r, 41) - 20;
            p[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
        char path[1100];
        snprintf(path, sizeof path, "%s/%03d.jpg", dir, i);
        write_jpeg_ex(path, 500, 375, 3, JCS_RGB, JCS_YCbCr, 0, p, 90);
        free(p);
    }
    snprintf(dir, sizeof dir, "%s/syn", tmpdir);
    t0 = rnc_now();
    if (rnc_imagefolder_open(&f, dir, &o, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    scan = rnc_now() - t0;
    double bytes = 0, dec0 = rnc_now();
    rnc_decoder *d = rnc_decoder_new();
    for (int i = 0; i < f.n; i++) {
        char path[1200];
        const uint8_t *rgb;
        int w, h;
        snprintf(path, sizeof path, "%s/%s", f.root, rnc_imagefolder_name(&f, i));
        struct stat st;
        if (stat(path, &st) == 0)
            bytes += (double)st.st_size;
        if (rnc_decode_jpeg(d, path, 0, 0, &rgb, &w, &h, &err))
            fprintf(stderr, "%s\n", err.msg);
    }
    double dec = rnc_now() - dec0;
    rnc_decoder_free(d);
    printf("synthetic 500x375 JPEGs (%.0f kB each): index scan %.0f images/s (1 thread), "
           "full decode alone %.0f images/s\n", bytes / f.n / 1024, f.n / scan, f.n / dec);
    printf("  train views 224x224: %.0f images/s\n", bench_folder(&f, 224, 224, RNC_VIEWS_TRAIN, 2));
    printf("  centre views 224x224: %.0f images/s\n", bench_folder(&f, 224, 224, RNC_VIEWS_CENTER, 2));
    printf("  10-crop views 224x224: %.0f images/s (%.0f views/s)\n",
           bench_folder(&f, 224, 224, RNC_VIEWS_TEN_CROP, 1) / 10,
           bench_folder(&f, 224, 224, RNC_VIEWS_TEN_CROP, 1));
    printf("  train views 32x32 (DCT-scaled decode): %.0f images/s\n",
           bench_folder(&f, 32, 32, RNC_VIEWS_TRAIN, 2));
    rnc_imagefolder_free(&f);
    return 0;
}

/* ---- suite ---------------------------------------------------------------------------- */

static Suite *imagefolder_suite(void) {
    Suite *s = suite_create("imagefolder");
    TestGroup groups[] = {
        {"resize", {test_resize_reference, test_resize_properties}},
        {"decode", {test_decode_gray_cmyk}},
        {"folder", {test_sample_index, test_bad_files_skipped, test_no_images, test_index_cache}},
        {"views", {test_view_draws_and_bounds, test_view_render}},
        {"loader", {test_prefetch_identical, test_prefetch_cifar_matches_make_batch,
                    test_decode_failure_while_loading}},
        {"driver", {test_data_detection, test_data_classes, test_driver_jpeg_end_to_end}},
    };
    add_groups(s, groups, sizeof groups / sizeof groups[0], 300);  /* real data under sanitizers */
    return s;
}

int main(int argc, char **argv) {
    /* rnc_main re-executes itself to set this when it is missing. */
    setenv("OMP_WAIT_POLICY", "passive", 0);
    if (make_tmproot("/tmp/rnc_imgtest_XXXXXX"))
        return EXIT_FAILURE;
    /* The index cache goes to the temp dir, never to the user's ~/.cache. */
    char cache[512];
    snprintf(cache, sizeof cache, "%s/cache", tmproot);
    setenv("XDG_CACHE_HOME", cache, 1);
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        int rc = bench();
        remove_tree(tmproot);
        return rc;
    }
    int rc = run_suite(imagefolder_suite());
    remove_tree(tmproot);
    return rc;
}
