/* checkpoint.c - saving and restoring a training run.
 *
 * Saving is atomic: the file is written under a temporary name, flushed to
 * disk and renamed over the target, so a crash mid-save leaves the previous
 * checkpoint intact. Loading trusts nothing: magic, version, byte order,
 * size, an XXH3-64 checksum over the whole payload, then the network's
 * identity are all checked before a single float reaches the net.
 */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "rnc/runtime.h"

static const char MAGIC[8] = "RNCCKPT";  /* with its NUL: 8 bytes */
#define BYTE_ORDER_TAG 0x01020304u
#define MAX_NAME 4096

/* ---- writing: every byte goes to the file and into the running hash ---- */

typedef struct {
    FILE *f;
    XXH3_state_t *hash;
    int failed;
} writer;

static void put(writer *w, const void *p, size_t n) {
    if (n == 0 || w->failed)
        return;
    if (fwrite(p, 1, n, w->f) != n)
        w->failed = 1;
    XXH3_64bits_update(w->hash, p, n);
}

static void put_u32(writer *w, uint32_t v) { put(w, &v, sizeof v); }
static void put_u64(writer *w, uint64_t v) { put(w, &v, sizeof v); }

/* Makes the rename itself durable; best effort, as not every fs supports it. */
static void sync_parent_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int rnc_checkpoint_save(const char *path, const rnc_net *net, const rnc_sgd *sgd,
                        const rnc_ckpt_meta *meta, rnc_err *err) {
    const rnc_model *m = net->model;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return rnc_fail(err, RNC_E_ARG, "%s: path too long", path);
    writer w = {fopen(tmp, "wb"), XXH3_createState(), 0};
    if (!w.f) {
        int e = errno;
        XXH3_freeState(w.hash);
        return rnc_fail(err, RNC_E_IO, "%s: cannot create: %s", tmp, strerror(e));
    }
    if (!w.hash) {
        fclose(w.f);
        unlink(tmp);
        return rnc_fail(err, RNC_E_NOMEM, "%s: out of memory", path);
    }
    XXH3_64bits_reset(w.hash);

    size_t name_len = strlen(m->name);
    size_t n_velocity = sgd ? sgd->n : 0;
    put(&w, MAGIC, sizeof MAGIC);
    put_u32(&w, RNC_CKPT_VERSION);
    put_u32(&w, BYTE_ORDER_TAG);
    put_u32(&w, (uint32_t)name_len);
    put(&w, m->name, name_len);
    put_u64(&w, m->param_count);
    put_u64(&w, m->state_count);
    put_u64(&w, n_velocity);
    put_u64(&w, (uint64_t)meta->epoch);
    put_u64(&w, (uint64_t)meta->step);
    put_u64(&w, meta->seed);
    put_u64(&w, (uint64_t)meta->iters_per_epoch);
    put(&w, net->params, m->param_count * sizeof(float));
    put(&w, net->state, m->state_count * sizeof(float));
    if (sgd)
        put(&w, sgd->velocity, n_velocity * sizeof(float));
    uint64_t sum = XXH3_64bits_digest(w.hash);
    if (!w.failed && fwrite(&sum, sizeof sum, 1, w.f) != 1)
        w.failed = 1;
    XXH3_freeState(w.hash);

    int e = 0;
    if (w.failed || fflush(w.f) != 0 || fsync(fileno(w.f)) != 0)
        e = errno ? errno : EIO;
    if (fclose(w.f) != 0 && !e)
        e = errno;
    if (e) {
        unlink(tmp);
        return rnc_fail(err, RNC_E_IO, "%s: write failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return rnc_fail(err, RNC_E_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(e));
    }
    sync_parent_dir(path);
    return RNC_OK;
}

/* ---- reading: a cursor over the file's bytes that never runs past the end */

typedef struct {
    const uint8_t *p;
    size_t left;
} reader;

static int get(reader *r, void *out, size_t n) {
    if (n > r->left)
        return 0;
    memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
    return 1;
}

static int get_u32(reader *r, uint32_t *v) { return get(r, v, sizeof *v); }
static int get_u64(reader *r, uint64_t *v) { return get(r, v, sizeof *v); }

typedef struct {
    char name[MAX_NAME + 1];
    uint64_t param_count, state_count, velocity_count;
    rnc_ckpt_meta meta;
    const uint8_t *data;  /* the float arrays */
} header;

static int parse_header(const char *path, const uint8_t *buf, size_t size, header *h,
                        rnc_err *err) {
    reader r = {buf, size};
    char magic[8];
    uint32_t version, tag, name_len;
    if (!get(&r, magic, sizeof magic) || memcmp(magic, MAGIC, sizeof MAGIC) != 0)
        return rnc_fail(err, RNC_E_FORMAT, "%s: not an rnc checkpoint (bad magic)", path);
    if (!get_u32(&r, &version) || !get_u32(&r, &tag))
        return rnc_fail(err, RNC_E_FORMAT, "%s: truncated checkpoint header (%zu bytes)", path, size);
    if (version != RNC_CKPT_VERSION)
        return rnc_fail(err, RNC_E_FORMAT, "%s: checkpoint format version %u, this runtime reads %d",
                        path, version, RNC_CKPT_VERSION);
    if (tag != BYTE_ORDER_TAG)
        return rnc_fail(err, RNC_E_FORMAT, "%s: checkpoint was written with another byte order", path);
    if (!get_u32(&r, &name_len) || name_len > MAX_NAME || !get(&r, h->name, name_len))
        return rnc_fail(err, RNC_E_FORMAT, "%s: truncated or corrupted checkpoint header", path);
    h->name[name_len] = 0;
    uint64_t epoch, step, ipe;
    if (!get_u64(&r, &h->param_count) || !get_u64(&r, &h->state_count) ||
        !get_u64(&r, &h->velocity_count) || !get_u64(&r, &epoch) || !get_u64(&r, &step) ||
        !get_u64(&r, &h->meta.seed) || !get_u64(&r, &ipe))
        return rnc_fail(err, RNC_E_FORMAT, "%s: truncated checkpoint header (%zu bytes)", path, size);
    h->meta.epoch = (int64_t)epoch;
    h->meta.step = (int64_t)step;
    h->meta.iters_per_epoch = (int64_t)ipe;
    h->data = r.p;

    /* The header fixes the file's size; compare in floats so that corrupted
     * counts cannot overflow the arithmetic. */
    size_t floats_in_file = (r.left - (r.left >= 8 ? 8 : r.left)) / sizeof(float);
    int fits = h->param_count <= floats_in_file && h->state_count <= floats_in_file &&
               h->velocity_count <= floats_in_file;
    size_t expected = 0;
    if (fits)
        expected = (size_t)(r.p - buf) +
                   (h->param_count + h->state_count + h->velocity_count) * sizeof(float) + 8;
    if (!fits || expected > size)
        return rnc_fail(err, RNC_E_FORMAT,
                        "%s: checkpoint is truncated or corrupted (%zu bytes, header describes more)",
                        path, size);
    if (expected < size)
        return rnc_fail(err, RNC_E_FORMAT,
                        "%s: checkpoint has %zu bytes, its header describes %zu (corrupted?)", path,
                        size, expected);
    return RNC_OK;
}


int rnc_checkpoint_load(const char *path, rnc_net *net, rnc_sgd *sgd, rnc_ckpt_meta *meta,
                        rnc_err *err) {
    const rnc_model *m = net->model;
    uint8_t *buf = NULL;
    size_t size = 0;
    int rc = rnc_read_file(path, &buf, &size, err);
    if (rc)
        return rc;
    header h;
    rc = parse_header(path, buf, size, &h, err);
    if (rc == RNC_OK) {
        uint64_t stored;
        memcpy(&stored, buf + size - 8, sizeof stored);
        if (XXH3_64bits(buf, size - 8) != stored)
            rc = rnc_fail(err, RNC_E_CHECKSUM,
                          "%s: checksum mismatch: the checkpoint is corrupted", path);
    }
    if (rc == RNC_OK && (strcmp(h.name, m->name) != 0 || h.param_count != m->param_count ||
                         h.state_count != m->state_count))
        rc = rnc_fail(err, RNC_E_MISMATCH,
                      "%s: checkpoint is for network '%s' (%llu parameters, %llu state), "
                      "not for '%s' (%zu parameters, %zu state)",
                      path, h.name, (unsigned long long)h.param_count,
                      (unsigned long long)h.state_count, m->name, m->param_count, m->state_count);
    if (rc == RNC_OK && sgd && h.velocity_count != sgd->n)
        rc = rnc_fail(err, RNC_E_MISMATCH,
                      "%s: checkpoint holds weights only (no momentum buffers); cannot resume "
                      "training from it", path);
    if (rc == RNC_OK) {
        const uint8_t *p = h.data;
        memcpy(net->params, p, m->param_count * sizeof(float));
        p += m->param_count * sizeof(float);
        memcpy(net->state, p, m->state_count * sizeof(float));
        p += m->state_count * sizeof(float);
        if (sgd)
            memcpy(sgd->velocity, p, sgd->n * sizeof(float));
        if (meta)
            *meta = h.meta;
    }
    free(buf);
    return rc;
}
