/*
 * rnc/infer.h - the support code of the inference files `rnc --infer` writes.
 *
 * An inference file depends on libc, libm and OpenMP only, so rnc pastes
 * this header into it (with rnc/kernels.h) instead of linking the runtime.
 * It holds what net_load needs: a reader of safetensors files (the format:
 * rnc/safetensors.h) with a small strict JSON parser for their header, the
 * element conversions (F32, F64, F16, BF16; torchvision's layouts to rnc's),
 * and batch-norm folding.
 *
 * The runtime reads the same files with jansson; this reader accepts and
 * refuses exactly what that one does (tests/test_infer_reader.c runs both
 * on the same mutated files), so a file NET export writes, or torchvision's
 * weights saved with safetensors, load here too.
 */
#ifndef RNC_INFER_H
#define RNC_INFER_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RNC_INF static __attribute__((unused))

enum { RNC_INF_MAX_RANK = 8, RNC_INF_MAX_HEADER = 100 << 20 };
enum { RNC_INF_F16 = 7, RNC_INF_BF16 = 8, RNC_INF_F32 = 11, RNC_INF_F64 = 12, RNC_INF_DTYPES = 15 };
static const char *const rnc_inf_dtype_names[RNC_INF_DTYPES] = {
    "BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"};
static const unsigned char rnc_inf_dtype_sizes[RNC_INF_DTYPES] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};

typedef struct {
    char *name;               /* decoded from the header, NUL-terminated */
    int dtype, rank;
    int64_t shape[RNC_INF_MAX_RANK];
    uint64_t count, begin, end;
} rnc_inf_tensor;

typedef struct {
    const uint8_t *data;      /* the data section */
    size_t data_bytes;
    int n, cap;
    rnc_inf_tensor *t;
} rnc_inf_file;

/* ---- JSON: exactly the subset a safetensors header is ---------------------- */

typedef struct {
    const uint8_t *p, *end;
    char *err;
    size_t errsz;
} rnc_inf_json;

static int rnc_inf_fail(rnc_inf_json *j, const char *what) {
    if (j->err && !j->err[0])
        snprintf(j->err, j->errsz, "%s (header byte %ld)", what, (long)(j->end - j->p));
    return -1;
}

static void rnc_inf_ws(rnc_inf_json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int rnc_inf_expect(rnc_inf_json *j, char c) {
    rnc_inf_ws(j);
    if (j->p >= j->end || *j->p != (uint8_t)c)
        return rnc_inf_fail(j, "the safetensors header is not valid JSON");
    j->p++;
    return 0;
}

/* One UTF-8 sequence at p (as jansson checks it): its length, 0 if invalid. */
static int rnc_inf_utf8(const uint8_t *p, const uint8_t *end) {
    uint32_t c = p[0], v;
    int n;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, v = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, v = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, v = c & 0x07;
    else
        return 0;
    if (end - p < n)
        return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    return n;
}

static int rnc_inf_hex4(const uint8_t *p, const uint8_t *end, uint32_t *v) {
    if (end - p < 4)
        return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

/* A string, decoded into a malloc'd NUL-terminated copy (*out), or only checked (out NULL). */
static int rnc_inf_string(rnc_inf_json *j, char **out) {
    if (rnc_inf_expect(j, '"'))
        return -1;
    size_t cap = 64, len = 0;
    char *s = out ? malloc(cap) : NULL;
    if (out && !s)
        return rnc_inf_fail(j, "out of memory");
    for (;;) {
        if (j->p >= j->end) {
            free(s);
            return rnc_inf_fail(j, "the safetensors header is not valid JSON");
        }
        uint8_t c = *j->p;
        uint8_t bytes[4];
        int nb = 0;
        if (c == '"') {
            j->p++;
            break;
        } else if (c < 0x20) {
            free(s);
            return rnc_inf_fail(j, "the safetensors header is not valid JSON");
        } else if (c == '\\') {
            if (j->end - j->p < 2) {
                free(s);
                return rnc_inf_fail(j, "the safetensors header is not valid JSON");
            }
            uint8_t e = j->p[1];
            j->p += 2;
            static const char simple_in[] = "\"\\/bfnrt", simple_out[] = "\"\\/\b\f\n\r\t";
            const char *at = e ? strchr(simple_in, e) : NULL;
            if (at) {
                bytes[nb++] = (uint8_t)simple_out[at - simple_in];
            } else if (e == 'u') {
                uint32_t v, lo;
                if (rnc_inf_hex4(j->p, j->end, &v)) {
                    free(s);
                    return rnc_inf_fail(j, "the safetensors header is not valid JSON");
                }
                j->p += 4;
                if (v >= 0xd800 && v <= 0xdbff) {   /* a high surrogate: its low one must follow */
                    if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || rnc_inf_hex4(j->p + 2, j->end, &lo) ||
                        lo < 0xdc00 || lo > 0xdfff) {
                        free(s);
                        return rnc_inf_fail(j, "the safetensors header is not valid JSON");
                    }
                    j->p += 6;
                    v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
                } else if ((v >= 0xdc00 && v <= 0xdfff) || v == 0) {
                    free(s);
                    return rnc_inf_fail(j, "the safetensors header is not valid JSON");
                }
                if (v < 0x80) {
                    bytes[nb++] = (uint8_t)v;
                } else if (v < 0x800) {
                    bytes[nb++] = (uint8_t)(0xc0 | v >> 6);
                    bytes[nb++] = (uint8_t)(0x80 | (v & 0x3f));
                } else if (v < 0x10000) {
                    bytes[nb++] = (uint8_t)(0xe0 | v >> 12);
                    bytes[nb++] = (uint8_t)(0x80 | ((v >> 6) & 0x3f));
                    bytes[nb++] = (uint8_t)(0x80 | (v & 0x3f));
                } else {
                    bytes[nb++] = (uint8_t)(0xf0 | v >> 18);
                    bytes[nb++] = (uint8_t)(0x80 | ((v >> 12) & 0x3f));
                    bytes[nb++] = (uint8_t)(0x80 | ((v >> 6) & 0x3f));
                    bytes[nb++] = (uint8_t)(0x80 | (v & 0x3f));
                }
            } else {
                free(s);
                return rnc_inf_fail(j, "the safetensors header is not valid JSON");
            }
        } else {
            nb = rnc_inf_utf8(j->p, j->end);
            if (!nb) {
                free(s);
                return rnc_inf_fail(j, "the safetensors header is not valid JSON (not UTF-8)");
            }
            memcpy(bytes, j->p, (size_t)nb);
            j->p += nb;
        }
        if (s) {
            if (len + (size_t)nb + 1 > cap) {
                char *t = realloc(s, cap *= 2);
                if (!t) {
                    free(s);
                    return rnc_inf_fail(j, "out of memory");
                }
                s = t;
            }
            memcpy(s + len, bytes, (size_t)nb);
            len += (size_t)nb;
        }
    }
    if (s) {
        s[len] = '\0';
        *out = s;
    }
    return 0;
}

/* A JSON number; *is_int says whether it is an integer that fits int64 (else
 * it is a real, or an integer jansson refuses as too big: -1). */
static int rnc_inf_number(rnc_inf_json *j, int64_t *v, int *is_int) {
    rnc_inf_ws(j);
    const uint8_t *p = j->p;
    int neg = 0;
    if (p < j->end && *p == '-')
        neg = 1, p++;
    if (p >= j->end || *p < '0' || *p > '9')
        return rnc_inf_fail(j, "the safetensors header is not valid JSON");
    uint64_t x = 0;
    int overflow = 0;
    if (*p == '0') {
        p++;
    } else {
        while (p < j->end && *p >= '0' && *p <= '9') {
            uint64_t d = (uint64_t)(*p++ - '0');
            if (x > (UINT64_MAX - d) / 10)
                overflow = 1;
            else
                x = x * 10 + d;
        }
    }
    int real = 0;
    if (p < j->end && *p == '.') {
        real = 1, p++;
        if (p >= j->end || *p < '0' || *p > '9')
            return rnc_inf_fail(j, "the safetensors header is not valid JSON");
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        real = 1, p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= j->end || *p < '0' || *p > '9')
            return rnc_inf_fail(j, "the safetensors header is not valid JSON");
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    j->p = p;
    if (!real && (overflow || x > (uint64_t)INT64_MAX + (uint64_t)neg))
        return rnc_inf_fail(j, "the safetensors header is not valid JSON (integer too big)");
    *is_int = !real;
    *v = real ? 0 : neg ? (int64_t)(0 - x) : (int64_t)x;
    return 0;
}

/* An array of sizes (whole numbers >= 0, at most max of them). */
static int rnc_inf_sizes(rnc_inf_json *j, int64_t *out, int max, int *n, const char *bad) {
    if (rnc_inf_expect(j, '['))
        return -1;
    *n = 0;
    rnc_inf_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        int64_t v = 0;
        int is_int = 0;
        rnc_inf_ws(j);
        if (j->p >= j->end || !(*j->p == '-' || (*j->p >= '0' && *j->p <= '9')))
            return rnc_inf_fail(j, bad);   /* a string, an object, ...: not a size */
        if (rnc_inf_number(j, &v, &is_int))
            return -1;
        if (!is_int || v < 0 || *n == max)
            return rnc_inf_fail(j, bad);
        out[(*n)++] = v;
        rnc_inf_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        return rnc_inf_expect(j, ']');
    }
}

/* Members of an object: calls member(key) for each, which parses the value. */
typedef int (*rnc_inf_member)(rnc_inf_json *j, const char *key, void *ud);

static int rnc_inf_object(rnc_inf_json *j, rnc_inf_member member, void *ud) {
    if (rnc_inf_expect(j, '{'))
        return -1;
    char **keys = NULL;
    int n = 0, rc = 0;
    rnc_inf_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        char *key = NULL;
        if (rnc_inf_string(j, &key) || rnc_inf_expect(j, ':')) {
            free(key);
            rc = -1;
            break;
        }
        for (int i = 0; i < n; i++)
            if (!strcmp(keys[i], key)) {
                free(key);
                rc = rnc_inf_fail(j, "the safetensors header is not valid JSON (a name given twice)");
                goto done;
            }
        char **nk = realloc(keys, sizeof *keys * (size_t)(n + 1));
        if (!nk) {
            free(key);
            rc = rnc_inf_fail(j, "out of memory");
            break;
        }
        keys = nk;
        keys[n++] = key;
        if ((rc = member(j, key, ud)))
            break;
        rnc_inf_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        rc = rnc_inf_expect(j, '}');
        break;
    }
done:
    for (int i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    return rc;
}

static int rnc_inf_meta_member(rnc_inf_json *j, const char *key, void *ud) {
    (void)key, (void)ud;
    rnc_inf_ws(j);
    if (j->p >= j->end || *j->p != '"')
        return rnc_inf_fail(j, "__metadata__ holds a value that is not a string");
    return rnc_inf_string(j, NULL);
}

typedef struct {
    rnc_inf_tensor *t;
    size_t data_bytes;
    int seen;             /* bits: dtype, shape, data_offsets */
    uint64_t off[2];
} rnc_inf_entry_state;

static int rnc_inf_entry_member(rnc_inf_json *j, const char *key, void *ud) {
    rnc_inf_entry_state *e = ud;
    if (!strcmp(key, "dtype")) {
        char *s = NULL;
        rnc_inf_ws(j);
        if (j->p >= j->end || *j->p != '"')
            return rnc_inf_fail(j, "a tensor's dtype is not a string");
        if (rnc_inf_string(j, &s))
            return -1;
        int d = 0;
        while (d < RNC_INF_DTYPES && strcmp(rnc_inf_dtype_names[d], s))
            d++;
        free(s);
        if (d == RNC_INF_DTYPES)
            return rnc_inf_fail(j, "a tensor has an unknown dtype");
        e->t->dtype = d;
        e->seen |= 1;
        return 0;
    }
    if (!strcmp(key, "shape")) {
        if (rnc_inf_sizes(j, e->t->shape, RNC_INF_MAX_RANK, &e->t->rank, "a tensor's shape is not an array of at most 8 sizes"))
            return -1;
        e->seen |= 2;
        return 0;
    }
    if (!strcmp(key, "data_offsets")) {
        int64_t v[3];
        int n;
        if (rnc_inf_sizes(j, v, 3, &n, "a tensor's data_offsets is not [BEGIN, END]"))
            return -1;
        if (n != 2)
            return rnc_inf_fail(j, "a tensor's data_offsets is not [BEGIN, END]");
        e->off[0] = (uint64_t)v[0], e->off[1] = (uint64_t)v[1];
        e->seen |= 4;
        return 0;
    }
    return rnc_inf_fail(j, "a tensor's entry has a field other than dtype, shape and data_offsets");
}

typedef struct {
    rnc_inf_file *f;
} rnc_inf_root_state;

static int rnc_inf_root_member(rnc_inf_json *j, const char *key, void *ud) {
    rnc_inf_file *f = ((rnc_inf_root_state *)ud)->f;
    rnc_inf_ws(j);
    if (!strcmp(key, "__metadata__")) {
        if (j->p >= j->end || *j->p != '{')
            return rnc_inf_fail(j, "__metadata__ is not a JSON object");
        return rnc_inf_object(j, rnc_inf_meta_member, NULL);
    }
    if (j->p >= j->end || *j->p != '{')
        return rnc_inf_fail(j, "a tensor's entry is not a JSON object");
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 64;
        rnc_inf_tensor *t = realloc(f->t, sizeof *t * (size_t)cap);
        if (!t)
            return rnc_inf_fail(j, "out of memory");
        f->t = t;
        f->cap = cap;
    }
    rnc_inf_tensor *t = &f->t[f->n];
    memset(t, 0, sizeof *t);
    rnc_inf_entry_state e = {t, f->data_bytes, 0, {0, 0}};
    if (rnc_inf_object(j, rnc_inf_entry_member, &e))
        return -1;
    if (e.seen != 7)
        return rnc_inf_fail(j, "a tensor's entry misses dtype, shape or data_offsets");
    /* as the runtime checks: the count within the data, the offsets inside it, matching */
    uint64_t count = 1, cap = f->data_bytes / rnc_inf_dtype_sizes[t->dtype];
    int empty = 0;
    for (int i = 0; i < t->rank; i++) {
        uint64_t s = (uint64_t)t->shape[i];
        if (s == 0)
            empty = 1;
        else if (!empty && count > cap / s)
            return rnc_inf_fail(j, "a tensor's shape holds more than the file's data");
        else if (!empty)
            count *= s;
    }
    t->count = empty ? 0 : count;
    if (e.off[0] > f->data_bytes || e.off[1] > f->data_bytes || e.off[1] < e.off[0])
        return rnc_inf_fail(j, "a tensor's data_offsets is not [BEGIN, END] inside the data");
    if (e.off[1] - e.off[0] != t->count * rnc_inf_dtype_sizes[t->dtype])
        return rnc_inf_fail(j, "a tensor's data_offsets do not match its shape and dtype");
    t->begin = e.off[0], t->end = e.off[1];
    if (!(t->name = malloc(strlen(key) + 1)))
        return rnc_inf_fail(j, "out of memory");
    strcpy(t->name, key);
    f->n++;
    return 0;
}

RNC_INF void rnc_inf_free(rnc_inf_file *f) {
    for (int i = 0; i < f->n; i++)
        free(f->t[i].name);
    free(f->t);
    memset(f, 0, sizeof *f);
}

static int rnc_inf_cmp(const void *a, const void *b) {
    const rnc_inf_tensor *x = *(const rnc_inf_tensor *const *)a, *y = *(const rnc_inf_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin > y->begin ? 1 : -1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Parses a safetensors file of size bytes at buf (kept: f points into it);
 * 0, or -1 with the reason in err. */
RNC_INF int rnc_inf_parse(const uint8_t *buf, size_t size, rnc_inf_file *f, char *err, size_t errsz) {
    memset(f, 0, sizeof *f);
    if (errsz)
        err[0] = '\0';
    const uint16_t one = 1;
    uint8_t little;
    memcpy(&little, &one, 1);
    if (!little) {
        snprintf(err, errsz, "safetensors data is little-endian; this machine is not");
        return -1;
    }
    if (size < 8) {
        snprintf(err, errsz, "not a safetensors file (%zu bytes)", size);
        return -1;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | buf[i];
    if (n < 2 || n > RNC_INF_MAX_HEADER || n > size - 8) {
        snprintf(err, errsz, "not a safetensors file, or truncated (header length %llu, %zu bytes)",
                 (unsigned long long)n, size);
        return -1;
    }
    if (buf[8] != '{') {
        snprintf(err, errsz, "not a safetensors file (its header does not start with '{')");
        return -1;
    }
    f->data = buf + 8 + n;
    f->data_bytes = size - 8 - (size_t)n;
    rnc_inf_json j = {buf + 8, buf + 8 + n, err, errsz};
    rnc_inf_root_state st = {f};
    int rc = rnc_inf_object(&j, rnc_inf_root_member, &st);
    rnc_inf_ws(&j);
    if (!rc && j.p != j.end)
        rc = rnc_inf_fail(&j, "the safetensors header is not valid JSON (bytes after the object)");
    rnc_inf_tensor **order = NULL;
    if (!rc && !(order = malloc(sizeof *order * (size_t)(f->n ? f->n : 1))))
        rc = rnc_inf_fail(&j, "out of memory");
    if (!rc) {   /* the tensors tile the data */
        for (int i = 0; i < f->n; i++)
            order[i] = &f->t[i];
        qsort(order, (size_t)f->n, sizeof *order, rnc_inf_cmp);
        uint64_t at = 0;
        for (int i = 0; i < f->n && !rc; i++) {
            if (order[i]->begin != at)
                rc = -1, snprintf(err, errsz, "tensor '%s' does not start where the one before it ends", order[i]->name);
            at = order[i]->end;
        }
        if (!rc && at != f->data_bytes)
            rc = -1, snprintf(err, errsz, "the tensors do not cover the file's data (trailing bytes?)");
    }
    free(order);
    if (rc)
        rnc_inf_free(f);
    return rc;
}

RNC_INF const rnc_inf_tensor *rnc_inf_find(const rnc_inf_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}

static float rnc_inf_half(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else if (exp == 0) {
        if (!man) {
            bits = sign;
        } else {
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
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

/* Tensor t's elements as floats; -1 for a dtype that is not F32, F64, F16 or BF16. */
RNC_INF int rnc_inf_to_float(const rnc_inf_file *f, const rnc_inf_tensor *t, float *out) {
    const uint8_t *p = f->data + t->begin;
    for (uint64_t i = 0; i < t->count; i++) {
        if (t->dtype == RNC_INF_F32) {
            memcpy(&out[i], p + 4 * i, 4);
        } else if (t->dtype == RNC_INF_F64) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        } else if (t->dtype == RNC_INF_F16 || t->dtype == RNC_INF_BF16) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            if (t->dtype == RNC_INF_F16) {
                out[i] = rnc_inf_half(h);
            } else {
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&out[i], &bits, 4);
            }
        } else {
            return -1;
        }
    }
    return 0;
}

/* torchvision's layout (conv [OC][IC][K][K], fc [OUT][IN]) to rnc's
 * ([K][K][IC][OC], [IN][OUT]); shape is rnc's. */
RNC_INF void rnc_inf_from_torch(int rank, const int *shape, const float *src, float *dst) {
    if (rank == 4) {
        const size_t KH = (size_t)shape[0], KW = (size_t)shape[1], IC = (size_t)shape[2], OC = (size_t)shape[3];
        for (size_t kh = 0; kh < KH; kh++)
            for (size_t kw = 0; kw < KW; kw++)
                for (size_t ic = 0; ic < IC; ic++)
                    for (size_t oc = 0; oc < OC; oc++)
                        dst[((kh * KW + kw) * IC + ic) * OC + oc] = src[((oc * IC + ic) * KH + kh) * KW + kw];
    } else if (rank == 2) {
        for (size_t i = 0; i < (size_t)shape[0]; i++)
            for (size_t o = 0; o < (size_t)shape[1]; o++)
                dst[i * (size_t)shape[1] + o] = src[o * (size_t)shape[0] + i];
    } else {
        memcpy(dst, src, sizeof(float) * (size_t)shape[0]);
    }
}

/* Batch norm folded into the conv before it: w[..][oc] *= s[oc], bias[oc] =
 * beta[oc] - mean[oc] s[oc], s = gamma / sqrt(var + eps); w in rnc's layout. */
RNC_INF void rnc_inf_fold(float *w, size_t per_oc_count, int oc_n, float *bias, const float *gamma, const float *beta,
                          const float *mean, const float *var, double eps) {
    for (int oc = 0; oc < oc_n; oc++) {
        double s = gamma[oc] / sqrt((double)var[oc] + eps);
        for (size_t i = 0; i < per_oc_count; i++)
            w[i * (size_t)oc_n + (size_t)oc] = (float)(w[i * (size_t)oc_n + (size_t)oc] * s);
        bias[oc] = (float)(beta[oc] - mean[oc] * s);
    }
}

#endif
