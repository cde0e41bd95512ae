/* test_safetensors.c - the safetensors reader and writer (rnc/safetensors.h):
 * the format's layout byte for byte, every check the reader makes, a
 * mutation fuzzer over valid files (the reader must refuse or accept, never
 * read outside the file: run under ASan in scripts/test.sh), dtype
 * conversion, torchvision's names and layouts, and whole networks exported,
 * imported, fine-tuned and refused (two generated tiny networks). */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rnc/runtime.h"
#include "rnc/safetensors.h"
#include "testutil.h"

extern const rnc_model rnc_model_tiny_bottleneck_b, rnc_model_tiny_preact_c;

/* A file from a header text and data bytes: the 8-byte length, then both. */
static uint8_t *make_file(const char *header, const void *data, size_t data_bytes, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_bytes;
    uint8_t *b = malloc(*size);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    if (data_bytes)
        memcpy(b + 8 + h, data, data_bytes);
    return b;
}

/* Parses header + data; returns the status, the message in msg. */
static int parse_text(const char *header, const void *data, size_t data_bytes, char *msg, size_t msg_size) {
    size_t size;
    uint8_t *b = make_file(header, data, data_bytes, &size);
    rnc_st_file f;
    rnc_err err = {{0}};
    int rc = rnc_st_parse(&f, b, size, "x.safetensors", &err);
    snprintf(msg, msg_size, "%s", err.msg);
    if (rc == RNC_OK)
        rnc_st_free(&f);
    free(b);
    return rc;
}

/* ---- the format ------------------------------------------------------------ */

START_TEST(write_layout) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[1] = {-0.5f};
    rnc_st_out t[2] = {{"a.weight", 2, {2, 3}, a}, {"b", 0, {0}, b}};
    const char *meta[] = {"format", "pt", "note", "q\"uote"};
    rnc_err err;
    ck_assert_int_eq(rnc_st_write(tmp_path("w.safetensors"), t, 2, meta, 2, &err), RNC_OK);
    size_t n;
    uint8_t *buf = (uint8_t *)read_all(tmp_path("w.safetensors"), &n);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | buf[i];
    ck_assert_uint_eq(h % 8, 0);   /* the data is 8-byte aligned */
    ck_assert_uint_eq(n, 8 + h + 7 * 4);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"q\\\"uote\"},"
                       "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[24,28]}}";
    ck_assert_int_eq(memcmp(buf + 8, want, strlen(want)), 0);
    for (size_t i = 8 + strlen(want); i < 8 + h; i++)
        ck_assert_int_eq(buf[i], ' ');
    ck_assert_int_eq(memcmp(buf + 8 + h, a, 24), 0);
    ck_assert_int_eq(memcmp(buf + 8 + h + 24, b, 4), 0);
    free(buf);

    rnc_st_file f;
    ck_assert_int_eq(rnc_st_read(&f, tmp_path("w.safetensors"), &err), RNC_OK);
    ck_assert_int_eq(f.n, 2);
    ck_assert_str_eq(f.t[0].name, "a.weight");
    ck_assert_int_eq(f.t[0].dtype, RNC_ST_F32);
    ck_assert_int_eq(f.t[0].rank, 2);
    ck_assert_int_eq(f.t[0].shape[1], 3);
    ck_assert_uint_eq(f.t[0].count, 6);
    ck_assert_int_eq(f.t[1].rank, 0);
    ck_assert_uint_eq(f.t[1].count, 1);   /* a scalar */
    ck_assert_str_eq(rnc_st_meta(&f, "note"), "q\"uote");
    ck_assert_ptr_null(rnc_st_meta(&f, "nope"));
    float back[6];
    ck_assert_int_eq(rnc_st_to_float(rnc_st_find(&f, "a.weight"), back, &err), RNC_OK);
    ck_assert_int_eq(memcmp(back, a, sizeof a), 0);
    ck_assert_ptr_null(rnc_st_find(&f, "c"));
    rnc_st_free(&f);
    /* a duplicate name is refused when writing */
    rnc_st_out dup[2] = {{"a", 1, {1}, b}, {"a", 1, {1}, b}};
    ck_assert_int_eq(rnc_st_write(tmp_path("d.safetensors"), dup, 2, NULL, 0, &err), RNC_E_ARG);
    ck_assert_int_ne(access(tmp_path("d.safetensors"), F_OK), 0);
}
END_TEST

START_TEST(dtypes_convert) {
    /* F16: 1, -2, 0.5, 65504 (max), a subnormal, inf; BF16: 1, -3; F64: pi */
    uint16_t h[6] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00};
    uint16_t bf[2] = {0x3f80, 0xc040};
    double d = 3.141592653589793;
    char header[512];
    snprintf(header, sizeof header, "{\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]},"
                                    "\"bf\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[12,16]},"
                                    "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[16,24]},"
                                    "\"i\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[24,32]}}");
    uint8_t data[32] = {0};
    memcpy(data, h, 12);
    memcpy(data + 12, bf, 4);
    memcpy(data + 16, &d, 8);
    size_t size;
    uint8_t *b = make_file(header, data, 32, &size);
    rnc_st_file f;
    rnc_err err;
    ck_assert_msg(rnc_st_parse(&f, b, size, "x", &err) == RNC_OK, "%s", err.msg);
    float out[6];
    ck_assert_int_eq(rnc_st_to_float(rnc_st_find(&f, "h"), out, &err), RNC_OK);
    ck_assert(out[0] == 1 && out[1] == -2 && out[2] == 0.5f && out[3] == 65504);
    ck_assert_float_eq(out[4], 0x1p-24f);
    ck_assert(isinf(out[5]) && out[5] > 0);
    ck_assert_int_eq(rnc_st_to_float(rnc_st_find(&f, "bf"), out, &err), RNC_OK);
    ck_assert(out[0] == 1 && out[1] == -3);
    ck_assert_int_eq(rnc_st_to_float(rnc_st_find(&f, "d"), out, &err), RNC_OK);
    ck_assert(out[0] == (float)d);
    ck_assert_int_eq(rnc_st_to_float(rnc_st_find(&f, "i"), out, &err), RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "dtype I64"));
    rnc_st_free(&f);
    free(b);
}
END_TEST

/* Each check the reader makes, with the message it gives. */
START_TEST(reader_checks) {
    static const struct {
        const char *header;
        size_t data;
        const char *msg;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ", 8, NULL},   /* padding */
        {"{}", 0, NULL},
        {"[1]", 0, "does not start with '{'"},
        {"{\"a\":1,}", 0, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{}}", 8, "not valid JSON"},  /* duplicate */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "not valid JSON"},
        {"{\"a\":[]}", 0, "its entry is not a JSON object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing 'data_offsets'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unknown field 'x'"},
        {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'F33'"},
        {"{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype is not a string"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0] is not a size"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "shape[0] is not a size"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "at most 8 sizes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
         "holds more than the file's 8 data bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 8, "data_offsets is not [BEGIN, END]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "data_offsets is not [BEGIN, END]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets is not [BEGIN, END]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "4 bytes at data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "after a gap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "trailing bytes"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ 'k' is not a string"},
        {"{\"__metadata__\":[]}", 0, "__metadata__ is not a JSON object"},
        {"{\"a\xff\":{}}", 0, "not valid JSON"},   /* not UTF-8 */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}}", 0, NULL},   /* empty tensor */
    };
    uint8_t data[16] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char msg[RNC_ERR_LEN];
        int rc = parse_text(cases[i].header, data, cases[i].data, msg, sizeof msg);
        if (!cases[i].msg) {
            ck_assert_msg(rc == RNC_OK, "case %zu refused: %s", i, msg);
        } else {
            ck_assert_msg(rc == RNC_E_FORMAT, "case %zu (%s) accepted", i, cases[i].header);
            ck_assert_msg(strstr(msg, cases[i].msg) && !strncmp(msg, "x.safetensors: ", 15),
                          "case %zu: message '%s', expected '%s'", i, msg, cases[i].msg);
        }
    }
    /* the length field: short files, lengths past the end, above the limit */
    rnc_st_file f;
    rnc_err err;
    uint8_t tiny[12] = {4, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    ck_assert_int_eq(rnc_st_parse(&f, tiny, 7, "x", &err), RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "shorter than its 8-byte header length"));
    ck_assert_int_eq(rnc_st_parse(&f, tiny, 12, "x", &err), RNC_OK);
    rnc_st_free(&f);
    tiny[0] = 5;
    ck_assert_int_eq(rnc_st_parse(&f, tiny, 12, "x", &err), RNC_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "does not fit its 12 bytes"));
    memset(tiny, 0xff, 8);
    ck_assert_int_eq(rnc_st_parse(&f, tiny, 12, "x", &err), RNC_E_FORMAT);
    ck_assert_int_eq(rnc_st_read(&f, tmp_path("missing"), &err), RNC_E_IO);
    ck_assert_int_eq(rnc_st_read(&f, tmproot, &err), RNC_E_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
}
END_TEST

/* ---- the fuzzer --------------------------------------------------------------- */

static uint64_t fuzz_state;
static uint32_t rnd(void) {
    fuzz_state = fuzz_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(fuzz_state >> 33);
}

static const char *const tokens[] = {
    "{", "}", "[", "]", ",", ":", "\"", "0", "-1", "1e3", "4294967296", "18446744073709551616", "9223372036854775807",
    "null", "true", "\"F32\"", "\"F16\"", "\"I64\"", "\"shape\"", "\"dtype\"", "\"data_offsets\"", "\"__metadata__\"",
    "[0,4]", "[]", "\\u0000", "\\ud800", " ", "\xc3\xa9", "\xff",
};

/* One random edit of the header (bytes 8..8+h) or of the length field. */
static size_t mutate(uint8_t *b, size_t n, size_t cap, size_t header) {
    switch (rnd() % 7) {
    case 0:   /* flip a header byte */
        b[8 + rnd() % header] ^= (uint8_t)(1u << (rnd() % 8));
        return n;
    case 1: {   /* overwrite with a token */
        const char *t = tokens[rnd() % (sizeof tokens / sizeof tokens[0])];
        size_t at = 8 + rnd() % header, len = strlen(t);
        if (at + len <= 8 + header)
            memcpy(b + at, t, len);
        return n;
    }
    case 2: {   /* insert a token (the length field is not adjusted: or it is) */
        const char *t = tokens[rnd() % (sizeof tokens / sizeof tokens[0])];
        size_t at = 8 + rnd() % header, len = strlen(t);
        if (n + len > cap)
            return n;
        memmove(b + at + len, b + at, n - at);
        memcpy(b + at, t, len);
        if (rnd() % 2) {
            uint64_t h = 0;
            for (int i = 7; i >= 0; i--)
                h = h << 8 | b[i];
            h += len;
            for (int i = 0; i < 8; i++)
                b[i] = (uint8_t)(h >> (8 * i));
        }
        return n + len;
    }
    case 3: {   /* delete a run of header bytes */
        size_t at = 8 + rnd() % header, len = 1 + rnd() % 8;
        if (at + len > n)
            return n;
        memmove(b + at, b + at + len, n - at - len);
        return n - len;
    }
    case 4:   /* truncate */
        return rnd() % (n + 1);
    case 5: {   /* a random length field */
        uint64_t h = rnd() % 3 == 0 ? ((uint64_t)rnd() << 32 | rnd()) : rnd() % (n + 16);
        for (int i = 0; i < 8; i++)
            b[i] = (uint8_t)(h >> (8 * i));
        return n;
    }
    default: {   /* a digit changed: offsets and shapes that almost fit */
        for (int tries = 0; tries < 32; tries++) {
            size_t at = 8 + rnd() % header;
            if (b[at] >= '0' && b[at] <= '9') {
                b[at] = (uint8_t)('0' + rnd() % 10);
                break;
            }
        }
        return n;
    }
    }
}

START_TEST(fuzz_reader) {
    /* a valid file with the reader's every feature: metadata, dtypes, a scalar, an empty tensor */
    float a[12];
    for (int i = 0; i < 12; i++)
        a[i] = (float)i;
    rnc_st_out t[4] = {{"layer1.0.conv1.weight", 4, {1, 1, 3, 2}, a}, {"fc.bias", 1, {4}, a},
                       {"bn1.running_var", 0, {0}, a}, {"x", 2, {0, 3}, a}};
    const char *meta[] = {"format", "pt"};
    rnc_err err;
    ck_assert_int_eq(rnc_st_write(tmp_path("f.safetensors"), t, 4, meta, 1, &err), RNC_OK);
    size_t n0;
    uint8_t *orig = (uint8_t *)read_all(tmp_path("f.safetensors"), &n0);
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--)
        header = header << 8 | orig[i];
    const char *env = getenv("RNC_FUZZ_CASES");
    long cases = env ? atol(env) : 20000;
    fuzz_state = 17;
    size_t cap = n0 + 512;
    uint8_t *b = malloc(cap);
    int accepted = 0, refused = 0;
    for (long c = 0; c < cases; c++) {
        memcpy(b, orig, n0);
        size_t n = n0;
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits && n > 8 + header; e++)
            n = mutate(b, n, cap, (size_t)header);
        /* an exact-size copy, so ASan sees any read past the end */
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, b, n);
        rnc_st_file f;
        err.msg[0] = 0;
        if (rnc_st_parse(&f, exact, n, "fuzz", &err) == RNC_OK) {
            accepted++;
            size_t covered = 0;
            for (int i = 0; i < f.n; i++) {
                const rnc_st_tensor *x = &f.t[i];
                ck_assert(x->data >= f.base && x->data + x->bytes <= f.base + f.data_bytes);
                ck_assert_uint_eq(x->bytes, x->count * rnc_st_dtype_size(x->dtype));
                covered += x->bytes;
                float *v = malloc(x->count * sizeof(float) + 1);
                rnc_st_to_float(x, v, &err);   /* reads every byte it claims */
                free(v);
            }
            ck_assert_uint_eq(covered, f.data_bytes);
            rnc_st_free(&f);
        } else {
            refused++;
            ck_assert_msg(!strncmp(err.msg, "fuzz", 4), "case %ld: message '%s'", c, err.msg);
        }
        free(exact);
    }
    free(b);
    free(orig);
    /* the mutations must exercise both outcomes */
    ck_assert_int_gt(accepted, cases / 100);
    ck_assert_int_gt(refused, cases / 2);
}
END_TEST

/* ---- names and layouts ----------------------------------------------------------- */

START_TEST(torchvision_names) {
    static const char *const pairs[][2] = {
        {"stem.conv.weight", "conv1.weight"},
        {"stem.bn.gamma", "bn1.weight"},
        {"stem.bn.beta", "bn1.bias"},
        {"stem.bn.running_mean", "bn1.running_mean"},
        {"stage1.block1.conv1.weight", "layer1.0.conv1.weight"},
        {"stage4.block2.bn3.running_var", "layer4.1.bn3.running_var"},
        {"stage2.block1.shortcut.conv.weight", "layer2.0.downsample.0.weight"},
        {"stage2.block1.shortcut.bn.gamma", "layer2.0.downsample.1.weight"},
        {"stage3.block12.bn1.beta", "layer3.11.bn1.bias"},
        {"head.fc.weight", "fc.weight"},
        {"head.fc.bias", "fc.bias"},
        {"head.bn.gamma", "bn_final.weight"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        ck_assert_int_eq(rnc_torch_name(pairs[i][0], out, sizeof out), 1);
        ck_assert_str_eq(out, pairs[i][1]);
    }
    const char *none[] = {"stem.pool.argmax", "stage1.block1.bn1.mean", "images", "stage0x.block1.conv1.weight",
                          "stage1.block1.relu1.weight", "other.weight"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        ck_assert_msg(rnc_torch_name(none[i], out, sizeof out) == 0, "%s named %s", none[i], out);
    ck_assert_int_eq(rnc_torch_name("stage1.block1.conv1.weight", out, 8), -1);

    /* conv [K][K][IC][OC] <-> [OC][IC][K][K], fc [IN][OUT] <-> [OUT][IN] */
    int cs[4] = {2, 3, 4, 5};
    int64_t ts[4];
    ck_assert_int_eq(rnc_torch_shape(4, cs, ts), 4);
    ck_assert(ts[0] == 5 && ts[1] == 4 && ts[2] == 2 && ts[3] == 3);
    float src[120], mid[120], back[120];
    for (int i = 0; i < 120; i++)
        src[i] = (float)i;
    rnc_to_torch_layout(4, cs, src, mid);
    /* rnc's [kh=1][kw=2][ic=3][oc=4] is torch's [4][3][1][2] */
    ck_assert_float_eq(mid[((4 * 4 + 3) * 2 + 1) * 3 + 2], src[((1 * 3 + 2) * 4 + 3) * 5 + 4]);
    rnc_from_torch_layout(4, cs, mid, back);
    ck_assert_int_eq(memcmp(src, back, sizeof src), 0);
    int fs[2] = {6, 7};
    rnc_to_torch_layout(2, fs, src, mid);
    ck_assert_float_eq(mid[3 * 6 + 5], src[5 * 7 + 3]);
    rnc_from_torch_layout(2, fs, mid, back);
    ck_assert_int_eq(memcmp(src, back, 42 * sizeof(float)), 0);
}
END_TEST

/* ---- networks -------------------------------------------------------------------- */

static void net_random(rnc_net *net, const rnc_model *m, uint64_t seed) {
    rnc_err err;
    ck_assert_int_eq(rnc_net_alloc(net, m, &err), RNC_OK);
    rnc_net_init(net, seed);
    rnc_rng r = rnc_rng_stream(seed, 99, 0, 0);
    for (size_t i = 0; i < m->state_count; i++)   /* statistics that are not 0 and 1 */
        net->state[i] = (float)(0.5 + rnc_rng_uniform(&r));
}

START_TEST(network_roundtrip) {
    const rnc_model *models[] = {&rnc_model_tiny_bottleneck_b, &rnc_model_tiny_preact_c};
    for (int k = 0; k < 2; k++) {
        const rnc_model *m = models[k];
        rnc_net a, b;
        rnc_err err;
        net_random(&a, m, 3);
        net_random(&b, m, 4);
        ck_assert_msg(rnc_weights_export(&a, tmp_path("net.safetensors"), &err) == RNC_OK, "%s", err.msg);
        rnc_import_report rep;
        ck_assert_msg(rnc_weights_import(&b, tmp_path("net.safetensors"), &rep, &err) == RNC_OK, "%s", err.msg);
        ck_assert_int_eq(rep.loaded, m->n_params + m->n_state);
        ck_assert_int_eq(rep.skipped, 0);
        ck_assert_int_eq(memcmp(a.params, b.params, sizeof(float) * m->param_count), 0);
        ck_assert_int_eq(memcmp(a.state, b.state, sizeof(float) * m->state_count), 0);
        /* the file: torchvision's names, layouts and order */
        rnc_st_file f;
        ck_assert_int_eq(rnc_st_read(&f, tmp_path("net.safetensors"), &err), RNC_OK);
        ck_assert_int_eq(f.n, m->n_params + m->n_state);
        ck_assert_str_eq(rnc_st_meta(&f, "format"), "pt");
        ck_assert_str_eq(rnc_st_meta(&f, "rnc_network"), m->name);
        ck_assert_str_eq(f.t[0].name, "conv1.weight");
        const rnc_st_tensor *fc = rnc_st_find(&f, "fc.weight");
        ck_assert_ptr_nonnull(fc);
        ck_assert_int_eq(fc->shape[0], m->classes);
        const rnc_tensor_info *pfc = NULL, *pconv = &m->params[0];
        for (int i = 0; i < m->n_params; i++)
            if (!strcmp(m->params[i].name, "head.fc.weight"))
                pfc = &m->params[i];
        ck_assert_ptr_nonnull(pfc);
        float v;
        memcpy(&v, fc->data + 4 * (size_t)(1 * pfc->shape[0] + 2), 4);   /* torch [1][2] = rnc [2][1] */
        ck_assert_float_eq(v, a.params[pfc->offset + 2 * (size_t)pfc->shape[1] + 1]);
        const rnc_st_tensor *c1 = rnc_st_find(&f, "conv1.weight");
        ck_assert_int_eq(c1->shape[0], pconv->shape[3]);
        ck_assert_int_eq(c1->shape[2], pconv->shape[0]);
        if (k == 0) {
            ck_assert_ptr_null(rnc_st_find(&f, "layer1.0.downsample.0.weight"));   /* 64 -> 64: identity */
            ck_assert_ptr_nonnull(rnc_st_find(&f, "layer2.0.downsample.0.weight"));
            ck_assert_ptr_nonnull(rnc_st_find(&f, "layer2.0.downsample.1.running_var"));
            ck_assert_ptr_nonnull(rnc_st_find(&f, "layer1.1.bn3.bias"));
            /* a BN's statistics follow its weight and bias */
            int at = (int)(rnc_st_find(&f, "bn1.weight") - f.t);
            ck_assert_str_eq(f.t[at + 1].name, "bn1.bias");
            ck_assert_str_eq(f.t[at + 2].name, "bn1.running_mean");
            ck_assert_str_eq(f.t[at + 3].name, "bn1.running_var");
        } else {
            ck_assert_ptr_nonnull(rnc_st_find(&f, "bn_final.running_mean"));
            ck_assert_ptr_nonnull(rnc_st_find(&f, "layer2.0.downsample.0.weight"));
            ck_assert_ptr_null(rnc_st_find(&f, "layer2.0.downsample.1.weight"));   /* pre-act: no BN */
        }
        rnc_st_free(&f);
        /* rnc_weights_load: the safetensors file, or a checkpoint */
        rnc_net_free(&b);
        net_random(&b, m, 5);
        ck_assert_int_eq(rnc_weights_load(&b, tmp_path("net.safetensors"), &err), RNC_OK);
        ck_assert_int_eq(memcmp(a.params, b.params, sizeof(float) * m->param_count), 0);
        rnc_ckpt_meta meta = {.epoch = 1, .step = 2, .seed = 3, .iters_per_epoch = 4};
        ck_assert_int_eq(rnc_checkpoint_save(tmp_path("net.ckpt"), &a, NULL, &meta, &err), RNC_OK);
        rnc_net_init(&b, 6);
        ck_assert_int_eq(rnc_weights_load(&b, tmp_path("net.ckpt"), &err), RNC_OK);
        ck_assert_int_eq(memcmp(a.state, b.state, sizeof(float) * m->state_count), 0);
        rnc_net_free(&a);
        rnc_net_free(&b);
    }
}
END_TEST

/* Rewrites the export at src into dst with edit applied to each tensor
 * (it may rename, reshape or drop it: return 0), plus extra tensors. */
typedef int (*tensor_edit)(rnc_st_out *t, float *scratch);

static void rewrite(const char *src, const char *dst, tensor_edit edit, const rnc_st_out *extra, int n_extra) {
    rnc_st_file f;
    rnc_err err;
    ck_assert_int_eq(rnc_st_read(&f, src, &err), RNC_OK);
    rnc_st_out *o = calloc((size_t)f.n + (size_t)n_extra, sizeof *o);
    float **bufs = calloc((size_t)f.n, sizeof *bufs);
    int n = 0;
    for (int i = 0; i < f.n; i++) {
        bufs[i] = malloc(sizeof(float) * (f.t[i].count + 64));
        ck_assert_int_eq(rnc_st_to_float(&f.t[i], bufs[i], &err), RNC_OK);
        rnc_st_out t = {f.t[i].name, f.t[i].rank, {0}, bufs[i]};
        memcpy(t.shape, f.t[i].shape, sizeof t.shape);
        if (!edit || edit(&t, bufs[i]))
            o[n++] = t;
    }
    for (int i = 0; i < n_extra; i++)
        o[n++] = extra[i];
    ck_assert_msg(rnc_st_write(dst, o, n, NULL, 0, &err) == RNC_OK, "%s", err.msg);
    for (int i = 0; i < f.n; i++)
        free(bufs[i]);
    free(bufs);
    free(o);
    rnc_st_free(&f);
}

static int fc_for_9_classes(rnc_st_out *t, float *scratch) {
    (void)scratch;
    if (!strcmp(t->name, "fc.weight") || !strcmp(t->name, "fc.bias"))
        t->shape[0] = 2;   /* 2 classes: the data is larger than needed, only the shape is read */
    return 1;
}
static int drop_bn1_var(rnc_st_out *t, float *scratch) {
    (void)scratch;
    return strcmp(t->name, "bn1.running_var") != 0;
}
static int conv1_transposed(rnc_st_out *t, float *scratch) {
    (void)scratch;
    if (!strcmp(t->name, "conv1.weight")) {   /* [OC][IC][K][K] -> [K][K][IC][OC], rnc's own layout */
        int64_t s[4] = {t->shape[2], t->shape[3], t->shape[1], t->shape[0]};
        memcpy(t->shape, s, sizeof s);
    }
    return 1;
}

START_TEST(network_refusals_and_fine_tuning) {
    const rnc_model *m = &rnc_model_tiny_bottleneck_b;
    rnc_net a, b;
    rnc_err err;
    net_random(&a, m, 3);
    net_random(&b, m, 4);
    char src[512];
    snprintf(src, sizeof src, "%s", tmp_path("a.safetensors"));
    ck_assert_int_eq(rnc_weights_export(&a, src, &err), RNC_OK);
    float *before = malloc(sizeof(float) * m->param_count);
    memcpy(before, b.params, sizeof(float) * m->param_count);

    /* torchvision's BN counters are ignored */
    int64_t counter = 12;
    rnc_st_out nbt[2] = {{"bn1.num_batches_tracked", 0, {0}, (const float *)(const void *)&counter},
                         {"layer1.0.bn1.num_batches_tracked", 0, {0}, (const float *)(const void *)&counter}};
    rewrite(src, tmp_path("nbt.safetensors"), NULL, nbt, 2);
    rnc_import_report rep;
    ck_assert_msg(rnc_weights_import(&b, tmp_path("nbt.safetensors"), &rep, &err) == RNC_OK, "%s", err.msg);
    ck_assert_int_eq(rep.ignored, 2);
    ck_assert_int_eq(memcmp(a.params, b.params, sizeof(float) * m->param_count), 0);
    memcpy(b.params, before, sizeof(float) * m->param_count);

    /* another number of classes: everything but the classifier, which keeps its values */
    rewrite(src, tmp_path("fc2.safetensors"), fc_for_9_classes, NULL, 0);
    ck_assert_msg(rnc_weights_import(&b, tmp_path("fc2.safetensors"), &rep, &err) == RNC_OK, "%s", err.msg);
    ck_assert_int_eq(rep.skipped, 2);
    ck_assert_int_eq(rep.file_classes, 2);
    ck_assert_int_eq(rep.loaded, m->n_params + m->n_state - 2);
    for (int i = 0; i < m->n_params; i++) {
        const rnc_tensor_info *t = &m->params[i];
        const float *want = strncmp(t->name, "head.fc.", 8) ? a.params : before;
        ck_assert_msg(!memcmp(b.params + t->offset, want + t->offset, t->count * sizeof(float)), "%s", t->name);
    }
    ck_assert_int_eq(rnc_weights_load(&b, tmp_path("fc2.safetensors"), &err), RNC_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "its classifier is for 2 classes, network tiny_bottleneck_b has 7"));

    /* refused, and the net left as it was */
    memcpy(b.params, before, sizeof(float) * m->param_count);
    rewrite(src, tmp_path("missing.safetensors"), drop_bn1_var, NULL, 0);
    ck_assert_int_eq(rnc_weights_import(&b, tmp_path("missing.safetensors"), &rep, &err), RNC_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "has no tensor 'bn1.running_var' (network tiny_bottleneck_b's "
                                          "stem.bn.running_var, [64])"));
    rewrite(src, tmp_path("shape.safetensors"), conv1_transposed, NULL, 0);
    ck_assert_int_eq(rnc_weights_import(&b, tmp_path("shape.safetensors"), &rep, &err), RNC_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "tensor 'conv1.weight' is [7, 7, 3, 64], network tiny_bottleneck_b's "
                                          "stem.conv.weight needs [64, 3, 7, 7]"));
    float extra_v[3] = {0};
    rnc_st_out extra[1] = {{"layer9.0.conv1.weight", 1, {3}, extra_v}};
    rewrite(src, tmp_path("extra.safetensors"), NULL, extra, 1);
    ck_assert_int_eq(rnc_weights_import(&b, tmp_path("extra.safetensors"), &rep, &err), RNC_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "has 1 tensor network tiny_bottleneck_b does not ('layer9.0.conv1.weight')"));
    /* weights of another network altogether */
    rnc_net p;
    net_random(&p, &rnc_model_tiny_preact_c, 1);
    ck_assert_int_eq(rnc_weights_export(&p, tmp_path("p.safetensors"), &err), RNC_OK);
    ck_assert_int_eq(rnc_weights_import(&b, tmp_path("p.safetensors"), &rep, &err), RNC_E_MISMATCH);
    ck_assert_int_eq(memcmp(before, b.params, sizeof(float) * m->param_count), 0);
    /* not a safetensors file */
    write_bytes(tmp_path("junk"), "RNCCKPX\0junkjunk", 16);
    ck_assert_int_eq(rnc_weights_load(&b, tmp_path("junk"), &err), RNC_E_FORMAT);
    ck_assert_int_eq(memcmp(before, b.params, sizeof(float) * m->param_count), 0);
    free(before);
    rnc_net_free(&p);
    rnc_net_free(&a);
    rnc_net_free(&b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("format");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, write_layout);
    tcase_add_test(tc, dtypes_convert);
    tcase_add_test(tc, reader_checks);
    tcase_add_test(tc, fuzz_reader);
    tcase_add_test(tc, torchvision_names);
    suite_add_tcase(s, tc);
    tc = tcase_create("networks");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, network_roundtrip);
    tcase_add_test(tc, network_refusals_and_fine_tuning);
    suite_add_tcase(s, tc);
    return run_suite_in_tmproot("/tmp/rnc_st_test_XXXXXX", s);
}
