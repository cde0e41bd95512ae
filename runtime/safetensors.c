/* safetensors.c - the safetensors format: parse (header through jansson),
 * check, convert, write.  Depends on libc and jansson only, so the compiler
 * (rnc --embed-weights) links the same code as the runtime.  Layout and
 * checks: include/rnc/safetensors.h, docs/weights.md. */
#define _POSIX_C_SOURCE 200809L   /* fsync, fileno */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rnc/safetensors.h"

static int st_fail(rnc_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int st_fail(rnc_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static const struct {
    const char *name;
    size_t size;
} DTYPES[RNC_ST_DTYPES] = {
    [RNC_ST_BOOL] = {"BOOL", 1}, [RNC_ST_U8] = {"U8", 1},     [RNC_ST_I8] = {"I8", 1},
    [RNC_ST_F8_E4M3] = {"F8_E4M3", 1}, [RNC_ST_F8_E5M2] = {"F8_E5M2", 1},
    [RNC_ST_I16] = {"I16", 2},   [RNC_ST_U16] = {"U16", 2},   [RNC_ST_F16] = {"F16", 2},
    [RNC_ST_BF16] = {"BF16", 2}, [RNC_ST_I32] = {"I32", 4},   [RNC_ST_U32] = {"U32", 4},
    [RNC_ST_F32] = {"F32", 4},   [RNC_ST_F64] = {"F64", 8},   [RNC_ST_I64] = {"I64", 8},
    [RNC_ST_U64] = {"U64", 8},
};

const char *rnc_st_dtype_name(rnc_st_dtype d) { return d < RNC_ST_DTYPES ? DTYPES[d].name : "?"; }
size_t rnc_st_dtype_size(rnc_st_dtype d) { return d < RNC_ST_DTYPES ? DTYPES[d].size : 0; }

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

void rnc_st_free(rnc_st_file *f) {
    for (int i = 0; i < f->n; i++)
        free(f->t[i].name);
    free(f->t);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_value[i]);
    }
    free(f->meta_key);
    free(f->meta_value);
    free(f->owned);
    memset(f, 0, sizeof *f);
}

/* A JSON integer that fits the range [0, max]. */
static int get_size(json_t *v, uint64_t max, uint64_t *out) {
    if (!json_is_integer(v))
        return 0;
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max)
        return 0;
    *out = (uint64_t)x;
    return 1;
}

/* By (BEGIN, END): empty tensors sort before a tensor that starts where they are. */
static int cmp_begin(const void *a, const void *b) {
    const rnc_st_tensor *x = *(const rnc_st_tensor *const *)a, *y = *(const rnc_st_tensor *const *)b;
    if (x->data != y->data)
        return x->data > y->data ? 1 : -1;
    return (x->bytes > y->bytes) - (x->bytes < y->bytes);
}

/* One "NAME": {...} entry of the header into t. */
static int parse_entry(const char *file, const char *key, json_t *v, const uint8_t *base, size_t data_bytes,
                       rnc_st_tensor *t, rnc_err *err) {
    if (!json_is_object(v))
        return st_fail(err, RNC_E_FORMAT, "%s: tensor '%s': its entry is not a JSON object", file, key);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return st_fail(err, RNC_E_FORMAT, "%s: tensor '%s': unknown field '%s' (expected dtype, shape, data_offsets)",
                           file, key, k);
    }
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!dt || !sh || !off)
        return st_fail(err, RNC_E_FORMAT, "%s: tensor '%s': missing '%s'", file, key,
                       !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!json_is_string(dt))
        return st_fail(err, RNC_E_FORMAT, "%s: tensor '%s': dtype is not a string", file, key);
    int d = 0;
    while (d < RNC_ST_DTYPES && strcmp(DTYPES[d].name, json_string_value(dt)))
        d++;
    if (d == RNC_ST_DTYPES)
        return st_fail(err, RNC_E_FORMAT, "%s: tensor '%s': unknown dtype '%.40s'", file, key,
                       json_string_value(dt));
    t->dtype = (rnc_st_dtype)d;
    if (!json_is_array(sh) || json_array_size(sh) > RNC_ST_MAX_RANK)
        return st_fail(err, RNC_E_FORMAT, "%s: tensor '%s': shape is not an array of at most %d sizes", file, key,
                       RNC_ST_MAX_RANK);
    t->rank = (int)json_array_size(sh);
    /* the element count may not exceed the data (so it cannot overflow) */
    uint64_t count = 1, cap = data_bytes / DTYPES[d].size;
    int empty = 0;
    for (int i = 0; i < t->rank; i++) {
        uint64_t s;
        if (!get_size(json_array_get(sh, (size_t)i), INT64_MAX, &s))
            return st_fail(err, RNC_E_FORMAT, "%s: tensor '%s': shape[%d] is not a size (a whole number >= 0)",
                           file, key, i);
        t->shape[i] = (int64_t)s;
        if (s == 0)
            empty = 1;
        else if (!empty && count > cap / s)
            return st_fail(err, RNC_E_FORMAT, "%s: tensor '%s': its shape holds more than the file's %zu data bytes",
                           file, key, data_bytes);
        else if (!empty)
            count *= s;
    }
    t->count = empty ? 0 : (size_t)count;
    uint64_t b, e;
    if (!json_is_array(off) || json_array_size(off) != 2 || !get_size(json_array_get(off, 0), data_bytes, &b) ||
        !get_size(json_array_get(off, 1), data_bytes, &e) || e < b)
        return st_fail(err, RNC_E_FORMAT,
                       "%s: tensor '%s': data_offsets is not [BEGIN, END] with 0 <= BEGIN <= END <= %zu (the data's size)",
                       file, key, data_bytes);
    t->bytes = (size_t)(e - b);
    if (t->bytes != t->count * DTYPES[d].size)
        return st_fail(err, RNC_E_FORMAT, "%s: tensor '%s': %zu bytes at data_offsets, its shape and dtype %s need %zu",
                       file, key, t->bytes, DTYPES[d].name, t->count * DTYPES[d].size);
    t->data = base + b;
    return RNC_OK;
}

int rnc_st_parse(rnc_st_file *f, const uint8_t *buf, size_t size, const char *file, rnc_err *err) {
    memset(f, 0, sizeof *f);
    if (!host_is_little_endian())
        return st_fail(err, RNC_E_ARG, "%s: safetensors data is little-endian; this machine is not", file);
    if (size < 8)
        return st_fail(err, RNC_E_FORMAT, "%s: not a safetensors file (%zu bytes, shorter than its 8-byte header length)",
                       file, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | buf[i];
    if (n < 2 || n > RNC_ST_MAX_HEADER || n > size - 8)
        return st_fail(err, RNC_E_FORMAT,
                       "%s: not a safetensors file, or truncated: its header length %llu does not fit its %zu bytes "
                       "(nor the limit of %d MiB)",
                       file, (unsigned long long)n, size, RNC_ST_MAX_HEADER >> 20);
    const char *text = (const char *)buf + 8;
    if (text[0] != '{')
        return st_fail(err, RNC_E_FORMAT, "%s: not a safetensors file (its header does not start with '{')", file);
    json_error_t je;
    json_t *root = json_loadb(text, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return st_fail(err, RNC_E_FORMAT, "%s: the safetensors header is not valid JSON: %s (header byte %d)", file,
                       je.text, je.position);
    int rc = RNC_OK;
    if (!json_is_object(root)) {
        rc = st_fail(err, RNC_E_FORMAT, "%s: the safetensors header is not a JSON object", file);
        goto done;
    }
    f->base = buf + 8 + n;
    f->data_bytes = size - 8 - (size_t)n;
    size_t entries = json_object_size(root);
    f->t = calloc(entries ? entries : 1, sizeof *f->t);
    if (!f->t) {
        rc = st_fail(err, RNC_E_NOMEM, "%s: out of memory for %zu tensors", file, entries);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) {
                rc = st_fail(err, RNC_E_FORMAT, "%s: __metadata__ is not a JSON object", file);
                goto done;
            }
            size_t m = json_object_size(v);
            f->meta_key = calloc(m ? m : 1, sizeof *f->meta_key);
            f->meta_value = calloc(m ? m : 1, sizeof *f->meta_value);
            if (!f->meta_key || !f->meta_value) {
                rc = st_fail(err, RNC_E_NOMEM, "%s: out of memory", file);
                goto done;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) {
                    rc = st_fail(err, RNC_E_FORMAT, "%s: __metadata__ '%s' is not a string", file, mk);
                    goto done;
                }
                f->meta_key[f->n_meta] = strdup(mk);
                f->meta_value[f->n_meta] = strdup(json_string_value(mv));
                if (!f->meta_key[f->n_meta++] || !f->meta_value[f->n_meta - 1]) {
                    rc = st_fail(err, RNC_E_NOMEM, "%s: out of memory", file);
                    goto done;
                }
            }
            continue;
        }
        rnc_st_tensor *t = &f->t[f->n];
        if ((rc = parse_entry(file, key, v, f->base, f->data_bytes, t, err)))
            goto done;
        if (!(t->name = strdup(key))) {
            rc = st_fail(err, RNC_E_NOMEM, "%s: out of memory", file);
            goto done;
        }
        f->n++;
    }
    /* The tensors tile the data: in offset order each begins where the last ended. */
    rnc_st_tensor **order = malloc(sizeof *order * (size_t)(f->n ? f->n : 1));
    if (!order) {
        rc = st_fail(err, RNC_E_NOMEM, "%s: out of memory", file);
        goto done;
    }
    for (int i = 0; i < f->n; i++)
        order[i] = &f->t[i];
    qsort(order, (size_t)f->n, sizeof *order, cmp_begin);
    size_t at = 0;
    for (int i = 0; i < f->n && rc == RNC_OK; i++) {
        size_t b = (size_t)(order[i]->data - f->base);
        if (b != at)
            rc = st_fail(err, RNC_E_FORMAT, "%s: tensor '%s' starts at data byte %zu, %s", file, order[i]->name, b,
                         b < at ? "inside the tensor before it (overlap)" : "after a gap in the data");
        at = b + order[i]->bytes;
    }
    free(order);
    if (rc == RNC_OK && at != f->data_bytes)
        rc = st_fail(err, RNC_E_FORMAT, "%s: the tensors end at data byte %zu, the file has %zu (trailing bytes?)",
                     file, at, f->data_bytes);
done:
    json_decref(root);
    if (rc != RNC_OK)
        rnc_st_free(f);
    return rc;
}

int rnc_st_read(rnc_st_file *f, const char *path, rnc_err *err) {
    memset(f, 0, sizeof *f);
    FILE *in = fopen(path, "rb");
    if (!in)
        return st_fail(err, RNC_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(in);
        return st_fail(err, RNC_E_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        fclose(in);
        return st_fail(err, RNC_E_NOMEM, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = fread(buf, 1, size, in);
    fclose(in);
    if (got != size) {
        free(buf);
        return st_fail(err, RNC_E_IO, "%s: read %zu of %zu bytes", path, got, size);
    }
    int rc = rnc_st_parse(f, buf, size, path, err);
    if (rc) {
        free(buf);
        return rc;
    }
    f->owned = buf;
    return RNC_OK;
}

const rnc_st_tensor *rnc_st_find(const rnc_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}

const char *rnc_st_meta(const rnc_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_key[i], key))
            return f->meta_value[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;   /* inf, NaN */
    } else if (exp == 0) {
        if (!man) {
            bits = sign;
        } else {   /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 1024));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 1023) << 13;
        }
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int rnc_st_to_float(const rnc_st_tensor *t, float *out, rnc_err *err) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case RNC_ST_F32:
        memcpy(out, p, t->count * 4);
        return RNC_OK;
    case RNC_ST_F64:
        for (size_t i = 0; i < t->count; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        return RNC_OK;
    case RNC_ST_F16:
    case RNC_ST_BF16:
        for (size_t i = 0; i < t->count; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            if (t->dtype == RNC_ST_F16) {
                out[i] = half_to_float(h);
            } else {
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&out[i], &bits, 4);
            }
        }
        return RNC_OK;
    default:
        return st_fail(err, RNC_E_FORMAT, "tensor '%s' has dtype %s; weights must be F32, F64, F16 or BF16", t->name,
                       DTYPES[t->dtype].name);
    }
}

/* ---- writing ------------------------------------------------------------ */

static size_t out_count(const rnc_st_out *t) {
    size_t n = 1;
    for (int d = 0; d < t->rank; d++)
        n *= (size_t)t->shape[d];
    return n;
}

int rnc_st_write(const char *path, const rnc_st_out *t, int n, const char *const *meta_kv, int n_meta,
                 rnc_err *err) {
    if (!host_is_little_endian())
        return st_fail(err, RNC_E_ARG, "%s: safetensors data is little-endian; this machine is not", path);
    json_t *root = json_object();
    if (!root)
        return st_fail(err, RNC_E_NOMEM, "%s: out of memory", path);
    if (n_meta > 0) {
        json_t *meta = json_object();
        for (int i = 0; meta && i < n_meta; i++)
            json_object_set_new(meta, meta_kv[2 * i], json_string(meta_kv[2 * i + 1]));
        if (!meta || json_object_set_new(root, "__metadata__", meta)) {
            json_decref(root);
            return st_fail(err, RNC_E_NOMEM, "%s: out of memory", path);
        }
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].rank < 0 || t[i].rank > RNC_ST_MAX_RANK) {
            json_decref(root);
            return st_fail(err, RNC_E_ARG, "%s: tensor '%s': bad rank %d", path, t[i].name, t[i].rank);
        }
        json_t *e = json_object(), *shape = json_array(), *off = json_array();
        for (int d = 0; d < t[i].rank; d++)
            json_array_append_new(shape, json_integer(t[i].shape[d]));
        size_t bytes = out_count(&t[i]) * 4;
        json_array_append_new(off, json_integer((json_int_t)at));
        json_array_append_new(off, json_integer((json_int_t)(at + bytes)));
        at += bytes;
        if (!e || json_object_set_new(e, "dtype", json_string("F32")) || json_object_set_new(e, "shape", shape) ||
            json_object_set_new(e, "data_offsets", off)) {
            json_decref(root);
            return st_fail(err, RNC_E_NOMEM, "%s: out of memory", path);
        }
        if (json_object_get(root, t[i].name)) {
            json_decref(e);
            json_decref(root);
            return st_fail(err, RNC_E_ARG, "%s: tensor '%s' given twice", path, t[i].name);
        }
        json_object_set_new(root, t[i].name, e);
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text)
        return st_fail(err, RNC_E_NOMEM, "%s: out of memory", path);
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;   /* the data starts 8-byte aligned */

    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        free(text);
        return st_fail(err, RNC_E_ARG, "%s: path too long", path);
    }
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        int e = errno;
        free(text);
        return st_fail(err, RNC_E_IO, "%s: cannot create: %s", tmp, strerror(e));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, out) == 8 && fwrite(text, 1, len, out) == len;
    for (size_t i = len; ok && i < padded; i++)
        ok = fputc(' ', out) != EOF;
    free(text);
    for (int i = 0; ok && i < n; i++) {
        size_t c = out_count(&t[i]);
        ok = fwrite(t[i].data, 4, c, out) == c;
    }
    int e = 0;
    if (!ok || fflush(out) != 0 || fsync(fileno(out)) != 0)
        e = errno ? errno : EIO;
    if (fclose(out) != 0 && !e)
        e = errno;
    if (e) {
        unlink(tmp);
        return st_fail(err, RNC_E_IO, "%s: write failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return st_fail(err, RNC_E_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(e));
    }
    return RNC_OK;
}
