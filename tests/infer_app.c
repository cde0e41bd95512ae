/* infer_app.c - a user's program against an inference file (tests/infer_cli.sh
 * builds it beside the generated NET.c, with nothing of rnc's but those two
 * files): loads the weights (a path, or "-" for the embedded ones), predicts
 * N images in one call, and compares the logits with the training binary's.
 * Built with -DPREFIX=p -DUPREFIX=P -DHEADER='"p.h"' for another --prefix.
 * Usage: app WEIGHTS|- IMAGES.f32 LOGITS.f32 N */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PREFIX
#define PREFIX net
#define UPREFIX NET
#define HEADER "net.h"
#endif
#include HEADER

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define API(x) CAT(PREFIX, x)
#define CONST(x) CAT(UPREFIX, x)

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    float *v = malloc(sizeof(float) * (n ? n : 1));
    if (!f || !v || fread(v, sizeof(float), n, f) != n) {
        fprintf(stderr, "app: cannot read %zu floats from %s\n", n, path);
        exit(1);
    }
    fclose(f);
    return v;
}

int main(int argc, char **argv) {
    if (argc != 5)
        return 2;
    const int n = atoi(argv[4]);
    const size_t image = (size_t)CONST(HEIGHT) * CONST(WIDTH) * CONST(CHANNELS);
    float *images = read_floats(argv[2], (size_t)n * image), *want = read_floats(argv[3], (size_t)n * CONST(CLASSES));
    float *got = calloc((size_t)n * CONST(CLASSES) + 1, sizeof(float));
    /* the API's failures: nothing loaded, a missing file */
    if (API(predict)(images, n, got) != -1 || !strstr(API(error)(), "load")) {
        fprintf(stderr, "FAIL: predict before load: '%s'\n", API(error)());
        return 1;
    }
    if (API(load)("no-such-file.safetensors") != -1 || !strstr(API(error)(), "no-such-file.safetensors")) {
        fprintf(stderr, "FAIL: loading a missing file: '%s'\n", API(error)());
        return 1;
    }
    if (API(load)(strcmp(argv[1], "-") ? argv[1] : NULL) != 0) {
        fprintf(stderr, "FAIL: load: %s\n", API(error)());
        return 1;
    }
    if (API(predict)(images, 0, got) != 0 || API(predict)(images, n, got) != 0) {
        fprintf(stderr, "FAIL: predict: %s\n", API(error)());
        return 1;
    }
    double num = 0, den = 0;
    int same_top = 0;
    for (int i = 0; i < n; i++) {
        int tg = 0, tw = 0;
        for (int k = 0; k < CONST(CLASSES); k++) {
            size_t j = (size_t)i * CONST(CLASSES) + k;
            num += (got[j] - want[j]) * (double)(got[j] - want[j]);
            den += want[j] * (double)want[j];
            tg = got[j] > got[(size_t)i * CONST(CLASSES) + tg] ? k : tg;
            tw = want[j] > want[(size_t)i * CONST(CLASSES) + tw] ? k : tw;
        }
        same_top += tg == tw;
    }
    double e = sqrt(num) / (sqrt(den) > 1e-6 ? sqrt(den) : 1e-6);
    printf("app: %d images (batch %d), logits against the training binary's: relative error %.3g, "
           "same top-1 %d/%d\n", n, CONST(BATCH), e, same_top, n);
    API(free)();
    free(images), free(want), free(got);
    if (!(e <= 1e-4)) {
        fprintf(stderr, "FAIL: relative error %.3g > 1e-4\n", e);
        return 1;
    }
    return 0;
}
