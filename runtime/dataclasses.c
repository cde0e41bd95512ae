/* dataclasses.c - how many classes the data at --data PATH has, before any
 * network exists: what `rnc train SPEC --classes auto` compiles the
 * classifier for.  The detection is rnc_data_open's (prefetch.c): CIFAR-10
 * files, else the class folders of PATH/train/, else of PATH. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "rnc/data.h"

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Folders in dir (as rnc_imagefolder_open counts classes); -1 when dir cannot be read. */
static int count_subdirs(const char *dir) {
    DIR *dp = opendir(dir);
    if (!dp)
        return -1;
    int n = 0;
    struct dirent *e;
    char path[8192];
    while ((e = readdir(dp))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        n += is_dir(path);
    }
    closedir(dp);
    return n;
}

int rnc_data_classes(const char *path, int *classes, char *what, size_t what_size, rnc_err *err) {
    char probe[4200];
    if (!path || !*path)
        return rnc_fail(err, RNC_E_ARG, "no data path");
    if (!exists(path))
        return rnc_fail(err, RNC_E_IO, "%s: no such file or folder", path);
    int cifar = !is_dir(path);
    if (!cifar) {
        snprintf(probe, sizeof probe, "%s/data_batch_1.bin", path);
        cifar = exists(probe);
        snprintf(probe, sizeof probe, "%s/test_batch.bin", path);
        cifar |= exists(probe);
    }
    if (cifar) {
        *classes = RNC_CIFAR_CLASSES;
        snprintf(what, what_size, "CIFAR-10 at %s", path);
        return RNC_OK;
    }
    snprintf(probe, sizeof probe, "%s/train", path);
    const char *dir = is_dir(probe) ? probe : path;
    int n = count_subdirs(dir);
    if (n < 0)
        return rnc_fail(err, RNC_E_IO, "%s: cannot read the folder", dir);
    if (n == 0)
        return rnc_fail(err, RNC_E_FORMAT,
                        "%s: neither CIFAR-10 files nor class folders (expected DIR/<class>/<image>.JPEG, "
                        "or train/ and val/ holding class folders; see docs/data.md)", path);
    if (n == 1)
        return rnc_fail(err, RNC_E_FORMAT, "%s has one class folder: a classifier needs at least 2", dir);
    *classes = n;
    snprintf(what, what_size, "the class folders of %s", dir);
    return RNC_OK;
}
