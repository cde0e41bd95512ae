/* checkpoint.c - saving and restoring a training run.
 *
 * Saving is atomic: the file is written under a temporary name, flushed to
 * disk and renamed over the target, so a crash mid-save leaves the previous
 * checkpoint intact. Loading trusts nothing: magic, version, byte order,
 * size, an XXH3-64 checksum over the whole payload, then the network's
 * identity are all checked before a single float reaches the net.
 *
 * Version 2 adds the run state (rnc_run_state) as text lines after the
 * floats, so that a run can be resumed at any step and a resume that would
 * not replay the run (another recipe, data set or code) is caught.
 */
#define _GNU_SOURCE  /* fallocate-free posix_fallocate, strtoull, dirent under -std=c11 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include "rnc/runtime.h"

static const char MAGIC[8] = "RNCCKPT";  /* with its NUL: 8 bytes */
#define BYTE_ORDER_TAG 0x01020304u
#define MAX_NAME 4096
#define MAX_RUN 65536   /* bytes of run state text */

/* ---- the run state as text ----------------------------------------------- */

static void put_steps(FILE *f, const rnc_recipe *r) {
    fprintf(f, "lr_steps ");
    for (int i = 0; i < r->n_lr_steps && i < RNC_MAX_LR_STEPS; i++)
        fprintf(f, "%s%d", i ? "," : "", r->lr_steps[i]);
    fprintf(f, "%s\n", r->n_lr_steps ? "" : "none");
}

/* Reals in C99 hex (%a): read back bit for bit. */
static char *format_run(const rnc_run_state *s, size_t *len) {
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    const rnc_recipe *r = &s->recipe;
    fprintf(f, "code %016llx\n", (unsigned long long)s->code_id);
    fprintf(f, "schedule %s\nrnc %s\n", s->schedule, s->rnc_version);
    fprintf(f, "batch %d\nthreads %d\n", s->batch, s->threads);
    fprintf(f, "lr %a\nmomentum %a\nweight_decay %a\nlr_decay %a\n", r->lr, r->momentum, r->weight_decay,
            r->lr_decay);
    put_steps(f, r);
    fprintf(f, "lr_steps_unit %s\n", r->lr_steps_in_iterations ? "iterations" : "epochs");
    fprintf(f, "warmup %d\nwarmup_lr %a\n", r->warmup_iterations, r->warmup_lr);
    fprintf(f, "total %lld\ntrain_images %lld\n", (long long)s->total, (long long)s->train_images);
    fprintf(f, "data %016llx\norder %016llx\nrng %016llx\n", (unsigned long long)s->data_id,
            (unsigned long long)s->order_id, (unsigned long long)s->rng_check);
    fprintf(f, "epoch_loss_sum %a\nepoch_correct %lld\nepoch_seen %lld\n", s->epoch_loss_sum,
            (long long)s->epoch_correct, (long long)s->epoch_seen);
    fprintf(f, "row %s\n", s->row);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int whole_i64(const char *v, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo)
        return 0;
    *out = x;
    return 1;
}

static int whole_int(const char *v, int lo, int hi, int *out) {
    int64_t x;
    if (!whole_i64(v, lo, &x) || x > hi)
        return 0;
    *out = (int)x;
    return 1;
}

static int hex_u64(const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    if (strlen(v) != 16)
        return 0;
    unsigned long long x = strtoull(v, &end, 16);
    if (errno || *end)
        return 0;
    *out = x;
    return 1;
}

static int real(const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || x != x)
        return 0;
    *out = x;
    return 1;
}

static int parse_steps(const char *v, rnc_recipe *r) {
    r->n_lr_steps = 0;
    if (!strcmp(v, "none"))
        return 1;
    while (*v) {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || x < 0 || x > INT32_MAX || r->n_lr_steps == RNC_MAX_LR_STEPS)
            return 0;
        r->lr_steps[r->n_lr_steps++] = (int)x;
        if (*end == ',' && end[1])
            end++;
        else if (*end)
            return 0;
        v = end;
    }
    return r->n_lr_steps > 0;
}

static int copy_text(const char *v, char *out, size_t size) {
    size_t n = strlen(v);
    if (n >= size)
        return 0;
    memcpy(out, v, n + 1);
    return 1;
}

/* One "key value" line; unknown keys are skipped (a later version may add some). */
static int parse_run_line(char *line, rnc_run_state *s, unsigned *seen) {
    char *v = strchr(line, ' ');
    if (!v)
        return 0;
    *v++ = 0;
    rnc_recipe *r = &s->recipe;
    static const char *const keys[] = {"code", "schedule", "rnc", "batch", "threads", "lr", "momentum",
                                       "weight_decay", "lr_decay", "lr_steps", "lr_steps_unit", "warmup",
                                       "warmup_lr", "total", "train_images", "data", "order", "rng",
                                       "epoch_loss_sum", "epoch_correct", "epoch_seen", "row"};
    int k = 0, n = (int)(sizeof keys / sizeof keys[0]);
    while (k < n && strcmp(line, keys[k]))
        k++;
    if (k == n)
        return 1;
    *seen |= 1u << k;
    switch (k) {
    case 0: return hex_u64(v, &s->code_id);
    case 1: return copy_text(v, s->schedule, sizeof s->schedule);
    case 2: return copy_text(v, s->rnc_version, sizeof s->rnc_version);
    case 3: return whole_int(v, 1, 1 << 30, &s->batch);
    case 4: return whole_int(v, 1, 1 << 20, &s->threads);
    case 5: return real(v, &r->lr);
    case 6: return real(v, &r->momentum);
    case 7: return real(v, &r->weight_decay);
    case 8: return real(v, &r->lr_decay);
    case 9: return parse_steps(v, r);
    case 10:
        r->lr_steps_in_iterations = !strcmp(v, "iterations");
        return r->lr_steps_in_iterations || !strcmp(v, "epochs");
    case 11: return whole_int(v, 0, INT32_MAX, &r->warmup_iterations);
    case 12: return real(v, &r->warmup_lr);
    case 13: return whole_i64(v, 0, &s->total);
    case 14: return whole_i64(v, 0, &s->train_images);
    case 15: return hex_u64(v, &s->data_id);
    case 16: return hex_u64(v, &s->order_id);
    case 17: return hex_u64(v, &s->rng_check);
    case 18: return real(v, &s->epoch_loss_sum);
    case 19: return whole_i64(v, 0, &s->epoch_correct);
    case 20: return whole_i64(v, 0, &s->epoch_seen);
    default: return copy_text(v, s->row, sizeof s->row);
    }
}

static int parse_run(const uint8_t *p, size_t len, rnc_run_state *s) {
    memset(s, 0, sizeof *s);
    if (len == 0 || p[len - 1] != '\n' || memchr(p, 0, len))
        return 0;
    char *text = malloc(len + 1);
    if (!text)
        return 0;
    memcpy(text, p, len);
    text[len] = 0;
    unsigned seen = 0;
    int ok = 1;
    for (char *line = text, *nl; ok && (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = 0;
        ok = parse_run_line(line, s, &seen);
    }
    free(text);
    const unsigned all = (1u << 22) - 1;
    s->present = ok && (seen & all) == all;
    return s->present;
}

/* ---- writing: every byte goes to the file and into the running hash ---- */

typedef struct {
    FILE *f;
    XXH3_state_t *hash;
    int failed;   /* the errno of the first failed write */
} writer;

static void put(writer *w, const void *p, size_t n) {
    if (n == 0 || w->failed)
        return;
    errno = 0;
    if (fwrite(p, 1, n, w->f) != n)
        w->failed = errno ? errno : EIO;
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

static int temp_name(const char *path, char *tmp, size_t size, rnc_err *err) {
    if ((size_t)snprintf(tmp, size, "%s.tmp.%ld", path, (long)getpid()) >= size)
        return rnc_fail(err, RNC_E_ARG, "%s: path too long", path);
    return RNC_OK;
}

int rnc_checkpoint_save(const char *path, const rnc_net *net, const rnc_sgd *sgd,
                        const rnc_ckpt_meta *meta, rnc_err *err) {
    const rnc_model *m = net->model;
    char tmp[4200];
    int rc = temp_name(path, tmp, sizeof tmp, err);
    if (rc)
        return rc;
    size_t run_len = 0;
    char *run = meta->run.present ? format_run(&meta->run, &run_len) : NULL;
    if (meta->run.present && (!run || run_len > MAX_RUN)) {
        free(run);
        return rnc_fail(err, RNC_E_NOMEM, "%s: cannot format the run state", path);
    }
    rnc_trace('C');
    writer w = {fopen(tmp, "wb"), XXH3_createState(), 0};
    if (!w.f) {
        int e = errno;
        XXH3_freeState(w.hash);
        free(run);
        return rnc_fail(err, RNC_E_IO, "%s: cannot create: %s", tmp, strerror(e));
    }
    if (!w.hash) {
        fclose(w.f);
        unlink(tmp);
        free(run);
        return rnc_fail(err, RNC_E_NOMEM, "%s: out of memory", path);
    }
    XXH3_64bits_reset(w.hash);

    size_t name_len = strlen(m->name);
    size_t n_velocity = sgd ? sgd->n : 0;
    put(&w, MAGIC, sizeof MAGIC);
    put_u32(&w, run ? RNC_CKPT_VERSION : 1);
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
    if (run) {
        put_u32(&w, (uint32_t)run_len);
        put(&w, run, run_len);
    }
    free(run);
    uint64_t sum = XXH3_64bits_digest(w.hash);
    put(&w, &sum, sizeof sum);
    XXH3_freeState(w.hash);

    int e = w.failed;
    errno = 0;
    if (!e && (fflush(w.f) != 0 || fsync(fileno(w.f)) != 0))
        e = errno ? errno : EIO;
    if (fclose(w.f) != 0 && !e)
        e = errno ? errno : EIO;
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
    rnc_trace('c');
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

struct rnc_ckpt {
    uint8_t *buf;
    size_t size;
    char name[MAX_NAME + 1];
    uint64_t param_count, state_count, velocity_count;
    rnc_ckpt_meta meta;
    const uint8_t *data;  /* the float arrays */
    const uint8_t *run_text;   /* version 2: the run state */
    uint32_t run_len;
};

static int parse_header(const char *path, const uint8_t *buf, size_t size, rnc_ckpt *h,
                        rnc_err *err) {
    reader r = {buf, size};
    char magic[8];
    uint32_t version, tag, name_len;
    if (!get(&r, magic, sizeof magic) || memcmp(magic, MAGIC, sizeof MAGIC) != 0)
        return rnc_fail(err, RNC_E_FORMAT, "%s: not an rnc checkpoint (bad magic)", path);
    if (!get_u32(&r, &version) || !get_u32(&r, &tag))
        return rnc_fail(err, RNC_E_FORMAT, "%s: truncated checkpoint header (%zu bytes)", path, size);
    if (version != 1 && version != RNC_CKPT_VERSION)
        return rnc_fail(err, RNC_E_FORMAT, "%s: checkpoint format version %u, this runtime reads 1 and %d",
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
               h->velocity_count <= floats_in_file &&
               h->param_count + h->state_count + h->velocity_count <= floats_in_file;
    size_t floats_end = 0, expected = 0;
    uint32_t run_len = 0;
    if (fits) {
        floats_end = (size_t)(r.p - buf) + (h->param_count + h->state_count + h->velocity_count) * sizeof(float);
        expected = floats_end + 8;
        if (version >= 2) {
            reader rr = {buf + floats_end, size - floats_end};
            fits = get_u32(&rr, &run_len) && run_len <= MAX_RUN;
            expected += 4 + (size_t)run_len;
        }
    }
    if (!fits || expected > size)
        return rnc_fail(err, RNC_E_FORMAT,
                        "%s: checkpoint is truncated or corrupted (%zu bytes, header describes more)",
                        path, size);
    if (expected < size)
        return rnc_fail(err, RNC_E_FORMAT,
                        "%s: checkpoint has %zu bytes, its header describes %zu (corrupted?)", path,
                        size, expected);
    if (version >= 2) {   /* parsed once the checksum has been checked */
        h->run_text = buf + floats_end + 4;
        h->run_len = run_len;
    }
    if (h->velocity_count && h->velocity_count != h->param_count)
        return rnc_fail(err, RNC_E_FORMAT, "%s: checkpoint has %llu momentum values for %llu parameters",
                        path, (unsigned long long)h->velocity_count, (unsigned long long)h->param_count);
    return RNC_OK;
}

void rnc_ckpt_close(rnc_ckpt *c) {
    if (!c)
        return;
    free(c->buf);
    free(c);
}

int rnc_ckpt_parse(const char *name, uint8_t *buf, size_t size, const rnc_model *m, rnc_ckpt **out,
                   rnc_err *err) {
    *out = NULL;
    rnc_ckpt *c = calloc(1, sizeof *c);
    if (!c) {
        free(buf);
        return rnc_fail(err, RNC_E_NOMEM, "%s: out of memory", name);
    }
    c->buf = buf;
    c->size = size;
    int rc = parse_header(name, buf, size, c, err);
    if (rc == RNC_OK) {
        uint64_t stored;
        memcpy(&stored, buf + size - 8, sizeof stored);
        if (XXH3_64bits(buf, size - 8) != stored)
            rc = rnc_fail(err, RNC_E_CHECKSUM, "%s: checksum mismatch: the checkpoint is corrupted", name);
    }
    if (rc == RNC_OK && c->run_text && !parse_run(c->run_text, c->run_len, &c->meta.run))
        rc = rnc_fail(err, RNC_E_FORMAT, "%s: checkpoint's run state is corrupted", name);
    if (rc == RNC_OK && (strcmp(c->name, m->name) != 0 || c->param_count != m->param_count ||
                         c->state_count != m->state_count))
        rc = rnc_fail(err, RNC_E_MISMATCH,
                      "%s: checkpoint is for network '%s' (%llu parameters, %llu state), "
                      "not for '%s' (%zu parameters, %zu state)",
                      name, c->name, (unsigned long long)c->param_count,
                      (unsigned long long)c->state_count, m->name, m->param_count, m->state_count);
    if (rc) {
        rnc_ckpt_close(c);
        return rc;
    }
    *out = c;
    return RNC_OK;
}

/* A file larger than any checkpoint of m: whose is it?  Only its header is read. */
static int too_large(const char *path, const rnc_model *m, rnc_err *err) {
    uint8_t head[MAX_NAME + 128];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    reader r = {head, n};
    char magic[8], name[MAX_NAME + 1];
    uint32_t version, tag, name_len;
    uint64_t params, state;
    if (get(&r, magic, 8) && !memcmp(magic, MAGIC, 8) && get_u32(&r, &version) && get_u32(&r, &tag) &&
        tag == BYTE_ORDER_TAG && get_u32(&r, &name_len) && name_len <= MAX_NAME && get(&r, name, name_len) &&
        get_u64(&r, &params) && get_u64(&r, &state)) {
        name[name_len] = 0;
        return rnc_fail(err, RNC_E_MISMATCH,
                        "%s: checkpoint is for network '%s' (%llu parameters, %llu state), "
                        "not for '%s' (%zu parameters, %zu state)",
                        path, name, (unsigned long long)params, (unsigned long long)state, m->name, m->param_count,
                        m->state_count);
    }
    return rnc_fail(err, RNC_E_FORMAT, "%s: larger than any checkpoint of network %s (%zu bytes), and not an "
                                       "rnc checkpoint", path, m->name, rnc_checkpoint_bytes(m));
}

int rnc_ckpt_open(const char *path, const rnc_model *m, rnc_ckpt **out, rnc_err *err) {
    uint8_t *buf = NULL;
    size_t size = 0;
    *out = NULL;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > rnc_checkpoint_bytes(m))
        return too_large(path, m, err);   /* not read: it cannot be m's */
    int rc = rnc_read_file(path, &buf, &size, err);
    if (rc)
        return rc;
    return rnc_ckpt_parse(path, buf, size, m, out, err);
}

const rnc_ckpt_meta *rnc_ckpt_meta_of(const rnc_ckpt *c) { return &c->meta; }

int rnc_ckpt_has_momentum(const rnc_ckpt *c) { return c->velocity_count > 0; }

int rnc_ckpt_restore(const rnc_ckpt *c, rnc_net *net, rnc_sgd *sgd, rnc_err *err) {
    const rnc_model *m = net->model;
    if (m->param_count != c->param_count || m->state_count != c->state_count)
        return rnc_fail(err, RNC_E_MISMATCH, "checkpoint is for network '%s', not '%s'", c->name, m->name);
    if (sgd && c->velocity_count != sgd->n)
        return rnc_fail(err, RNC_E_MISMATCH,
                        "checkpoint holds weights only (no momentum buffers); cannot resume training from it");
    const uint8_t *p = c->data;
    memcpy(net->params, p, m->param_count * sizeof(float));
    p += m->param_count * sizeof(float);
    memcpy(net->state, p, m->state_count * sizeof(float));
    p += m->state_count * sizeof(float);
    if (sgd)
        memcpy(sgd->velocity, p, sgd->n * sizeof(float));
    return RNC_OK;
}

int rnc_checkpoint_load(const char *path, rnc_net *net, rnc_sgd *sgd, rnc_ckpt_meta *meta,
                        rnc_err *err) {
    rnc_ckpt *c;
    int rc = rnc_ckpt_open(path, net->model, &c, err);
    if (rc)
        return rc;
    if (sgd && c->velocity_count != sgd->n)
        rc = rnc_fail(err, RNC_E_MISMATCH,
                      "%s: checkpoint holds weights only (no momentum buffers); cannot resume "
                      "training from it", path);
    if (rc == RNC_OK)
        rc = rnc_ckpt_restore(c, net, sgd, err);
    if (rc == RNC_OK && meta)
        *meta = c->meta;
    rnc_ckpt_close(c);
    return rc;
}

/* ---- before a run: the path, the space, and what earlier runs left ------- */

size_t rnc_checkpoint_bytes(const rnc_model *m) {
    return 64 + strlen(m->name) + 4 * (2 * m->param_count + m->state_count) + 4 + MAX_RUN + 8;
}

int rnc_checkpoint_preflight(const char *path, size_t bytes, rnc_err *err) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return rnc_fail(err, RNC_E_ARG, "%s: not a regular file (a checkpoint is written beside it and "
                                        "renamed over it)", path);
    char tmp[4200];
    int rc = temp_name(path, tmp, sizeof tmp, err);
    if (rc)
        return rc;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return rnc_fail(err, RNC_E_IO, "%s: cannot write a checkpoint there: %s", path, strerror(errno));
    int e = posix_fallocate(fd, 0, (off_t)bytes);
    if (e == EINVAL || e == EOPNOTSUPP || e == ENOSYS) {   /* the file system cannot reserve: count */
        struct statvfs vs;
        e = fstatvfs(fd, &vs) == 0 && (double)vs.f_bavail * vs.f_frsize < (double)bytes ? ENOSPC : 0;
    }
    close(fd);
    unlink(tmp);
    if (e == ENOSPC || e == EDQUOT)
        return rnc_fail(err, RNC_E_IO, "%s: no room for a checkpoint of %.1f MiB there: %s", path,
                        bytes / 1048576.0, strerror(e));
    if (e)
        return rnc_fail(err, RNC_E_IO, "%s: cannot write a checkpoint there: %s", path, strerror(e));
    return RNC_OK;
}

/* Is "NAME.tmp.<pid>" a temporary of base, and of which process? */
static long temp_pid(const char *entry, const char *base) {
    size_t n = strlen(base);
    if (strncmp(entry, base, n) || strncmp(entry + n, ".tmp.", 5))
        return -1;
    const char *d = entry + n + 5;
    if (!*d || strspn(d, "0123456789") != strlen(d) || strlen(d) > 9)
        return -1;
    return strtol(d, NULL, 10);
}

int rnc_remove_stale_temps(const char *path, FILE *log) {
    char *a = strdup(path), *b = strdup(path);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    const char *dir = dirname(a), *base = basename(b);
    int removed = 0;
    DIR *dp = opendir(dir);
    for (struct dirent *e; dp && (e = readdir(dp));) {
        long pid = temp_pid(e->d_name, base);
        if (pid <= 0 || (pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH)))
            continue;   /* not a temporary, or its process still runs */
        char full[8400];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (unlink(full) == 0) {
            removed++;
            if (log)
                fprintf(log, "rnc: removed %s, left by an earlier run that stopped while writing\n", full);
        }
    }
    if (dp)
        closedir(dp);
    free(a);
    free(b);
    return removed;
}
