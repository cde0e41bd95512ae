/* test_torchvision.c - rnc's ImageNet ResNets against torchvision's
 * (tools/torchvision_golden.py wrote GOLDEN: the state_dict's names, dtypes
 * and shapes in torchvision's order, and the float64 logits of generated
 * images; the weights come from a generator both sides share).
 *
 *   loads_torchvision_weights  the weights written as torchvision's safetensors
 *                              file (num_batches_tracked included), imported
 *                              into MODEL: eval-mode logits to 1e-4 relative
 *   export_is_torchvisions     NET export of those weights is the same file's
 *                              tensors (names, shapes, bytes), so torchvision
 *                              loading rnc's export computes the same logits
 *
 * test_torchvision --train-export DIR: two SGD steps from those weights, then
 * DIR/rnc.safetensors (the export) and DIR/logits.txt (rnc's eval-mode
 * logits), for `tools/torchvision_golden.py --check` (tests/torchvision_reverse.sh). */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "golden.h"
#include "rnc/runtime.h"
#include "rnc/safetensors.h"
#include "testutil.h"

extern const rnc_model MODEL;

#ifndef TV_TOL
#define TV_TOL 1e-4
#endif

enum { MAX_TENSORS = 1024, IMAGES = 0xffff };

typedef struct {
    char name[128];
    int is_i64;
    int rank;
    int64_t shape[4];
    size_t count;
} tv_tensor;

typedef struct {
    char arch[32];
    int classes, batch, h, w, c;
    uint64_t seed;
    int n;
    tv_tensor t[MAX_TENSORS];
    double *logits;
    size_t n_logits;
} tv_golden;

static tv_golden G;

static int load_golden(const char *path, tv_golden *g) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    unsigned long long seed;
    int ok = fscanf(f, "rnc-tv-golden 1 %31s classes %d batch %d input %dx%dx%d seed %llu tensors %d", g->arch,
                    &g->classes, &g->batch, &g->h, &g->w, &g->c, &seed, &g->n) == 8 &&
             g->n > 0 && g->n <= MAX_TENSORS;
    g->seed = seed;
    for (int i = 0; ok && i < g->n; i++) {
        tv_tensor *t = &g->t[i];
        char dt[8];
        ok = fscanf(f, "%127s %7s %d", t->name, dt, &t->rank) == 3 && t->rank >= 0 && t->rank <= 4;
        t->is_i64 = !strcmp(dt, "I64");
        t->count = 1;
        for (int d = 0; ok && d < t->rank; d++) {
            long long s;
            ok = fscanf(f, "%lld", &s) == 1 && s > 0;
            t->shape[d] = s;
            t->count *= (size_t)s;
        }
    }
    ok = ok && fscanf(f, " logits %zu", &g->n_logits) == 1;
    if (ok) {
        g->logits = malloc(sizeof(double) * g->n_logits);
        for (size_t i = 0; ok && i < g->n_logits; i++)
            ok = fscanf(f, "%lf", &g->logits[i]) == 1;
    }
    fclose(f);
    if (!ok)
        fprintf(stderr, "%s: not a torchvision golden file (tools/torchvision_golden.py)\n", path);
    return ok ? 0 : -1;
}

/* tools/torchvision_golden.py's generator: u in [-0.5, 0.5) for element i of entry t. */
static double gen_u(uint64_t seed, uint64_t t, uint64_t i) {
    return (double)(golden_mix((seed << 48) ^ (t << 32) ^ i) >> 11) * 0x1.0p-53 - 0.5;
}

static void tensor_values(const tv_tensor *t, int index, float *out) {
    size_t n = strlen(t->name);
#define ENDS(s) (n >= strlen(s) && !strcmp(t->name + n - strlen(s), s))
    for (size_t i = 0; i < t->count; i++) {
        double u = gen_u(G.seed, (uint64_t)index, i), v;
        if (t->rank == 4)
            v = 2 * u * sqrt(6.0 / (double)(t->shape[1] * t->shape[2] * t->shape[3]));
        else if (ENDS("fc.weight"))
            v = 2 * u * sqrt(3.0 / (double)t->shape[1]);
        else if (ENDS("running_var"))
            v = 1 + 0.8 * u;
        else if (ENDS(".weight"))
            v = 1 + 0.4 * u;
        else
            v = 0.4 * u;
        out[i] = (float)v;
    }
#undef ENDS
}

static void images(uint64_t seed, float *x, size_t count) {
    for (size_t i = 0; i < count; i++)
        x[i] = (float)(2 * gen_u(seed, IMAGES, i));
}

/* The golden's state_dict as torchvision would write it with safetensors:
 * its order, F32 weights, I64 counters; written here independently of
 * rnc_st_write. */
static void write_torchvision_file(const char *path) {
    size_t cap = 1 << 20, len = 0, at = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < G.n; i++) {
        const tv_tensor *t = &G.t[i];
        size_t bytes = t->count * (t->is_i64 ? 8 : 4);
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name,
                                t->is_i64 ? "I64" : "F32");
        for (int d = 0; d < t->rank; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", at, at + bytes);
        at += bytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    ck_assert_uint_lt(len, cap - 8);
    while (len % 8)
        h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    uint64_t n = len;
    ck_assert_uint_eq(fwrite(&n, 8, 1, f), 1);
    ck_assert_uint_eq(fwrite(h, 1, len, f), len);
    for (int i = 0; i < G.n; i++) {
        const tv_tensor *t = &G.t[i];
        if (t->is_i64) {
            int64_t zero[1] = {0};
            for (size_t k = 0; k < t->count; k++)
                ck_assert_uint_eq(fwrite(zero, 8, 1, f), 1);
            continue;
        }
        float *v = malloc(sizeof(float) * t->count);
        tensor_values(t, i, v);
        ck_assert_uint_eq(fwrite(v, 4, t->count, f), t->count);
        free(v);
    }
    ck_assert_int_eq(fclose(f), 0);
    free(h);
}

static void setup_golden(rnc_net *net) {
    rnc_err err;
    ck_assert_int_eq(G.classes, MODEL.classes);
    ck_assert_int_eq(G.batch, MODEL.batch);
    ck_assert(G.h == MODEL.height && G.w == MODEL.width && G.c == MODEL.channels);
    size_t floats = 0;
    int counters = 0;
    for (int i = 0; i < G.n; i++) {
        floats += G.t[i].is_i64 ? 0 : G.t[i].count;
        counters += G.t[i].is_i64;
    }
    ck_assert_uint_eq(floats, MODEL.param_count + MODEL.state_count);
    write_torchvision_file(tmp_path("torchvision.safetensors"));
    ck_assert_int_eq(rnc_net_alloc(net, &MODEL, &err), RNC_OK);
    rnc_net_init(net, 1);
    rnc_import_report rep;
    ck_assert_msg(rnc_weights_import(net, tmp_path("torchvision.safetensors"), &rep, &err) == RNC_OK, "%s", err.msg);
    ck_assert_int_eq(rep.loaded, MODEL.n_params + MODEL.n_state);
    ck_assert_int_eq(rep.skipped, 0);
    ck_assert_int_eq(rep.ignored, counters);
}

START_TEST(loads_torchvision_weights) {
    rnc_net net;
    setup_golden(&net);
    size_t n_img = (size_t)MODEL.batch * MODEL.height * MODEL.width * MODEL.channels;
    float *x = malloc(sizeof(float) * n_img), *logits = malloc(sizeof(float) * G.n_logits);
    images(G.seed, x, n_img);
    ck_assert_uint_eq(G.n_logits, (size_t)MODEL.batch * MODEL.classes);
    MODEL.infer(&net, x, logits);
    double e = rel_error(logits, G.logits, G.n_logits, 1e-6);
    printf("%s (%s) against torchvision's %s: logits relative error %.3g\n", MODEL.name, MODEL.schedule, G.arch, e);
    ck_assert_msg(e <= TV_TOL, "logits differ from torchvision's: relative error %.3g", e);
    free(x);
    free(logits);
    rnc_net_free(&net);
}
END_TEST

START_TEST(export_is_torchvisions) {
    rnc_net net;
    setup_golden(&net);
    rnc_err err;
    ck_assert_int_eq(rnc_weights_export(&net, tmp_path("rnc.safetensors"), &err), RNC_OK);
    rnc_st_file a, b;
    ck_assert_int_eq(rnc_st_read(&a, tmp_path("torchvision.safetensors"), &err), RNC_OK);
    ck_assert_int_eq(rnc_st_read(&b, tmp_path("rnc.safetensors"), &err), RNC_OK);
    int compared = 0;
    for (int i = 0; i < a.n; i++) {
        const rnc_st_tensor *x = &a.t[i], *y = rnc_st_find(&b, x->name);
        if (x->dtype == RNC_ST_I64) {
            ck_assert_ptr_null(y);   /* the counters are not rnc's (torchvision adds them back) */
            continue;
        }
        ck_assert_msg(y != NULL, "the export has no %s", x->name);
        ck_assert_int_eq(y->dtype, RNC_ST_F32);
        ck_assert_int_eq(x->rank, y->rank);
        for (int d = 0; d < x->rank; d++)
            ck_assert_int_eq(x->shape[d], y->shape[d]);
        ck_assert_msg(!memcmp(x->data, y->data, x->bytes), "%s: the export's values differ", x->name);
        /* in torchvision's order too */
        ck_assert_msg(y - b.t == compared, "%s is entry %d of the export, %d of torchvision's", x->name,
                      (int)(y - b.t), compared);
        compared++;
    }
    ck_assert_int_eq(compared, b.n);
    rnc_st_free(&a);
    rnc_st_free(&b);
    rnc_net_free(&net);
}
END_TEST

#ifdef TV_INFER_HEADER
#include TV_INFER_HEADER

/* rnc --infer's file for the same network (prefix tvinf, batch 2) loads
 * torchvision's file itself, folds its batch norms, and gives its logits. */
START_TEST(inference_file_gives_torchvisions_logits) {
    rnc_net net;
    setup_golden(&net);   /* writes torchvision.safetensors */
    rnc_net_free(&net);
    ck_assert_msg(tvinf_load(tmp_path("torchvision.safetensors")) == 0, "%s", tvinf_error());
    const int n = TVINF_BATCH + 1;   /* a partial batch too: the golden's images, then the first again */
    size_t image = (size_t)TVINF_HEIGHT * TVINF_WIDTH * TVINF_CHANNELS;
    float *x = malloc(sizeof(float) * image * (size_t)n), *logits = malloc(sizeof(float) * TVINF_CLASSES * (size_t)n);
    images(G.seed, x, image * (size_t)G.batch);
    memcpy(x + image * (size_t)G.batch, x, sizeof(float) * image);
    ck_assert_int_eq(tvinf_predict(x, n, logits), 0);
    double e = rel_error(logits, G.logits, G.n_logits, 1e-6);
    double e2 = rel_error(logits + (size_t)G.batch * TVINF_CLASSES, G.logits, TVINF_CLASSES, 1e-6);
    printf("rnc --infer's %s against torchvision's %s: logits relative error %.3g (partial batch %.3g)\n", MODEL.name,
           G.arch, e, e2);
    ck_assert_msg(e <= TV_TOL && e2 <= TV_TOL, "the inference file's logits differ from torchvision's: %.3g, %.3g", e,
                  e2);
    tvinf_free();
    free(x);
    free(logits);
}
END_TEST
#endif

/* Two SGD steps from the golden weights (BN statistics move too), then the
 * export and rnc's eval-mode logits of the golden's images. */
static const char *export_dir;

START_TEST(train_export) {
    const char *dir = export_dir;
    rnc_net net;
    setup_golden(&net);
    rnc_err err;
    rnc_sgd sgd;
    ck_assert_int_eq(rnc_sgd_init(&sgd, MODEL.param_count, 0.9, 1e-4, &err), RNC_OK);
    size_t n_img = (size_t)MODEL.batch * MODEL.height * MODEL.width * MODEL.channels;
    float *x = malloc(sizeof(float) * n_img), *logits = malloc(sizeof(float) * G.n_logits);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)MODEL.batch);
    for (int s = 0; s < 2; s++) {
        images(G.seed + 1 + (uint64_t)s, x, n_img);
        for (int i = 0; i < MODEL.batch; i++)
            labels[i] = (i * 7 + s) % MODEL.classes;
        rnc_step_stats st;
        MODEL.train_step(&net, x, labels, NULL, &st);
        rnc_sgd_step(&sgd, net.params, net.grads, 1e-3);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/rnc.safetensors", dir);
    ck_assert_int_eq(rnc_weights_export(&net, path, &err), RNC_OK);
    images(G.seed, x, n_img);
    MODEL.infer(&net, x, logits);
    snprintf(path, sizeof path, "%s/logits.txt", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "rnc-logits %llu %d %d %d %d %d\n", (unsigned long long)G.seed, MODEL.batch, MODEL.height, MODEL.width,
            MODEL.channels, MODEL.classes);
    for (size_t i = 0; i < G.n_logits; i++)
        fprintf(f, "%.9g%c", logits[i], i % 8 == 7 ? '\n' : ' ');
    fclose(f);
    printf("wrote %s/rnc.safetensors and %s/logits.txt\n", dir, dir);
    free(x);
    free(logits);
    free(labels);
    rnc_sgd_free(&sgd);
    rnc_net_free(&net);
}
END_TEST

int main(int argc, char **argv) {
    if (load_golden(GOLDEN, &G))
        return 1;
    if (argc == 3 && !strcmp(argv[1], "--train-export"))
        export_dir = argv[2];
    else if (argc != 1) {
        fprintf(stderr, "usage: %s [--train-export DIR]\n", argv[0]);
        return 2;
    }
    Suite *s = suite_create("torchvision");
    TCase *tc = tcase_create(MODEL.name);
    tcase_set_timeout(tc, 600);
    if (export_dir) {
        tcase_add_test(tc, train_export);
    } else {
        tcase_add_test(tc, loads_torchvision_weights);
        tcase_add_test(tc, export_is_torchvisions);
#ifdef TV_INFER_HEADER
        tcase_add_test(tc, inference_file_gives_torchvisions_logits);
#endif
    }
    suite_add_tcase(s, tc);
    int rc = run_suite_in_tmproot("/tmp/rnc_tv_test_XXXXXX", s);
    free(G.logits);
    return rc;
}
