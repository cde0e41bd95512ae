/* test_infer_reader.c - the inference files' safetensors reader
 * (include/rnc/infer.h, a small JSON parser: inference files cannot link
 * jansson) against the runtime's (runtime/safetensors.c, jansson): on the
 * reader checks' cases and on mutated files, both must accept or both
 * refuse, and when they accept, see the same tensors (names, dtypes,
 * shapes, offsets).  Also the JSON corners a safetensors header may hold:
 * escapes, surrogate pairs, UTF-8, numbers. */
#define _GNU_SOURCE
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rnc/infer.h"
#include "rnc/safetensors.h"
#include "testutil.h"

static uint8_t *make_file(const char *header, size_t hlen, size_t data_bytes, size_t *size) {
    *size = 8 + hlen + data_bytes;
    uint8_t *b = calloc(*size ? *size : 1, 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    for (size_t i = 0; i < data_bytes; i++)
        b[8 + hlen + i] = (uint8_t)(i * 37);
    return b;
}

/* Both readers on the same bytes; returns 1 when both accept, 0 when both refuse. */
static int both(const uint8_t *b, size_t n, const char *what) {
    uint8_t *exact = malloc(n ? n : 1);   /* exact size: ASan sees any read past the end */
    memcpy(exact, b, n);
    rnc_st_file a;
    rnc_inf_file c;
    rnc_err err = {{0}};
    char why[256];
    int ra = rnc_st_parse(&a, exact, n, "x", &err) == RNC_OK;
    int rc = rnc_inf_parse(exact, n, &c, why, sizeof why) == 0;
    ck_assert_msg(ra == rc, "%s: the runtime %s it (%s), the inference reader %s it (%s)", what,
                  ra ? "accepts" : "refuses", ra ? "" : err.msg, rc ? "accepts" : "refuses", rc ? "" : why);
    if (ra) {
        ck_assert_int_eq(a.n, c.n);
        for (int i = 0; i < a.n; i++) {
            ck_assert_str_eq(a.t[i].name, c.t[i].name);
            ck_assert_int_eq((int)a.t[i].dtype, c.t[i].dtype);
            ck_assert_int_eq(a.t[i].rank, c.t[i].rank);
            for (int d = 0; d < a.t[i].rank; d++)
                ck_assert_int_eq(a.t[i].shape[d], c.t[i].shape[d]);
            ck_assert_uint_eq((size_t)(a.t[i].data - a.base), c.t[i].begin);
            ck_assert_uint_eq(a.t[i].bytes, c.t[i].end - c.t[i].begin);
        }
        rnc_st_free(&a);
        rnc_inf_free(&c);
    } else {
        ck_assert_msg(why[0], "%s: refused without a reason", what);
    }
    free(exact);
    return ra;
}

static int both_text(const char *header, size_t data) {
    size_t n;
    uint8_t *b = make_file(header, strlen(header), data, &n);
    int r = both(b, n, header);
    free(b);
    return r;
}

#define E(dims, off) "{\"dtype\":\"F32\",\"shape\":" dims ",\"data_offsets\":" off "}"

START_TEST(same_verdicts) {
    static const struct {
        const char *h;
        size_t data;
        int ok;
    } cases[] = {
        {"{}", 0, 1},
        {"{\"a\":" E("[2]", "[0,8]") "}", 8, 1},
        {"{\"a\":" E("[2]", "[0,8]") "}  \t\n\r ", 8, 1},
        {" {}", 0, 0},
        {"{\"a\":" E("[2]", "[0,8]") ",}", 8, 0},
        {"{\"a\":" E("[2]", "[0,8]") ",\"a\":" E("[0]", "[8,8]") "}", 8, 0},
        {"{\"a\":" E("[2]", "[0,8]") ",\"\\u0061\":" E("[0]", "[8,8]") "}", 8, 0},   /* the same name, escaped */
        {"{\"\\u00e9\\ud83d\\ude00\\n\\\"\\\\\\/\\b\\f\\r\\t\":" E("[2]", "[0,8]") "}", 8, 1},
        {"{\"\xc3\xa9\xf0\x9f\x98\x80\":" E("[2]", "[0,8]") "}", 8, 1},
        {"{\"\\ud83d\":" E("[2]", "[0,8]") "}", 8, 0},   /* a lone high surrogate */
        {"{\"\\ude00\":" E("[2]", "[0,8]") "}", 8, 0},
        {"{\"\\u0000\":" E("[2]", "[0,8]") "}", 8, 0},
        {"{\"\\x\":" E("[2]", "[0,8]") "}", 8, 0},
        {"{\"\xc0\xaf\":" E("[2]", "[0,8]") "}", 8, 0},   /* overlong */
        {"{\"\xed\xa0\x80\":" E("[2]", "[0,8]") "}", 8, 0},   /* a surrogate in UTF-8 */
        {"{\"\xf4\x90\x80\x80\":" E("[2]", "[0,8]") "}", 8, 0},   /* above U+10FFFF */
        {"{\"a\tb\":" E("[2]", "[0,8]") "}", 8, 0},   /* a raw control character */
        {"{\"a\x7f\":" E("[2]", "[0,8]") "}", 8, 1},
        {"{\"a\":" E("[-0]", "[0,0]") "}", 0, 1},
        {"{\"a\":" E("[2.0]", "[0,8]") "}", 8, 0},
        {"{\"a\":" E("[2e0]", "[0,8]") "}", 8, 0},
        {"{\"a\":" E("[02]", "[0,8]") "}", 8, 0},
        {"{\"a\":" E("[+2]", "[0,8]") "}", 8, 0},
        {"{\"a\":" E("[0,9223372036854775807]", "[0,0]") "}", 0, 1},
        {"{\"a\":" E("[9223372036854775807,0]", "[0,0]") "}", 0, 0},   /* refused before the 0 is seen */
        {"{\"a\":" E("[9223372036854775808,0]", "[0,0]") "}", 0, 0},
        {"{\"a\":" E("[-9223372036854775808]", "[0,0]") "}", 0, 0},
        {"{\"a\":" E("[0,99999999999999999999]", "[0,0]") "}", 0, 0},
        {"{\"a\":" E("[2]", "[0,8,8]") "}", 8, 0},
        {"{\"a\":" E("[2]", "[0,8.0]") "}", 8, 0},
        {"{\"a\":" E("[[2]]", "[0,8]") "}", 8, 0},
        {"{\"a\":" E("[\"2\"]", "[0,8]") "}", 8, 0},
        {"{\"a\":" E("null", "[0,8]") "}", 8, 0},
        {"{\"a\":" E("[2]", "[0,8]") ",\"__metadata__\":{\"k\":\"v\",\"k2\":\"\\u00e9\"}}", 8, 1},
        {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, 0},
        {"{\"__metadata__\":{\"k\":{}}}", 0, 0},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8],\"dtype\":\"F32\"}}", 8, 1},
        {"{\"a\":{\"shape\":[2],\"dtype\":\"F32\",\"data_offsets\":[0,8],\"dtype\":\"F32\"}}", 8, 0},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":0}}", 8, 0},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0},
        {"{\"a\":[]}", 0, 0},
        {"{\"a\":" E("[1]", "[0,4]") ",\"b\":" E("[0]", "[0,0]") ",\"c\":" E("[1]", "[4,8]") "}", 8, 1},
        {"{\"a\":" E("[1]", "[4,8]") ",\"b\":" E("[1]", "[0,4]") "}", 8, 1},   /* any order */
        {"{\"a\":" E("[1]", "[4,8]") "}", 8, 0},
        {"{\"a\":" E("[2]", "[0,8]") ",\"b\":" E("[1]", "[4,8]") "}", 8, 0},
        {"{\"a\":" E("[1]", "[0,4]") "}", 8, 0},
        {"{\"a\":" E("[4294967296,4294967296]", "[0,8]") "}", 8, 0},
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}}", 8, 1},
        {"{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0},
        {"{\"a\":" E("[1,1,1,1,1,1,1,2]", "[0,8]") "}", 8, 1},
        {"{\"a\":" E("[1,1,1,1,1,1,1,1,2]", "[0,8]") "}", 8, 0},
        {"{\"a\":" E("[2]", "[0,8]") "} x", 8, 0},
        {"[]", 0, 0},
        {"{", 0, 0},
        {"{\"a\" " ":" E("[2]", "[0,8]") "\n}", 8, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(both_text(cases[i].h, cases[i].data) == cases[i].ok, "case %zu (%s): expected %s", i, cases[i].h,
                      cases[i].ok ? "accepted" : "refused");
    /* a NUL inside the header */
    size_t n;
    uint8_t *b = make_file("{}\0 ", 4, 0, &n);
    ck_assert_int_eq(both(b, n, "NUL in the padding"), 0);
    free(b);
}
END_TEST

static uint64_t state;
static uint32_t rnd(void) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(state >> 33);
}

static const char *const tokens[] = {
    "{", "}", "[", "]", ",", ":", "\"", "0", "-0", "-1", "1.5", "1e3", "4294967296", "9223372036854775808", "null",
    "true", "\"F32\"", "\"F16\"", "\"I64\"", "\"shape\"", "\"dtype\"", "\"data_offsets\"", "\"__metadata__\"", "[0,4]",
    "[]", "\\u0000", "\\ud800", "\\udc00", "\\u00e9", "\\ud83d\\ude00", "\\n", "\\q", " ", "\t", "\xc3\xa9", "\xc3",
    "\xff", "\xed\xa0\x80", "\x01", "\x7f", "{}", "\"x\":1",
};

START_TEST(fuzz_same_verdicts) {
    float a[12];
    for (int i = 0; i < 12; i++)
        a[i] = (float)i;
    rnc_st_out t[4] = {{"layer1.0.conv1.weight", 4, {1, 1, 3, 2}, a}, {"fc.bias", 1, {4}, a},
                       {"bn1.running_var", 0, {0}, a}, {"x\xc3\xa9", 2, {0, 3}, a}};
    const char *meta[] = {"format", "pt", "note", "\xe2\x82\xac \"q\""};
    rnc_err err;
    char path[] = "/tmp/rnc_inf_reader_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(rnc_st_write(path, t, 4, meta, 2, &err), RNC_OK);
    FILE *f = fopen(path, "rb");
    uint8_t orig[4096];
    size_t n0 = fread(orig, 1, sizeof orig, f);
    fclose(f);
    unlink(path);
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--)
        header = header << 8 | orig[i];
    ck_assert_int_eq(both(orig, n0, "the file as written"), 1);
    const char *env = getenv("RNC_FUZZ_CASES");
    long cases = env ? atol(env) : 30000;
    state = 99;
    int accepted = 0;
    uint8_t b[8192];
    for (long c = 0; c < cases; c++) {
        memcpy(b, orig, n0);
        size_t n = n0, h = (size_t)header;
        for (int e = 0, edits = 1 + (int)(rnd() % 3); e < edits; e++) {
            size_t at = 8 + rnd() % h;
            switch (rnd() % 5) {
            case 0:
                b[at] ^= (uint8_t)(1u << (rnd() % 8));
                break;
            case 1: {   /* a token in place of some bytes (the length stays) */
                const char *tk = tokens[rnd() % (sizeof tokens / sizeof tokens[0])];
                size_t len = strlen(tk), cut = rnd() % 4;
                if (at + cut > n || n + len > sizeof b)
                    break;
                memmove(b + at + len, b + at + cut, n - at - cut);
                memcpy(b + at, tk, len);
                n = n + len - cut;
                h = h + len - cut;
                for (int i = 0; i < 8; i++)
                    b[i] = (uint8_t)((uint64_t)h >> (8 * i));
                break;
            }
            case 2:   /* a digit changed */
                for (int tries = 0; tries < 16; tries++, at = 8 + rnd() % h)
                    if (b[at] >= '0' && b[at] <= '9') {
                        b[at] = (uint8_t)('0' + rnd() % 10);
                        break;
                    }
                break;
            case 3:   /* a run deleted */
                if (at + 3 <= 8 + h) {
                    size_t len = 1 + rnd() % 3;
                    memmove(b + at, b + at + len, n - at - len);
                    n -= len;
                    h -= len;
                    for (int i = 0; i < 8; i++)
                        b[i] = (uint8_t)((uint64_t)h >> (8 * i));
                }
                break;
            default:   /* trailing data bytes added or cut */
                n = rnd() % 2 && n + 4 <= sizeof b ? n + 4 : n > 8 + h ? n - 1 : n;
            }
        }
        char what[64];
        snprintf(what, sizeof what, "mutation %ld", c);
        accepted += both(b, n, what);
    }
    ck_assert_int_gt(accepted, cases / 50);
    ck_assert_int_lt(accepted, cases / 2);
}
END_TEST

/* The layouts and the fold, as the runtime's. */
START_TEST(layouts_and_fold) {
    int cs[4] = {2, 3, 4, 5};
    float src[120], torch[120], back1[120], back2[120];
    for (int i = 0; i < 120; i++)
        src[i] = (float)i * 0.5f;
    rnc_to_torch_layout(4, cs, src, torch);
    rnc_from_torch_layout(4, cs, torch, back1);
    rnc_inf_from_torch(4, cs, torch, back2);
    ck_assert_int_eq(memcmp(back1, back2, sizeof back1), 0);
    int fs[2] = {6, 7};
    rnc_to_torch_layout(2, fs, src, torch);
    rnc_inf_from_torch(2, fs, torch, back2);
    ck_assert_int_eq(memcmp(src, back2, 42 * sizeof(float)), 0);
    /* fold: conv(x, w) then BN == conv(x, w * s) + bias, on one pixel */
    float w[2 * 3], bias[3], g[3] = {1.5f, -0.5f, 2}, be[3] = {0.1f, 0.2f, -0.3f}, mu[3] = {0.4f, -1, 0}, var[3] = {4, 0.25f, 1};
    float x[2] = {0.7f, -1.3f};
    for (int i = 0; i < 6; i++)
        w[i] = (float)(i - 2);
    float ref[3];
    for (int oc = 0; oc < 3; oc++) {
        double y = x[0] * w[oc] + x[1] * w[3 + oc];
        ref[oc] = (float)((y - mu[oc]) / sqrt(var[oc] + 1e-5) * g[oc] + be[oc]);
    }
    rnc_inf_fold(w, 2, 3, bias, g, be, mu, var, 1e-5);
    for (int oc = 0; oc < 3; oc++)
        ck_assert_float_eq_tol(x[0] * w[oc] + x[1] * w[3 + oc] + bias[oc], ref[oc], 1e-5);
}
END_TEST

int main(void) {
    Suite *s = suite_create("infer_reader");
    TCase *tc = tcase_create("reader");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, same_verdicts);
    tcase_add_test(tc, fuzz_same_verdicts);
    tcase_add_test(tc, layouts_and_fold);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
