/* test_runtime.c - Check tests for the runtime library (librnrt).
 *
 * Real data: RNC_CIFAR_DIR, else ../../shared/data/cifar10 next to this
 * source file. Bad files, checkpoints and logs go to a fresh temp dir per test.
 * The driver is exercised end to end through rnc_main() with fake_model.
 */
#define _GNU_SOURCE  /* mkdtemp, nftw, dup2, open_memstream */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "fake_model.h"
#include "rnc/runtime.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

/* The first n records of data_batch_1.bin, as raw bytes. */
static uint8_t *cifar_records(int n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/data_batch_1.bin", cifar_dir());
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "CIFAR-10 not found at %s (set RNC_CIFAR_DIR)", path);
    uint8_t *buf = malloc((size_t)n * RNC_CIFAR_RECORD_BYTES);
    ck_assert_uint_eq(fread(buf, RNC_CIFAR_RECORD_BYTES, (size_t)n, f), (size_t)n);
    fclose(f);
    return buf;
}

static void write_small_cifar(const char *path, int n) {
    uint8_t *buf = cifar_records(n);
    write_bytes(path, buf, (size_t)n * RNC_CIFAR_RECORD_BYTES);
    free(buf);
}

/* ---- RNG ------------------------------------------------------------------ */

START_TEST(test_rng_determinism) {
    rnc_rng a = rnc_rng_stream(42, RNC_STREAM_AUGMENT, 3, 17);
    rnc_rng b = rnc_rng_stream(42, RNC_STREAM_AUGMENT, 3, 17);
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(rnc_rng_u64(&a), rnc_rng_u64(&b));
    rnc_rng c, d;
    rnc_rng_seed(&c, 5);
    rnc_rng_seed(&d, 5);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(rnc_rng_u64(&c), rnc_rng_u64(&d));
}
END_TEST

/* Fraction of equal bits between the first 64 outputs of two streams. */
static double bit_agreement(rnc_rng a, rnc_rng b) {
    int same = 0;
    for (int i = 0; i < 64; i++)
        same += 64 - __builtin_popcountll(rnc_rng_u64(&a) ^ rnc_rng_u64(&b));
    return same / (64.0 * 64.0);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

START_TEST(test_rng_stream_independence) {
    rnc_rng base = rnc_rng_stream(42, RNC_STREAM_AUGMENT, 3, 17);
    rnc_rng others[] = {
        rnc_rng_stream(42, RNC_STREAM_AUGMENT, 3, 18),   /* next index */
        rnc_rng_stream(42, RNC_STREAM_AUGMENT, 4, 17),   /* next epoch */
        rnc_rng_stream(42, RNC_STREAM_AUGMENT, 17, 3),   /* swapped fields */
        rnc_rng_stream(43, RNC_STREAM_AUGMENT, 3, 17),   /* next seed */
        rnc_rng_stream(42, RNC_STREAM_SHUFFLE, 3, 17),   /* other domain */
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        double agree = bit_agreement(base, others[i]);
        ck_assert_msg(agree > 0.45 && agree < 0.55, "stream %zu agrees on %.3f of bits", i, agree);
    }
    /* Many adjacent indices: no two first outputs collide. */
    enum { N = 1 << 16 };
    uint64_t *first = malloc(N * sizeof *first);
    for (int i = 0; i < N; i++) {
        rnc_rng r = rnc_rng_stream(1, RNC_STREAM_AUGMENT, 0, (uint64_t)i);
        first[i] = rnc_rng_u64(&r);
    }
    qsort(first, N, sizeof *first, cmp_u64);
    int dups = 0;
    for (int i = 1; i < N; i++)
        dups += first[i] == first[i - 1];
    ck_assert_int_eq(dups, 0);
    free(first);
}
END_TEST

START_TEST(test_rng_distributions) {
    rnc_rng r = rnc_rng_stream(7, 99, 0, 0);
    enum { N = 200000 };
    double sum = 0, sum_n = 0, sq_n = 0;
    int hist[10] = {0};
    int out_of_range = 0;  /* counted, then asserted once: ck_assert is slow */
    for (int i = 0; i < N; i++) {
        double u = rnc_rng_uniform(&r);
        out_of_range += !(u >= 0 && u < 1);
        sum += u;
        double z = rnc_rng_normal(&r);
        out_of_range += !isfinite(z);
        sum_n += z;
        sq_n += z * z;
        uint32_t k = rnc_rng_below(&r, 10);
        out_of_range += k >= 10;
        hist[k < 10 ? k : 0]++;
    }
    ck_assert_int_eq(out_of_range, 0);
    ck_assert_double_eq_tol(sum / N, 0.5, 0.005);
    ck_assert_double_eq_tol(sum_n / N, 0.0, 0.01);
    ck_assert_double_eq_tol(sq_n / N, 1.0, 0.02);
    for (int k = 0; k < 10; k++)
        ck_assert_int_lt(abs(hist[k] - N / 10), N / 100);
    ck_assert_uint_eq(rnc_rng_below(&r, 1), 0);
}
END_TEST

/* ---- CIFAR loader ----------------------------------------------------------- */

START_TEST(test_cifar_real_files) {
    rnc_dataset ds = {0};
    rnc_err err;
    int rc = rnc_cifar_load_train(&ds, cifar_dir(), &err);
    ck_assert_msg(rc == RNC_OK, "%s", err.msg);
    ck_assert_int_eq(ds.n, 50000);
    int count[10] = {0};
    for (int i = 0; i < ds.n; i++) {
        ck_assert(ds.labels[i] >= 0 && ds.labels[i] <= 9);
        count[ds.labels[i]]++;
    }
    for (int k = 0; k < 10; k++)  /* CIFAR-10's training set is balanced */
        ck_assert_int_eq(count[k], 5000);

    /* The first record, checked against the file's bytes and the formula. */
    uint8_t *raw = cifar_records(1);
    ck_assert_int_eq(ds.labels[0], raw[0]);
    ck_assert_mem_eq(ds.pixels, raw + 1, RNC_CIFAR_IMAGE_BYTES);
    static float img[RNC_CIFAR_IMAGE_BYTES];
    rnc_image_nhwc(&ds, 0, NULL, img);
    const double mean[3] = {0.4914, 0.4822, 0.4465}, std[3] = {0.2470, 0.2435, 0.2616};
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int c = 0; c < 3; c++) {
                double v = raw[1 + c * 1024 + y * 32 + x] / 255.0;
                ck_assert_double_eq_tol(img[(y * 32 + x) * 3 + c], (v - mean[c]) / std[c], 1e-5);
            }
    /* The last image lives at the end of data_batch_5.bin. */
    char path[4200];
    snprintf(path, sizeof path, "%s/data_batch_5.bin", cifar_dir());
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, -RNC_CIFAR_RECORD_BYTES, SEEK_END);
    uint8_t last[RNC_CIFAR_RECORD_BYTES];
    ck_assert_uint_eq(fread(last, 1, sizeof last, f), sizeof last);
    fclose(f);
    ck_assert_int_eq(ds.labels[49999], last[0]);
    ck_assert_mem_eq(ds.pixels + (size_t)49999 * RNC_CIFAR_IMAGE_BYTES, last + 1,
                     RNC_CIFAR_IMAGE_BYTES);

    /* Held-out split: the last 5000 images. */
    rnc_dataset train, val;
    ck_assert_int_eq(rnc_dataset_split(&ds, 5000, &train, &val, &err), RNC_OK);
    ck_assert_int_eq(train.n, 45000);
    ck_assert_int_eq(val.n, 5000);
    ck_assert_ptr_eq(val.labels, ds.labels + 45000);
    ck_assert_ptr_eq(val.pixels, ds.pixels + (size_t)45000 * RNC_CIFAR_IMAGE_BYTES);
    ck_assert_int_eq(rnc_dataset_split(&ds, 50000, &train, &val, &err), RNC_E_ARG);
    free(raw);
    rnc_dataset_free(&ds);
    ck_assert_ptr_null(ds.pixels);
}
END_TEST

/* Loading path must fail with code and a message naming the file and the needle. */
static void expect_load_error(const char *path, int code, const char *name, const char *needle) {
    rnc_dataset ds = {0};
    rnc_err err = {{0}};
    int rc = rnc_cifar_load_train(&ds, path, &err);
    ck_assert_int_eq(rc, code);
    ck_assert_msg(strstr(err.msg, name), "message '%s' does not name %s", err.msg, name);
    ck_assert_msg(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    ck_assert_int_eq(ds.n, 0);
    ck_assert_ptr_null(ds.pixels);
}

START_TEST(test_cifar_bad_files) {
    make_tmpdir();
    /* Wrong size. */
    static uint8_t buf[20 * RNC_CIFAR_RECORD_BYTES];
    write_bytes(tmp_path("short.bin"), buf, 1234);
    expect_load_error(tmp_path("short.bin"), RNC_E_FORMAT, "short.bin",
                      "size 1234 is not a multiple of 3073");
    /* Bad label in record 17. */
    buf[17 * RNC_CIFAR_RECORD_BYTES] = 12;
    write_bytes(tmp_path("label.bin"), buf, sizeof buf);
    expect_load_error(tmp_path("label.bin"), RNC_E_FORMAT, "label.bin", "record 17 has label 12");
    /* Empty. */
    write_bytes(tmp_path("empty.bin"), buf, 0);
    expect_load_error(tmp_path("empty.bin"), RNC_E_FORMAT, "empty.bin", "empty");
    /* Missing file. */
    expect_load_error(tmp_path("nope.bin"), RNC_E_IO, "nope.bin", "No such file");
    /* A directory missing one of the five training files. */
    mkdir(tmp_path("partial"), 0755);
    buf[17 * RNC_CIFAR_RECORD_BYTES] = 3;
    write_bytes(tmp_path("partial/data_batch_1.bin"), buf, sizeof buf);
    write_bytes(tmp_path("partial/data_batch_2.bin"), buf, sizeof buf);
    expect_load_error(tmp_path("partial"), RNC_E_IO, "data_batch_3.bin", "missing");
    /* A bad file inside an otherwise complete directory. */
    for (int i = 3; i <= 5; i++) {
        char name[64];
        snprintf(name, sizeof name, "partial/data_batch_%d.bin", i);
        write_bytes(tmp_path("%s", name), buf, i == 4 ? 3072 : sizeof buf);
    }
    expect_load_error(tmp_path("partial"), RNC_E_FORMAT, "data_batch_4.bin", "3073");

    /* A failed append leaves a loaded dataset as it was. */
    rnc_dataset ds = {0};
    rnc_err err;
    ck_assert_int_eq(rnc_cifar_load_file(&ds, tmp_path("partial/data_batch_1.bin"), &err), RNC_OK);
    ck_assert_int_eq(ds.n, 20);
    ck_assert_int_ne(rnc_cifar_load_file(&ds, tmp_path("label.bin"), &err), RNC_OK);
    ck_assert_int_eq(ds.n, 20);
    ck_assert_int_eq(ds.labels[17], 3);
    rnc_dataset_free(&ds);

    /* Models that are not 32x32x3 / 10 classes are refused. */
    rnc_model other = fake_model;
    other.height = 224;
    ck_assert_int_eq(rnc_cifar_check_model(&other, &err), RNC_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "224x32x3"));
    ck_assert_int_eq(rnc_cifar_check_model(&fake_model, &err), RNC_OK);
    remove_tmpdir();
}
END_TEST

/* ---- augmentation and batches ------------------------------------------------ */

/* A synthetic dataset of n images with distinct, position-dependent pixels. */
static rnc_dataset synthetic(int n) {
    rnc_dataset ds = {0};
    ds.n = n;
    ds.owner = 1;
    ds.pixels = malloc((size_t)n * RNC_CIFAR_IMAGE_BYTES);
    ds.labels = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        ds.labels[i] = i % 10;
        for (int j = 0; j < RNC_CIFAR_IMAGE_BYTES; j++)
            ds.pixels[(size_t)i * RNC_CIFAR_IMAGE_BYTES + j] = (uint8_t)(1 + (j * 7 + i * 13) % 255);
    }
    return ds;
}

#define AT(img, y, x, c) ((img)[((y) * 32 + (x)) * 3 + (c)])

START_TEST(test_augment_geometry) {
    rnc_dataset ds = synthetic(2);
    static float plain[3072], out[3072];
    rnc_image_nhwc(&ds, 1, NULL, plain);

    rnc_aug none = {0, 0, 0};
    rnc_image_nhwc(&ds, 1, &none, out);
    ck_assert_mem_eq(out, plain, sizeof plain);

    rnc_aug flip = {0, 0, 1};
    rnc_image_nhwc(&ds, 1, &flip, out);
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int c = 0; c < 3; c++)
                ck_assert_float_eq(AT(out, y, x, c), AT(plain, y, 31 - x, c));

    /* Shift by (dx, dy): out(y, x) = plain(y + dy, x + dx), zero pixels outside. */
    const float pad[3] = {-0.4914f / 0.2470f, -0.4822f / 0.2435f, -0.4465f / 0.2616f};
    int shifts[][2] = {{4, -4}, {-4, 4}, {-1, 3}, {2, 0}};
    for (int s = 0; s < 4; s++) {
        for (int fl = 0; fl < 2; fl++) {
            rnc_aug a = {shifts[s][0], shifts[s][1], fl};
            rnc_image_nhwc(&ds, 1, &a, out);
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) {
                    int cx = fl ? 31 - x : x;  /* the column of the crop shown here */
                    int sy = y + a.dy, sx = cx + a.dx;
                    for (int c = 0; c < 3; c++) {
                        if (sy >= 0 && sy < 32 && sx >= 0 && sx < 32)
                            ck_assert_float_eq(AT(out, y, x, c), AT(plain, sy, sx, c));
                        else
                            ck_assert_float_eq_tol(AT(out, y, x, c), pad[c], 1e-6);
                    }
                }
        }
    }
    rnc_dataset_free(&ds);
}
END_TEST

START_TEST(test_augment_draws) {
    int seen_dx[9] = {0}, seen_dy[9] = {0}, flips = 0;
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        rnc_aug a = rnc_aug_draw(3, 5, i, RNC_AUG_PAD);
        rnc_aug b = rnc_aug_draw(3, 5, i, RNC_AUG_PAD);
        ck_assert(a.dx == b.dx && a.dy == b.dy && a.flip == b.flip);
        ck_assert(a.dx >= -4 && a.dx <= 4 && a.dy >= -4 && a.dy <= 4);
        ck_assert(a.flip == 0 || a.flip == 1);
        seen_dx[a.dx + 4]++;
        seen_dy[a.dy + 4]++;
        flips += a.flip;
    }
    for (int k = 0; k < 9; k++) {
        ck_assert_int_gt(seen_dx[k], N / 9 - N / 50);
        ck_assert_int_gt(seen_dy[k], N / 9 - N / 50);
    }
    ck_assert_int_gt(flips, N / 2 - N / 50);
    ck_assert_int_lt(flips, N / 2 + N / 50);
    /* Another epoch or seed gives other draws. */
    int differ_epoch = 0, differ_seed = 0;
    for (int i = 0; i < 100; i++) {
        rnc_aug a = rnc_aug_draw(3, 5, i, 4), e = rnc_aug_draw(3, 6, i, 4),
                s = rnc_aug_draw(4, 5, i, 4);
        differ_epoch += a.dx != e.dx || a.dy != e.dy || a.flip != e.flip;
        differ_seed += a.dx != s.dx || a.dy != s.dy || a.flip != s.flip;
    }
    ck_assert_int_gt(differ_epoch, 80);
    ck_assert_int_gt(differ_seed, 80);
}
END_TEST

START_TEST(test_shuffle) {
    enum { N = 1000 };
    static int32_t p[N], q[N], r[N];
    static int seen[N];
    rnc_shuffle(p, N, 11, 0);
    for (int i = 0; i < N; i++) {
        ck_assert(p[i] >= 0 && p[i] < N);
        ck_assert_int_eq(seen[p[i]]++, 0);
    }
    rnc_shuffle(q, N, 11, 0);
    ck_assert_mem_eq(p, q, sizeof p);
    rnc_shuffle(r, N, 11, 1);
    int fixed_epoch = 0, fixed_self = 0;
    for (int i = 0; i < N; i++) {
        fixed_epoch += p[i] == r[i];
        fixed_self += p[i] == i;
    }
    ck_assert_int_lt(fixed_epoch, 20);  /* ~1 expected for independent permutations */
    ck_assert_int_lt(fixed_self, 20);
    rnc_shuffle(q, 1, 11, 0);
    ck_assert_int_eq(q[0], 0);
}
END_TEST

START_TEST(test_make_batch) {
    rnc_dataset ds = synthetic(50);
    int32_t perm[50];
    rnc_shuffle(perm, 50, 9, 2);
    enum { B = 8 };
    static float a[B * 3072], b[B * 3072], one[3072];
    int32_t la[B], lb[B];
    /* Augmented batch: sample k is image perm[16 + k] with the draw of position 16 + k. */
    omp_set_num_threads(2);
    rnc_make_batch(&ds, perm, 16, B, B, 1, 9, 2, a, la);
    for (int k = 0; k < B; k++) {
        rnc_aug g = rnc_aug_draw(9, 2, 16 + k, RNC_AUG_PAD);
        rnc_image_nhwc(&ds, perm[16 + k], &g, one);
        ck_assert_mem_eq(a + k * 3072, one, sizeof one);
        ck_assert_int_eq(la[k], ds.labels[perm[16 + k]]);
    }
    /* Same result whatever the thread count. */
    omp_set_num_threads(1);
    rnc_make_batch(&ds, perm, 16, B, B, 1, 9, 2, b, lb);
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert_mem_eq(la, lb, sizeof la);
    /* Evaluation batch: identity order, no augmentation, padding zeroed. */
    memset(b, 0x7f, sizeof b);
    rnc_make_batch(&ds, NULL, 45, 5, B, 0, 0, 0, b, lb);
    for (int k = 0; k < B; k++) {
        if (k < 5) {
            rnc_image_nhwc(&ds, 45 + k, NULL, one);
            ck_assert_mem_eq(b + k * 3072, one, sizeof one);
            ck_assert_int_eq(lb[k], ds.labels[45 + k]);
        } else {
            for (int j = 0; j < 3072; j++)
                ck_assert_float_eq(b[k * 3072 + j], 0.0f);
            ck_assert_int_eq(lb[k], 0);
        }
    }
    rnc_dataset_free(&ds);
}
END_TEST

/* ---- schedule and SGD --------------------------------------------------------- */

START_TEST(test_schedule_epochs) {
    rnc_recipe r = {0};
    r.lr = 0.1;
    r.lr_decay = 0.1;
    r.n_lr_steps = 2;
    r.lr_steps[0] = 2;
    r.lr_steps[1] = 4;
    const int ipe = 10;
    for (int it = 0; it < 60; it++) {
        double want = it < 20 ? 0.1 : it < 40 ? 0.01 : 0.001;
        ck_assert_double_eq_tol(rnc_lr_at(&r, it, ipe), want, 1e-12);
    }
    r.n_lr_steps = 0;
    ck_assert_double_eq(rnc_lr_at(&r, 1000000, ipe), 0.1);
}
END_TEST

START_TEST(test_schedule_iterations_warmup) {
    /* The paper's CIFAR schedule: 0.1, /10 at 32k and 48k; ResNet-110 warms up at 0.01. */
    rnc_recipe r = {0};
    r.lr = 0.1;
    r.lr_decay = 0.1;
    r.n_lr_steps = 2;
    r.lr_steps[0] = 32000;
    r.lr_steps[1] = 48000;
    r.lr_steps_in_iterations = 1;
    const int ipe = 351;
    ck_assert_double_eq(rnc_lr_at(&r, 0, ipe), 0.1);
    ck_assert_double_eq(rnc_lr_at(&r, 31999, ipe), 0.1);
    ck_assert_double_eq_tol(rnc_lr_at(&r, 32000, ipe), 0.01, 1e-12);
    ck_assert_double_eq_tol(rnc_lr_at(&r, 47999, ipe), 0.01, 1e-12);
    ck_assert_double_eq_tol(rnc_lr_at(&r, 48000, ipe), 0.001, 1e-12);
    ck_assert_double_eq_tol(rnc_lr_at(&r, 64000, ipe), 0.001, 1e-12);
    r.warmup_iterations = 400;
    r.warmup_lr = 0.01;
    ck_assert_double_eq(rnc_lr_at(&r, 0, ipe), 0.01);
    ck_assert_double_eq(rnc_lr_at(&r, 399, ipe), 0.01);
    ck_assert_double_eq(rnc_lr_at(&r, 400, ipe), 0.1);
}
END_TEST

START_TEST(test_sgd_hand_computed) {
    rnc_sgd s;
    rnc_err err;
    ck_assert_int_eq(rnc_sgd_init(&s, 3, 0.9, 0.01, &err), RNC_OK);
    float p[3] = {1.0f, -2.0f, 0.5f};
    const float g1[3] = {0.5f, 0.25f, -1.0f}, g2[3] = {-0.5f, 1.0f, 0.0f};
    double pd[3] = {1.0, -2.0, 0.5}, v[3] = {0, 0, 0};
    const double lr1 = 0.1, lr2 = 0.05;
    /* By hand, step 1: g = g1 + 0.01 p; v = g; p -= 0.1 v.
     * p0 = 1: g = 0.51, v = 0.51, p = 0.949. */
    rnc_sgd_step(&s, p, g1, lr1);
    ck_assert_float_eq_tol(p[0], 0.949f, 1e-6);
    for (int i = 0; i < 3; i++) {
        double g = g1[i] + 0.01 * pd[i];
        v[i] = g;
        pd[i] -= lr1 * v[i];
        ck_assert_double_eq_tol(p[i], pd[i], 1e-6);
        ck_assert_double_eq_tol(s.velocity[i], v[i], 1e-6);
    }
    /* Step 2: p0 = 0.949: g = -0.5 + 0.00949 = -0.49051, v = 0.9*0.51 - 0.49051 = -0.03151,
     * p = 0.949 + 0.05*0.03151 = 0.9505755. */
    rnc_sgd_step(&s, p, g2, lr2);
    ck_assert_float_eq_tol(p[0], 0.9505755f, 1e-6);
    for (int i = 0; i < 3; i++) {
        double g = g2[i] + 0.01 * pd[i];
        v[i] = 0.9 * v[i] + g;
        pd[i] -= lr2 * v[i];
        ck_assert_double_eq_tol(p[i], pd[i], 1e-6);
    }
    rnc_sgd_free(&s);
    ck_assert_ptr_null(s.velocity);
}
END_TEST

/* ---- net ----------------------------------------------------------------------- */

static const rnc_tensor_info init_params[] = {
    {"conv.weight", 0, 3 * 3 * 16 * 32, 4, {3, 3, 16, 32}, RNC_INIT_HE_NORMAL, 3 * 3 * 16, 3 * 3 * 32},
    {"bn.weight", 4608, 32, 1, {32}, RNC_INIT_ONE, 0, 0},
    {"bn.bias", 4640, 32, 1, {32}, RNC_INIT_ZERO, 0, 0},
    {"fc.weight", 4672, 64 * 10, 2, {64, 10}, RNC_INIT_FC_UNIFORM, 64, 10},
};
static const rnc_tensor_info init_state[] = {
    {"bn.running_mean", 0, 32, 1, {32}, RNC_INIT_ZERO, 0, 0},
    {"bn.running_var", 32, 32, 1, {32}, RNC_INIT_ONE, 0, 0},
};

static rnc_model init_model(void) {
    rnc_model m = fake_model;
    m.name = "init_test";
    m.param_count = 4672 + 640;
    m.state_count = 64;
    m.n_params = 4;
    m.params = init_params;
    m.n_state = 2;
    m.state = init_state;
    m.work_bytes = 100;
    return m;
}

START_TEST(test_net_init) {
    rnc_model m = init_model();
    rnc_err err;
    ck_assert_int_eq(rnc_model_check(&m, &err), RNC_OK);
    rnc_net a, b;
    ck_assert_int_eq(rnc_net_alloc(&a, &m, &err), RNC_OK);
    ck_assert_int_eq(rnc_net_alloc(&b, &m, &err), RNC_OK);
    ck_assert_uint_eq((uintptr_t)a.params % 64, 0);
    ck_assert_uint_eq((uintptr_t)a.grads % 64, 0);
    ck_assert_uint_eq((uintptr_t)a.state % 64, 0);
    ck_assert_uint_eq((uintptr_t)a.work % 64, 0);
    rnc_net_init(&a, 5);
    rnc_net_init(&b, 5);
    ck_assert_mem_eq(a.params, b.params, m.param_count * sizeof(float));

    double sum = 0, sq = 0;
    for (int i = 0; i < 4608; i++) {
        sum += a.params[i];
        sq += (double)a.params[i] * a.params[i];
    }
    double std = sqrt(sq / 4608 - (sum / 4608) * (sum / 4608));
    ck_assert_double_eq_tol(std, sqrt(2.0 / 288), 0.05 * sqrt(2.0 / 288));
    ck_assert_double_eq_tol(sum / 4608, 0.0, 0.005);
    for (int i = 4608; i < 4640; i++)
        ck_assert_float_eq(a.params[i], 1.0f);
    for (int i = 4640; i < 4672; i++)
        ck_assert_float_eq(a.params[i], 0.0f);
    float lo = 1, hi = -1;
    for (int i = 4672; i < 4672 + 640; i++) {
        lo = fminf(lo, a.params[i]);
        hi = fmaxf(hi, a.params[i]);
    }
    ck_assert(lo >= -0.125f && hi <= 0.125f);  /* 1/sqrt(64) */
    ck_assert(lo < -0.11f && hi > 0.11f);      /* and it uses the range */
    for (int i = 0; i < 32; i++) {
        ck_assert_float_eq(a.state[i], 0.0f);
        ck_assert_float_eq(a.state[32 + i], 1.0f);
    }
    rnc_net_init(&b, 6);
    ck_assert(memcmp(a.params, b.params, 4608 * sizeof(float)) != 0);

    /* Broken descriptions are caught. */
    rnc_tensor_info bad[4];
    memcpy(bad, init_params, sizeof bad);
    bad[3].offset = 5000;  /* runs past param_count */
    m.params = bad;
    ck_assert_int_eq(rnc_model_check(&m, &err), RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "fc.weight"));
    m = init_model();
    m.n_sites = 3;   /* call sites without their names */
    m.sites = NULL;
    ck_assert_int_eq(rnc_model_check(&m, &err), RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "call-site"));
    m = init_model();
    m.abi_version = 99;
    ck_assert_int_eq(rnc_model_check(&m, &err), RNC_E_MISMATCH);
    rnc_net_free(&a);
    rnc_net_free(&b);
}
END_TEST

START_TEST(test_logits_stats) {
    const float z[2 * 3] = {2.0f, 1.0f, 0.0f, 0.0f, 0.0f, 3.0f};
    const int32_t y[2] = {0, 1};
    double loss;
    int correct;
    rnc_logits_stats(z, y, 2, 3, &loss, &correct);
    double l0 = -log(exp(2.0) / (exp(2.0) + exp(1.0) + 1.0));
    double l1 = -log(1.0 / (2.0 + exp(3.0)));
    ck_assert_double_eq_tol(loss, l0 + l1, 1e-9);
    ck_assert_int_eq(correct, 1);
    const float big[3] = {1000.0f, 0.0f, -1000.0f};
    rnc_logits_stats(big, y, 1, 3, &loss, &correct);
    ck_assert(isfinite(loss));
    ck_assert_double_eq_tol(loss, 0.0, 1e-9);
}
END_TEST

/* ---- checkpoints ------------------------------------------------------------------ */

static int has_tmp_files(void) {
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    int found = 0;
    for (struct dirent *e; (e = readdir(d));)
        found |= strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return found;
}

START_TEST(test_checkpoint_roundtrip) {
    make_tmpdir();
    rnc_err err;
    rnc_net a, b;
    rnc_sgd sa, sb;
    const rnc_model *m = &fake_model;
    ck_assert_int_eq(rnc_net_alloc(&a, m, &err), RNC_OK);
    ck_assert_int_eq(rnc_net_alloc(&b, m, &err), RNC_OK);
    rnc_sgd_init(&sa, m->param_count, 0.9, 0, &err);
    rnc_sgd_init(&sb, m->param_count, 0.9, 0, &err);
    fill_net(&a, &sa, 0.5f);
    const char *path = tmp_path("a.ckpt");
    rnc_ckpt_meta meta = {.epoch = 3, .step = 120, .seed = 77, .iters_per_epoch = 40}, got;
    ck_assert_int_eq(rnc_checkpoint_save(path, &a, &sa, &meta, &err), RNC_OK);
    ck_assert(!has_tmp_files());
    /* Saving again replaces the file atomically, still no leftovers. */
    ck_assert_int_eq(rnc_checkpoint_save(path, &a, &sa, &meta, &err), RNC_OK);
    ck_assert(!has_tmp_files());

    ck_assert_int_eq(rnc_checkpoint_load(path, &b, &sb, &got, &err), RNC_OK);
    ck_assert_mem_eq(a.params, b.params, m->param_count * sizeof(float));
    ck_assert_mem_eq(a.state, b.state, m->state_count * sizeof(float));
    ck_assert_mem_eq(sa.velocity, sb.velocity, m->param_count * sizeof(float));
    ck_assert_int_eq(got.epoch, 3);
    ck_assert_int_eq(got.step, 120);
    ck_assert_uint_eq(got.seed, 77);
    ck_assert_int_eq(got.iters_per_epoch, 40);

    /* Weights only: loadable for eval, refused for resuming. */
    const char *wpath = tmp_path("w.ckpt");
    ck_assert_int_eq(rnc_checkpoint_save(wpath, &a, NULL, &meta, &err), RNC_OK);
    ck_assert_int_eq(rnc_checkpoint_load(wpath, &b, NULL, NULL, &err), RNC_OK);
    ck_assert_int_eq(rnc_checkpoint_load(wpath, &b, &sb, NULL, &err), RNC_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "momentum"));

    /* Unwritable destination: an error, not a crash. */
    ck_assert_int_eq(rnc_checkpoint_save(tmp_path("no/such/dir.ckpt"), &a, &sa, &meta, &err),
                     RNC_E_IO);
    rnc_net_free(&a);
    rnc_net_free(&b);
    rnc_sgd_free(&sa);
    rnc_sgd_free(&sb);
    remove_tmpdir();
}
END_TEST

START_TEST(test_checkpoint_damage) {
    make_tmpdir();
    rnc_err err;
    rnc_net a, b;
    rnc_sgd sa, sb;
    const rnc_model *m = &fake_model;
    rnc_net_alloc(&a, m, &err);
    rnc_net_alloc(&b, m, &err);
    rnc_sgd_init(&sa, m->param_count, 0.9, 0, &err);
    rnc_sgd_init(&sb, m->param_count, 0.9, 0, &err);
    fill_net(&a, &sa, 0.25f);
    fill_net(&b, &sb, 9.0f);
    const char *path = tmp_path("good.ckpt");
    rnc_ckpt_meta meta = {.epoch = 1, .step = 40, .seed = 1, .iters_per_epoch = 40};
    ck_assert_int_eq(rnc_checkpoint_save(path, &a, &sa, &meta, &err), RNC_OK);
    size_t n;
    char *bytes = read_all(path, &n);

    /* One flipped bit in the middle of the parameters. */
    bytes[n / 2] ^= 0x10;
    write_bytes(tmp_path("corrupt.ckpt"), bytes, n);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("corrupt.ckpt"), &b, &sb, NULL, &err),
                     RNC_E_CHECKSUM);
    ck_assert_ptr_nonnull(strstr(err.msg, "corrupt.ckpt"));
    ck_assert_ptr_nonnull(strstr(err.msg, "checksum"));
    bytes[n / 2] ^= 0x10;
    /* A flipped checksum byte is caught too. */
    bytes[n - 1] ^= 1;
    write_bytes(tmp_path("corrupt2.ckpt"), bytes, n);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("corrupt2.ckpt"), &b, &sb, NULL, &err),
                     RNC_E_CHECKSUM);
    bytes[n - 1] ^= 1;

    /* Truncated at several points, including inside the header. */
    size_t cuts[] = {0, 5, 20, 60, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(tmp_path("trunc.ckpt"), bytes, cuts[i]);
        int rc = rnc_checkpoint_load(tmp_path("trunc.ckpt"), &b, &sb, NULL, &err);
        ck_assert_int_eq(rc, RNC_E_FORMAT);
        ck_assert_ptr_nonnull(strstr(err.msg, "trunc.ckpt"));
        if (cuts[i] >= 60)
            ck_assert_msg(strstr(err.msg, "truncated"), "message: %s", err.msg);
    }
    /* Not a checkpoint at all. */
    write_bytes(tmp_path("text.ckpt"), "hello, world, this is not a checkpoint", 38);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("text.ckpt"), &b, &sb, NULL, &err), RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "not an rnc checkpoint"));
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("missing.ckpt"), &b, &sb, NULL, &err), RNC_E_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "missing.ckpt"));

    /* Another network: same sizes, other name; and other sizes. */
    rnc_model other = fake_model;
    other.name = "resnet20";
    rnc_net c;
    rnc_net_alloc(&c, &other, &err);
    ck_assert_int_eq(rnc_checkpoint_load(path, &c, NULL, NULL, &err), RNC_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "fake_softmax"));
    ck_assert_ptr_nonnull(strstr(err.msg, "resnet20"));
    rnc_net_free(&c);
    rnc_model init = init_model();
    init.name = fake_model.name;
    rnc_net_alloc(&c, &init, &err);
    ck_assert_int_eq(rnc_checkpoint_load(path, &c, NULL, NULL, &err), RNC_E_MISMATCH);
    rnc_net_free(&c);

    /* None of the failures touched the destination net. */
    for (size_t i = 0; i < m->param_count; i++)
        ck_assert_float_eq(b.params[i], 9.0f + (float)i * 0.001f);
    free(bytes);
    rnc_net_free(&a);
    rnc_net_free(&b);
    rnc_sgd_free(&sa);
    rnc_sgd_free(&sb);
    remove_tmpdir();
}
END_TEST

/* ---- driver, end to end with the fake model ------------------------------------------- */

/* CSV rows as arrays of fields. */
typedef struct {
    int n;
    char fields[16][12][48];
} csv;

static void parse_csv(const char *path, csv *c, char *header, size_t header_len) {
    char *text = read_all(path, NULL);
    char *save, *line = strtok_r(text, "\n", &save);
    ck_assert_ptr_nonnull(line);
    snprintf(header, header_len, "%s", line);
    c->n = 0;
    while ((line = strtok_r(NULL, "\n", &save))) {
        ck_assert_int_lt(c->n, 16);
        int f = 0;
        for (char *p = line;; f++) {
            char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            ck_assert_int_lt(f, 12);
            snprintf(c->fields[c->n][f], 48, "%.*s", (int)len, p);
            if (!comma)
                break;
            p = comma + 1;
        }
        ck_assert_int_eq(f + 1, 9);
        c->n++;
    }
    free(text);
}

static const char *CSV_HEADER =
    "epoch,step,lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s";

START_TEST(test_driver_train_resume_eval) {
    make_tmpdir();
    const char *data = tmp_path("small.bin");
    write_small_cifar(data, 400);  /* 320 train + 80 val: 40 iterations per epoch */
    char *out;

    /* Five epochs straight. */
    int rc = run_cli(&fake_model, &out, "train", "--data", data, "--val", "80", "--epochs", "5",
                     "--seed", "7", "--threads", "2", "--log", tmp_path("full.csv"),
                     "--checkpoint", tmp_path("full.ckpt"), NULL);
    ck_assert_msg(rc == 0, "train failed:\n%s", out);
    ck_assert_ptr_nonnull(strstr(out, "epoch 5/5  train loss "));
    ck_assert_ptr_nonnull(strstr(out, "val err "));
    ck_assert_ptr_nonnull(strstr(out, "final: train loss "));
    free(out);
    ck_assert(!has_tmp_files());

    csv full, part;
    char header[256];
    parse_csv(tmp_path("full.csv"), &full, header, sizeof header);
    ck_assert_str_eq(header, CSV_HEADER);
    ck_assert_int_eq(full.n, 5);
    for (int e = 0; e < 5; e++) {
        ck_assert_int_eq(atoi(full.fields[e][0]), e + 1);
        ck_assert_int_eq(atoi(full.fields[e][1]), 40 * (e + 1));
    }
    /* lr steps at epoch 4 (0-based), so the 5th epoch trains at lr/10. */
    ck_assert_double_eq_tol(atof(full.fields[0][2]), 1e-4, 1e-15);
    ck_assert_double_eq_tol(atof(full.fields[4][2]), 1e-5, 1e-15);
    double first_loss = atof(full.fields[0][3]), last_loss = atof(full.fields[4][3]);
    ck_assert_msg(last_loss < first_loss - 0.1, "loss %g -> %g", first_loss, last_loss);
    ck_assert_double_lt(atof(full.fields[4][4]), atof(full.fields[0][4]));
    for (int e = 0; e < 5; e++) {
        double ve = atof(full.fields[e][6]);
        ck_assert(ve > 0 && ve < 1 && full.fields[e][5][0]);
    }

    /* Three epochs, then resume to five: identical numbers. */
    rc = run_cli(&fake_model, NULL, "train", "--data", data, "--val", "80", "--epochs", "3",
                 "--seed", "7", "--threads", "2", "--log", tmp_path("part.csv"), "--checkpoint",
                 tmp_path("part.ckpt"), "--quiet", NULL);
    ck_assert_int_eq(rc, 0);
    rc = run_cli(&fake_model, &out, "train", "--data", data, "--val", "80", "--epochs", "5",
                 "--threads", "2", "--log", tmp_path("part.csv"), "--checkpoint",
                 tmp_path("part.ckpt"), "--resume", tmp_path("part.ckpt"), NULL);
    ck_assert_msg(rc == 0, "resume failed:\n%s", out);
    ck_assert_ptr_nonnull(strstr(out, "resumed from"));
    ck_assert_ptr_null(strstr(out, "epoch 3/5"));  /* starts at epoch 4 */
    ck_assert_ptr_nonnull(strstr(out, "epoch 4/5"));
    free(out);
    parse_csv(tmp_path("part.csv"), &part, header, sizeof header);
    ck_assert_str_eq(header, CSV_HEADER);
    ck_assert_int_eq(part.n, 5);
    for (int e = 0; e < 5; e++)
        for (int f = 0; f < 7; f++)  /* all but seconds and images_per_s */
            ck_assert_msg(!strcmp(full.fields[e][f], part.fields[e][f]),
                          "epoch %d column %d: %s vs %s", e + 1, f, full.fields[e][f],
                          part.fields[e][f]);
    /* And the final weights are bit-identical. */
    size_t na, nb;
    char *ca = read_all(tmp_path("full.ckpt"), &na), *cb = read_all(tmp_path("part.ckpt"), &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_mem_eq(ca, cb, na);
    free(ca);
    free(cb);

    /* A different seed gives a different run. */
    rc = run_cli(&fake_model, NULL, "train", "--data", data, "--val", "80", "--epochs", "1",
                 "--seed", "8", "--quiet", "--log", tmp_path("seed8.csv"), NULL);
    ck_assert_int_eq(rc, 0);
    parse_csv(tmp_path("seed8.csv"), &part, header, sizeof header);
    ck_assert_str_ne(part.fields[0][3], full.fields[0][3]);

    /* eval on a file: every image counts, the last batch is padded (203 = 25*8 + 3). */
    write_small_cifar(tmp_path("eval.bin"), 203);
    rc = run_cli(&fake_model, &out, "eval", "--data", tmp_path("eval.bin"), "--weights",
                 tmp_path("full.ckpt"), NULL);
    ck_assert_msg(rc == 0, "eval failed:\n%s", out);
    ck_assert_ptr_nonnull(strstr(out, "images: 203\n"));
    ck_assert_ptr_nonnull(strstr(out, "loss: "));
    char *acc = strstr(out, "accuracy: ");
    ck_assert_ptr_nonnull(acc);
    double a = atof(acc + 10);
    ck_assert(a > 0.1 && a <= 1.0);  /* 160 of these were trained on */
    ck_assert_int_eq((int)strlen("0.0000"), (int)strcspn(acc + 10, "\n"));
    free(out);

    /* The printed accuracy agrees with the library's own evaluation. */
    rnc_net net;
    rnc_err err;
    rnc_dataset ds = {0};
    rnc_net_alloc(&net, &fake_model, &err);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("full.ckpt"), &net, NULL, NULL, &err), RNC_OK);
    ck_assert_int_eq(rnc_cifar_load_file(&ds, tmp_path("eval.bin"), &err), RNC_OK);
    rnc_eval_result res;
    rnc_evaluate(&net, &ds, &res, &err);
    ck_assert_int_eq(res.images, 203);
    ck_assert_double_eq_tol(res.accuracy, a, 0.00006);
    /* Padding is ignored: counting image by image gives the same hits. */
    int hits = 0;
    static float img[FAKE_BATCH * 3072];
    float logits[FAKE_BATCH * 10];
    for (int i = 0; i < 203; i++) {
        memset(img, 0, sizeof img);
        rnc_image_nhwc(&ds, i, NULL, img);
        fake_model.infer(&net, img, logits);
        int best = 0;
        for (int k = 1; k < 10; k++)
            if (logits[k] > logits[best])
                best = k;
        hits += best == ds.labels[i];
    }
    ck_assert_int_eq(hits, (int)lround(res.accuracy * 203));
    rnc_dataset_free(&ds);
    rnc_net_free(&net);

    /* eval on a directory with test_batch.bin uses it and says so. */
    mkdir(tmp_path("withtest"), 0755);
    write_small_cifar(tmp_path("withtest/test_batch.bin"), 50);
    rc = run_cli(&fake_model, &out, "eval", "--data", tmp_path("withtest"), "--weights",
                 tmp_path("full.ckpt"), NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(strstr(out, "test_batch.bin"));
    ck_assert_ptr_nonnull(strstr(out, "images: 50\n"));
    free(out);
    remove_tmpdir();
}
END_TEST

START_TEST(test_driver_eval_heldout) {
    make_tmpdir();
    write_small_cifar(tmp_path("small.bin"), 16);
    int rc = run_cli(&fake_model, NULL, "train", "--data", tmp_path("small.bin"), "--val", "0",
                     "--steps", "2", "--quiet", "--checkpoint", tmp_path("w.ckpt"), NULL);
    ck_assert_int_eq(rc, 0);
    /* The CIFAR directory has no test_batch.bin: the last 5000 training images. */
    char *out;
    rc = run_cli(&fake_model, &out, "eval", "--data", cifar_dir(), "--weights", tmp_path("w.ckpt"),
                 NULL);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "held-out validation split"));
    ck_assert_ptr_nonnull(strstr(out, "images: 5000\n"));
    ck_assert_ptr_nonnull(strstr(out, "accuracy: 0."));
    free(out);
    remove_tmpdir();
}
END_TEST

/* The CPU checks before anything runs: a model for a feature this CPU lacks
 * (or one the runtime cannot check) is refused, naming it; a model whose
 * cpu_setup fails (AMX: Linux refused the tile state) stops with its
 * reason, and one whose setup succeeds is set up once and runs. */
static int setup_calls;
static int refuse_setup(char *why, size_t n) {
    setup_calls++;
    snprintf(why, n, "the tiles were refused (test)");
    return -1;
}
static int accept_setup(char *why, size_t n) {
    (void)why, (void)n;
    setup_calls++;
    return 0;
}

START_TEST(test_driver_cpu_checks) {
    make_tmpdir();
    write_small_cifar(tmp_path("small.bin"), 16);
    rnc_model m = fake_model;
    m.target = "test-target";
    m.cpu_feature = "no_such_feature";
    m.cpu_setup = accept_setup;
    setup_calls = 0;
    char *out;
    int rc = run_cli(&m, &out, "train", "--data", tmp_path("small.bin"), "--val", "0", "--steps", "1",
                     "--checkpoint", tmp_path("cpu.ckpt"), NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(out, "fake: error: this network was generated for the test-target target, "
                              "and this CPU has no no_such_feature"), "%s", out);
    ck_assert_int_eq(setup_calls, 0);
    free(out);
    m.cpu_feature = NULL;
    m.cpu_setup = refuse_setup;
    rc = run_cli(&m, &out, "train", "--data", tmp_path("small.bin"), "--val", "0", "--steps", "1",
                 "--checkpoint", tmp_path("cpu.ckpt"), NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(out, "fake: error: the tiles were refused (test)\n"), "%s", out);
    ck_assert_int_eq(setup_calls, 1);
    ck_assert_int_ne(access(tmp_path("cpu.ckpt"), F_OK), 0);   /* stopped before training */
    free(out);
    m.cpu_setup = accept_setup;
    rc = run_cli(&m, &out, "train", "--data", tmp_path("small.bin"), "--val", "0", "--steps", "1",
                 "--quiet", "--checkpoint", tmp_path("cpu.ckpt"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_int_eq(setup_calls, 2);
    ck_assert_int_eq(access(tmp_path("cpu.ckpt"), F_OK), 0);
    free(out);
    remove_tmpdir();
}
END_TEST

START_TEST(test_driver_steps_and_recipe_iterations) {
    make_tmpdir();
    const char *data = tmp_path("small.bin");
    write_small_cifar(data, 400);
    /* --steps 50 with 40 iterations per epoch: a full epoch and a partial one. */
    int rc = run_cli(&fake_model, NULL, "train", "--data", data, "--val", "80", "--steps", "50",
                     "--quiet", "--log", tmp_path("s.csv"), "--checkpoint", tmp_path("s.ckpt"),
                     NULL);
    ck_assert_int_eq(rc, 0);
    csv c;
    char header[256];
    parse_csv(tmp_path("s.csv"), &c, header, sizeof header);
    ck_assert_int_eq(c.n, 2);
    ck_assert_str_eq(c.fields[0][1], "40");
    ck_assert_str_eq(c.fields[1][0], "2");
    ck_assert_str_eq(c.fields[1][1], "50");
    rnc_net net;
    rnc_err err;
    rnc_ckpt_meta meta;
    rnc_net_alloc(&net, &fake_model, &err);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("s.ckpt"), &net, NULL, &meta, &err), RNC_OK);
    ck_assert_int_eq(meta.step, 50);
    ck_assert_int_eq(meta.epoch, 1);
    rnc_net_free(&net);

    /* Schedule flags: --lr-steps counts iterations when the run is given in --steps
     * (epochs with --epochs), --warmup runs at lr/10. */
    rc = run_cli(&fake_model, NULL, "train", "--data", data, "--val", "80", "--steps", "50",
                 "--quiet", "--lr", "2e-4", "--lr-steps", "40", "--log", tmp_path("l.csv"), NULL);
    ck_assert_int_eq(rc, 0);
    parse_csv(tmp_path("l.csv"), &c, header, sizeof header);
    ck_assert_double_eq_tol(atof(c.fields[0][2]), 2e-4, 1e-15);  /* last iteration of epoch 1 */
    ck_assert_double_eq_tol(atof(c.fields[1][2]), 2e-5, 1e-15);  /* epoch 2: one step passed */
    rc = run_cli(&fake_model, NULL, "train", "--data", data, "--val", "80", "--steps", "50",
                 "--quiet", "--lr", "2e-4", "--warmup", "50", "--momentum", "0.5",
                 "--weight-decay", "0", "--log", tmp_path("w.csv"), NULL);
    ck_assert_int_eq(rc, 0);
    parse_csv(tmp_path("w.csv"), &c, header, sizeof header);
    ck_assert_double_eq_tol(atof(c.fields[0][2]), 2e-5, 1e-15);
    ck_assert_double_eq_tol(atof(c.fields[1][2]), 2e-5, 1e-15);
    ck_assert_str_ne(c.fields[0][3], "");

    /* A recipe in iterations is honoured without flags; no validation with --val 0. */
    rnc_model it = fake_model;
    it.recipe.epochs = 0;
    it.recipe.iterations = 45;
    char *out;
    rc = run_cli(&it, &out, "train", "--data", data, "--val", "0", "--log", tmp_path("i.csv"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_ptr_null(strstr(out, "val err"));
    free(out);
    parse_csv(tmp_path("i.csv"), &c, header, sizeof header);
    ck_assert_int_eq(c.n, 1);  /* 400 / 8 = 50 per epoch: one partial epoch */
    ck_assert_str_eq(c.fields[c.n - 1][1], "45");
    ck_assert_str_eq(c.fields[0][5], "");
    remove_tmpdir();
}
END_TEST

START_TEST(test_driver_errors) {
    make_tmpdir();
    char *out;
    ck_assert_int_eq(run_cli(&fake_model, &out, "--help", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "fake_softmax"));
    ck_assert_ptr_nonnull(strstr(out, "batch 8"));
    ck_assert_ptr_nonnull(strstr(out, "32x32x3"));
    ck_assert_ptr_nonnull(strstr(out, "--weight-decay"));
    ck_assert_ptr_nonnull(strstr(out, "bench"));
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "help", NULL), 0);
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "fly", NULL), 2);
    ck_assert_ptr_nonnull(strstr(out, "unknown command 'fly'"));
    ck_assert_ptr_nonnull(strstr(out, "--help"));
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", "x", "--frobnicate", NULL), 2);
    ck_assert_ptr_nonnull(strstr(out, "unknown flag '--frobnicate'"));
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", "x", "--epochs", "1",
                             "--steps", "3", NULL), 2);
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", "x", "--epochs", "two", NULL), 2);
    ck_assert_ptr_nonnull(strstr(out, "'two'"));
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--epochs", "1", NULL), 2);
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "eval", "--data", "x", NULL), 2);
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "bench", "--weights", "x", NULL), 2);
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", "x", "--lr", NULL), 2);
    free(out);
    /* Runtime failures: exit 1 with the file named. */
    uint8_t junk[100] = {0};
    write_bytes(tmp_path("junk.bin"), junk, sizeof junk);
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", tmp_path("junk.bin"), NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "junk.bin: size 100 is not a multiple of 3073"));
    free(out);
    write_small_cifar(tmp_path("small.bin"), 64);
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", tmp_path("small.bin"), "--val",
                             "60", "--steps", "1", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "fewer than one batch"));
    free(out);
    rnc_model other = fake_model;
    other.name = "resnet56";
    ck_assert_int_eq(run_cli(&other, NULL, "train", "--data", tmp_path("small.bin"), "--val", "0",
                             "--steps", "1", "--quiet", "--checkpoint", tmp_path("r56.ckpt"), NULL), 0);
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", tmp_path("small.bin"), "--val",
                             "0", "--epochs", "2", "--resume", tmp_path("r56.ckpt"), NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "resnet56"));
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "eval", "--data", tmp_path("small.bin"),
                             "--weights", tmp_path("r56.ckpt"), NULL), 1);
    ck_assert_ptr_null(strstr(out, "accuracy:"));
    free(out);
    remove_tmpdir();
}
END_TEST

START_TEST(test_driver_divergence) {
    make_tmpdir();
    write_small_cifar(tmp_path("small.bin"), 400);
    char *out;
    int rc = run_cli(&fake_model, &out, "train", "--data", tmp_path("small.bin"), "--val", "0",
                     "--epochs", "2", "--lr", "1e30", "--checkpoint", tmp_path("x.ckpt"),
                     "--log", tmp_path("x.csv"), NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(out, "diverged"), "%s", out);
    ck_assert(!file_exists(tmp_path("x.ckpt")));
    ck_assert(!has_tmp_files());
    free(out);
    size_t n;
    char *log = read_all(tmp_path("x.csv"), &n);
    ck_assert_str_eq(log, "epoch,step,lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s\n");
    free(log);
    remove_tmpdir();
}
END_TEST

START_TEST(test_driver_bench) {
    make_tmpdir();
    char *out;
    int rc = run_cli(&fake_model, &out, "bench", "--steps", "3", "--infer", "--threads", "1", NULL);
    ck_assert_int_eq(rc, 0);
    char *t = strstr(out, "train images/s: "), *i = strstr(out, "infer images/s: ");
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(i);
    ck_assert_double_gt(atof(t + 16), 0);
    ck_assert_double_gt(atof(i + 16), 0);
    free(out);
    rc = run_cli(&fake_model, &out, "bench", "--steps", "2", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_null(strstr(out, "infer images/s"));
    ck_assert_ptr_null(strstr(out, "profile:"));
    free(out);

    /* --profile: both call sites, slowest first, then per op kind, all
     * within the step's time */
    rc = run_cli(&fake_model, &out, "bench", "--steps", "3", "--profile", "--threads", "1", NULL);
    ck_assert_int_eq(rc, 0);
    double kernels_ms, step_ms;
    char *p = strstr(out, "profile: 2 kernel calls take ");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(sscanf(p, "profile: 2 kernel calls take %lf of %lf ms", &kernels_ms, &step_ms), 2);
    ck_assert(kernels_ms > 0 && kernels_ms <= step_ms);
    ck_assert_ptr_nonnull(strstr(p, "fc: fc forward-backward"));
    ck_assert_ptr_nonnull(strstr(p, "norm: batchnorm center"));
    char *row = strstr(p, "call (layer: op kernel)\n");   /* the two calls, slowest first */
    ck_assert_ptr_nonnull(row);
    double first_ms, second_ms;
    row = strchr(row, '\n') + 1;
    ck_assert_int_eq(sscanf(row, "%lf", &first_ms), 1);
    row = strchr(row, '\n') + 1;
    ck_assert_int_eq(sscanf(row, "%lf", &second_ms), 1);
    ck_assert(first_ms >= second_ms);
    char *kinds = strstr(p, "op kind\n");
    ck_assert_ptr_nonnull(kinds);
    double ms[2], share[2], rate;
    char kind[2][32];
    /* operations are counted for the classifier, not for the centering */
    ck_assert_int_eq(sscanf(kinds, "op kind\n%lf %lf%% %lf %31s\n%lf %lf%% %31s", &ms[0], &share[0], &rate, kind[0],
                            &ms[1], &share[1], kind[1]),
                     7);
    const double fc_flops = 4.0 * FAKE_PIXELS * FAKE_CLASSES * FAKE_BATCH;
    ck_assert_double_eq_tol(rate, fc_flops / (ms[0] * 1e-3) * 1e-9, 0.06 + 0.01 * rate);
    ck_assert_str_eq(kind[0], "fc");
    ck_assert_str_eq(kind[1], "batchnorm");
    ck_assert(ms[0] >= ms[1] && share[0] + share[1] <= 100.05);
    /* equal up to the printing: kernels_ms has 2 decimals, the rows 3 */
    ck_assert_double_eq_tol((ms[0] + ms[1]), kernels_ms, 0.0061);
    free(out);

    /* --profile-calls N: the N slowest calls and how many are left out (the
     * kinds still cover every call); 0: all of them */
    rc = run_cli(&fake_model, &out, "bench", "--steps", "2", "--profile-calls", "1", "--threads", "1", NULL);
    ck_assert_int_eq(rc, 0);
    row = strstr(out, "call (layer: op kernel)\n");
    ck_assert_ptr_nonnull(row);
    row = strchr(strchr(row, '\n') + 1, '\n') + 1;   /* past the one call */
    const char *more = "      (1 more calls: --profile-calls 0 lists them all)\n";
    ck_assert_msg(!strncmp(row, more, strlen(more)), "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "fc\n"));
    ck_assert_ptr_nonnull(strstr(out, "batchnorm\n"));
    free(out);
    rc = run_cli(&fake_model, &out, "bench", "--steps", "2", "--profile-calls", "0", "--threads", "1", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(strstr(out, "fc: fc forward-backward"));
    ck_assert_ptr_nonnull(strstr(out, "norm: batchnorm center"));
    ck_assert_ptr_null(strstr(out, "more calls"));
    free(out);
    rc = run_cli(&fake_model, &out, "bench", "--profile-calls", "-1", NULL);
    ck_assert_int_eq(rc, 2);
    free(out);
    remove_tmpdir();
}
END_TEST

/* ---- suite ------------------------------------------------------------------------- */

/* rnc_alloc_aligned: zeroed, 64-byte aligned, and large buffers (4 MiB and
 * up) 2 MiB-aligned so transparent huge pages can back them whole. */
START_TEST(test_alloc_aligned) {
    const size_t sizes[] = {0, 1, 63, 64, 100, (size_t)4 << 20, ((size_t)4 << 20) + 1, (size_t)9 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = rnc_alloc_aligned(sizes[i]);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % 64, 0);
        if (sizes[i] >= (size_t)4 << 20)
            ck_assert_uint_eq((uintptr_t)p % ((size_t)2 << 20), 0);
        size_t nonzero = 0;
        for (size_t b = 0; b < sizes[i]; b++)
            nonzero += p[b] != 0;
        ck_assert_uint_eq(nonzero, 0);
        if (sizes[i])
            p[sizes[i] - 1] = 1;   /* the whole size is usable */
        free(p);
    }
    ck_assert_ptr_null(rnc_alloc_aligned(SIZE_MAX - 10));
}
END_TEST

static Suite *runtime_suite(void) {
    Suite *s = suite_create("runtime");
    TestGroup groups[] = {
        {"rng", {test_rng_determinism, test_rng_stream_independence, test_rng_distributions}},
        {"cifar", {test_cifar_real_files, test_cifar_bad_files}},
        {"augment", {test_augment_geometry, test_augment_draws, test_shuffle, test_make_batch}},
        {"optim", {test_schedule_epochs, test_schedule_iterations_warmup, test_sgd_hand_computed}},
        {"net", {test_alloc_aligned, test_net_init, test_logits_stats}},
        {"checkpoint", {test_checkpoint_roundtrip, test_checkpoint_damage}},
        {"driver", {test_driver_train_resume_eval, test_driver_eval_heldout,
                    test_driver_steps_and_recipe_iterations, test_driver_errors,
                    test_driver_divergence, test_driver_bench, test_driver_cpu_checks}},
    };
    add_groups(s, groups, sizeof groups / sizeof groups[0], 120);  /* real data under sanitizers */
    return s;
}

int main(void) {
    return run_suite_in_tmproot("/tmp/rnc_test_XXXXXX", runtime_suite());
}
