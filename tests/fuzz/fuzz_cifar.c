/* fuzz_cifar.c - the CIFAR-10 reader on arbitrary bytes (rnc_cifar_parse,
 * as for a file), then what training does with what it accepts: the
 * held-out split, and a batch assembled with the paper's augmentation. */
#include <stdlib.h>
#include <string.h>

#include "../../runtime/internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    rnc_dataset ds = {0};
    rnc_err err;
    if (rnc_cifar_parse(&ds, "fuzz.bin", buf, size, &err) != RNC_OK) {
        fuzz_note("refused", err.msg);
        if (ds.n != 0 || ds.pixels)
            abort();   /* a refused file leaves the dataset empty */
        return 0;
    }
    if (ds.n != (int)(size / RNC_CIFAR_RECORD_BYTES))
        abort();
    for (int i = 0; i < ds.n; i++)
        if (ds.labels[i] < 0 || ds.labels[i] >= RNC_CIFAR_CLASSES)
            abort();
    rnc_dataset train, val;
    int n_val = size ? data[0] % (ds.n + 1) : 0;
    if (rnc_dataset_split(&ds, n_val, &train, &val, &err) == RNC_OK) {
        enum { B = 4 };
        static float images[B * RNC_CIFAR_IMAGE_BYTES];
        int32_t labels[B];
        int32_t *perm = malloc((size_t)train.n * sizeof *perm);
        if (perm) {
            rnc_shuffle(perm, train.n, size, 1);
            int count = train.n < B ? train.n : B;
            rnc_make_batch(&train, perm, 0, count, B, 1, 7, 1, images, labels);
            free(perm);
        }
    }
    rnc_dataset_free(&ds);
    return 0;
}
