/* cifar.c - the CIFAR-10 binary format: loading, validation, splitting.
 *
 * A file is a sequence of 3073-byte records: one label byte (0..9), then the
 * 32x32 red plane, green plane and blue plane, row-major. Everything read is
 * checked - a wrong size or a stray label means the wrong file was given, and
 * training on it would silently produce nonsense.
 */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

const float rnc_cifar_mean[3] = {0.4914f, 0.4822f, 0.4465f};
const float rnc_cifar_std[3] = {0.2470f, 0.2435f, 0.2616f};


/* Images are counted in int; a file that would overflow that is refused unread. */
#define MAX_IMAGES (INT32_MAX / RNC_CIFAR_IMAGE_BYTES)

int rnc_cifar_load_file(rnc_dataset *ds, const char *path, rnc_err *err) {
    uint8_t *buf = NULL;
    size_t size = 0;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size > (uint64_t)(MAX_IMAGES - ds->n) * RNC_CIFAR_RECORD_BYTES)
        return rnc_fail(err, RNC_E_FORMAT, "%s: %lld bytes, more than CIFAR-10 data rnc can hold (%d images in "
                        "all); not read", path, (long long)st.st_size, MAX_IMAGES);
    int rc = rnc_read_file(path, &buf, &size, err);
    if (rc)
        return rc;
    return rnc_cifar_parse(ds, path, buf, size, err);
}

int rnc_cifar_parse(rnc_dataset *ds, const char *path, uint8_t *buf, size_t size, rnc_err *err) {
    if (size == 0) {
        free(buf);
        return rnc_fail(err, RNC_E_FORMAT,
                        "%s: file is empty (expected records of %d bytes)", path,
                        RNC_CIFAR_RECORD_BYTES);
    }
    if (size % RNC_CIFAR_RECORD_BYTES != 0) {
        free(buf);
        return rnc_fail(err, RNC_E_FORMAT,
                        "%s: size %zu is not a multiple of %d bytes (not a CIFAR-10 binary file?)",
                        path, size, RNC_CIFAR_RECORD_BYTES);
    }
    size_t n = size / RNC_CIFAR_RECORD_BYTES;
    if ((size_t)ds->n + n > (size_t)INT32_MAX / RNC_CIFAR_IMAGE_BYTES) {
        free(buf);
        return rnc_fail(err, RNC_E_FORMAT, "%s: too many images (%zu)", path, n);
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t label = buf[i * RNC_CIFAR_RECORD_BYTES];
        if (label >= RNC_CIFAR_CLASSES) {
            free(buf);
            return rnc_fail(err, RNC_E_FORMAT, "%s: record %zu has label %d (expected 0..9)",
                            path, i, label);
        }
    }

    size_t total = (size_t)ds->n + n;
    uint8_t *pixels = realloc(ds->pixels, total * RNC_CIFAR_IMAGE_BYTES);
    if (!pixels) {
        free(buf);
        return rnc_fail(err, RNC_E_NOMEM, "%s: out of memory for %zu images", path, total);
    }
    ds->pixels = pixels;  /* realloc succeeded: the old block is gone either way */
    ds->owner = 1;
    int32_t *labels = realloc(ds->labels, total * sizeof *labels);
    if (!labels) {
        free(buf);
        return rnc_fail(err, RNC_E_NOMEM, "%s: out of memory for %zu labels", path, total);
    }
    ds->labels = labels;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = buf + i * RNC_CIFAR_RECORD_BYTES;
        labels[ds->n + i] = rec[0];
        memcpy(pixels + (ds->n + i) * RNC_CIFAR_IMAGE_BYTES, rec + 1, RNC_CIFAR_IMAGE_BYTES);
    }
    ds->n = (int)total;
    ds->owner = 1;
    free(buf);
    return RNC_OK;
}

int rnc_cifar_load_train(rnc_dataset *ds, const char *path, rnc_err *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return rnc_fail(err, RNC_E_IO, "%s: %s", path, strerror(errno));
    rnc_dataset all = {0};
    if (!S_ISDIR(st.st_mode)) {
        int rc = rnc_cifar_load_file(&all, path, err);
        if (rc)
            return rc;
        *ds = all;
        return RNC_OK;
    }
    /* Check that every file is there before reading 150 MB. */
    char file[4096];
    for (int i = 1; i <= RNC_CIFAR_TRAIN_FILES; i++) {
        snprintf(file, sizeof file, "%s/data_batch_%d.bin", path, i);
        if (stat(file, &st) != 0)
            return rnc_fail(err, RNC_E_IO,
                            "%s: missing (a CIFAR-10 directory needs data_batch_1..%d.bin)",
                            file, RNC_CIFAR_TRAIN_FILES);
    }
    for (int i = 1; i <= RNC_CIFAR_TRAIN_FILES; i++) {
        snprintf(file, sizeof file, "%s/data_batch_%d.bin", path, i);
        int rc = rnc_cifar_load_file(&all, file, err);
        if (rc) {
            rnc_dataset_free(&all);
            return rc;
        }
    }
    *ds = all;
    return RNC_OK;
}

void rnc_dataset_free(rnc_dataset *ds) {
    if (ds->owner) {
        free(ds->pixels);
        free(ds->labels);
    }
    *ds = (rnc_dataset){0};
}

rnc_dataset rnc_dataset_view(const rnc_dataset *ds, int start, int n) {
    rnc_dataset v = {0};
    v.n = n;
    v.pixels = ds->pixels + (size_t)start * RNC_CIFAR_IMAGE_BYTES;
    v.labels = ds->labels + start;
    v.owner = 0;
    return v;
}

int rnc_dataset_split(const rnc_dataset *all, int n_val, rnc_dataset *train,
                      rnc_dataset *val, rnc_err *err) {
    if (n_val < 0 || n_val >= all->n)
        return rnc_fail(err, RNC_E_ARG,
                        "validation split of %d images leaves no training images (data has %d)",
                        n_val, all->n);
    *train = rnc_dataset_view(all, 0, all->n - n_val);
    *val = rnc_dataset_view(all, all->n - n_val, n_val);
    return RNC_OK;
}

int rnc_cifar_check_model(const rnc_model *m, rnc_err *err) {
    if (m->height != RNC_CIFAR_SIDE || m->width != RNC_CIFAR_SIDE ||
        m->channels != RNC_CIFAR_CHANNELS)
        return rnc_fail(err, RNC_E_MISMATCH,
                        "network %s expects %dx%dx%d input but CIFAR-10 images are 32x32x3",
                        m->name, m->height, m->width, m->channels);
    if (m->classes != RNC_CIFAR_CLASSES)
        return rnc_fail(err, RNC_E_MISMATCH,
                        "network %s has %d classes but CIFAR-10 has %d", m->name, m->classes,
                        RNC_CIFAR_CLASSES);
    return RNC_OK;
}
