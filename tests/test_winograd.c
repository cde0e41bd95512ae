/* test_winograd.c - the Winograd F(4x4, 3x3) kernels of rnc/kernels.h against
 * a plain double-precision convolution.
 *
 * Generated networks run every 3x3 stride-1 convolution through these
 * kernels (compiler/kernels.c, emit_conv_winograd): the weights are
 * transformed by rnc_wg_weights, and blocks of whole tile rows go through
 * rnc_wg_block, forward (x -> y, optionally with per-row BN sums) and for the
 * data gradient (dy -> dx, flipped and transposed weights, pad 2 - P,
 * optionally added to dx).  The golden tests only see the few shapes of
 * their tiny networks, so this test drives the kernels directly, the way
 * the generated code calls them, over shapes chosen for their edges: sizes
 * that are and are not multiples of the 4x4 tile (down to 1x1), pads 0-2,
 * unequal channel counts, blocks whose last one is short, register tiles
 * that leave a remainder (or are wider than the whole block), every legal
 * number of channel vectors per register tile, statistics on and off and
 * accumulation into nonzero contents.  Each case runs its blocks in
 * ascending and then descending order with one dirty scratch buffer, into
 * outputs prefilled with NaN, so a block that writes outside its rows,
 * leaves an output unwritten or depends on scratch state from another block
 * fails.  Winograd's float rounding stays well under the tolerance (1e-4
 * of the output's largest magnitude); any indexing or transform error is
 * O(1).  The three transforms are also checked on their own against the
 * matrices of Lavin & Gray that the header names.
 *
 * The kernels are compiled with RNC_NET_CFLAGS, as generated networks are. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rnc/kernels.h"

/* Lavin & Gray's F(4x4, 3x3) matrices: y = A^T [(G g G^T) . (B^T d B)] A */
static const double G[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                               {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                               {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
static const double BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const double AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

static uint64_t rng;

static double uniform(void) {   /* xorshift64*: deterministic, no libc state */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return ((rng * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}

static void seed(int i) { rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(i + 1) * 0xbf58476d1ce4e5b9ull); }

/* Rounded up to 64 bytes for aligned_alloc; the block tests' buffers are all
 * multiples of 16 floats, so ASan sees their exact ends. */
static float *alloc_floats(size_t n) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void fill_uniform(float *p, size_t n, double scale) {
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(scale * (2 * uniform() - 1));
}

static void fill_nan(float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
}

/* ---- the transforms on their own ----------------------------------------- */

/* rnc_wg_weights against G g G^T in double, for both the forward layout and
 * the flipped, transposed one of the data gradient.  A and B need not be
 * multiples of 16 here: the weight transform is scalar code. */
START_TEST(weights_are_g_g_gt) {
    enum { A = 3, B = 5 };
    seed(1000);
    float *w = alloc_floats(9 * A * B), *u = alloc_floats(36 * A * B);
    fill_uniform(w, 9 * A * B, 1);
    for (int flip = 0; flip < 2; flip++) {
        fill_nan(u, 36 * A * B);
        for (int a = 0; a < A; a++)
            rnc_wg_weights(w, u, a, A, B, flip);
        for (int a = 0; a < A; a++)
            for (int b = 0; b < B; b++) {
                double g[3][3];
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++)   /* forward w[kh][kw][A][B], flipped w[kh][kw][B][A] */
                        g[kh][kw] = flip ? w[((2 - kh) * 3 + 2 - kw) * B * A + b * A + a]
                                         : w[(kh * 3 + kw) * A * B + a * B + b];
                for (int i = 0; i < 6; i++)
                    for (int j = 0; j < 6; j++) {
                        double e = 0;
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++)
                                e += G[i][kh] * g[kh][kw] * G[j][kw];
                        const float got = u[((i * 6 + j) * A + a) * B + b];
                        ck_assert_msg(fabs(got - e) <= 1e-6 * (1 + fabs(e)),
                                      "flip %d: u[%d][%d][%d][%d] = %.8g, G g G^T = %.8g", flip, i, j, a, b, got, e);
                    }
            }
    }
    /* a delta at one tap of one channel pair lands only in that pair */
    memset(w, 0, sizeof(float) * 9 * A * B);
    w[(0 * 3 + 2) * A * B + 1 * B + 4] = 1;   /* kh 0, kw 2, a 1, b 4 */
    for (int a = 0; a < A; a++)
        rnc_wg_weights(w, u, a, A, B, 0);
    for (int xi = 0; xi < 36; xi++)
        for (int a = 0; a < A; a++)
            for (int b = 0; b < B; b++) {
                const double e = a == 1 && b == 4 ? G[xi / 6][0] * G[xi % 6][2] : 0;
                ck_assert_msg(fabs(u[(xi * A + a) * B + b] - e) <= 1e-7, "delta: u[%d][%d][%d] = %.8g, want %.8g", xi,
                              a, b, u[(xi * A + a) * B + b], e);
            }
    free(w);
    free(u);
}
END_TEST

/* rnc_wg_input_tile: B^T d B of the zero-padded 6x6 window at (4th - P,
 * 4tw - P), into slot t of v[36][TB][C] and nowhere else, for a window wholly
 * inside (the unchecked path), across every edge and past the bottom-right
 * corner. */
START_TEST(input_tile_is_bt_d_b) {
    enum { N = 2, H = 7, W = 8, C = 32, TB = 3, T = 1 };
    /* n, th, tw, P; (0, 1, 1, 2) is inside but for its last row */
    static const int tiles[][4] = {{0, 0, 0, 0}, {1, 0, 0, 1}, {0, 1, 1, 2}, {1, 1, 0, 1},
                                   {0, 0, 1, 2}, {1, 1, 1, 0}, {1, 1, 1, 1}, {0, 0, 0, 1}};
    seed(1001);
    float *x = alloc_floats((size_t)N * H * W * C), *v = alloc_floats(36 * TB * C);
    fill_uniform(x, (size_t)N * H * W * C, 1);
    for (size_t k = 0; k < sizeof tiles / sizeof tiles[0]; k++) {
        const int n = tiles[k][0], th = tiles[k][1], tw = tiles[k][2], P = tiles[k][3];
        for (int i = 0; i < 36 * TB * C; i++)
            v[i] = 12345;
        rnc_wg_input_tile(x, v, T, n, th, tw, H, W, C, P, TB);
        for (int xi = 0; xi < 36; xi++)
            for (int t = 0; t < TB; t++)
                for (int c = 0; c < C; c++) {
                    const float got = v[(xi * TB + t) * C + c];
                    if (t != T) {
                        ck_assert_msg(got == 12345, "tile %zu wrote slot %d", k, t);
                        continue;
                    }
                    double e = 0, ea = 0;   /* the value and the sum of its terms' magnitudes */
                    for (int a = 0; a < 6; a++)
                        for (int b = 0; b < 6; b++) {
                            const int ih = th * 4 - P + a, iw = tw * 4 - P + b;
                            if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                                const double term =
                                    BT[xi / 6][a] * x[(((long)n * H + ih) * W + iw) * C + c] * BT[xi % 6][b];
                                e += term, ea += fabs(term);
                            }
                        }
                    ck_assert_msg(fabs(got - e) <= 1e-6 * ea + 1e-12,
                                  "tile %zu (n %d th %d tw %d P %d): V[%d][%d] = %.8g, want %.8g", k, n, th, tw, P, xi,
                                  c, got, e);
                }
    }
    free(x);
    free(v);
}
END_TEST

/* rnc_wg_output_tile: A^T m A clipped to the output, written or added, and
 * with stats the sums of what it stored added into stats; nothing outside
 * the tile's pixels changes. */
START_TEST(output_tile_is_at_m_a) {
    enum { N = 2, OH = 6, OW = 7, OC = 32, TB = 4, T = 2 };
    static const int tiles[][4] = {{0, 0, 0, 0}, {1, 0, 1, 1}, {0, 1, 0, 0}, {1, 1, 1, 1}, {1, 1, 1, 0}};
    const long ny = (long)N * OH * OW * OC;
    seed(1002);
    float *m = alloc_floats(36 * TB * OC), *y = alloc_floats(ny), *before = alloc_floats(ny),
          *stats = alloc_floats(2 * OC), *stats0 = alloc_floats(2 * OC);
    fill_uniform(m, 36 * TB * OC, 1);
    for (size_t k = 0; k < sizeof tiles / sizeof tiles[0]; k++) {
        const int n = tiles[k][0], th = tiles[k][1], tw = tiles[k][2], acc = tiles[k][3];
        fill_uniform(before, ny, 1);
        memcpy(y, before, sizeof(float) * ny);
        fill_uniform(stats0, 2 * OC, 1);
        memcpy(stats, stats0, sizeof(float) * 2 * OC);
        rnc_wg_output_tile(m, y, stats, T, n, th, tw, OH, OW, OC, TB, acc);
        double s[OC] = {0}, q[OC] = {0};
        for (int nn = 0; nn < N; nn++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++)
                    for (int c = 0; c < OC; c++) {
                        const long at = (((long)nn * OH + oh) * OW + ow) * OC + c;
                        const int i = oh - th * 4, j = ow - tw * 4;
                        if (nn != n || i < 0 || i > 3 || j < 0 || j > 3) {
                            ck_assert_msg(y[at] == before[at], "tile %zu changed y[%d][%d][%d][%d]", k, nn, oh, ow, c);
                            continue;
                        }
                        double e = acc ? before[at] : 0, ea = fabs(e);
                        for (int a = 0; a < 6; a++)
                            for (int b = 0; b < 6; b++) {
                                const double term = AT[i][a] * m[((a * 6 + b) * TB + T) * OC + c] * AT[j][b];
                                e += term, ea += fabs(term);
                            }
                        ck_assert_msg(fabs(y[at] - e) <= 1e-6 * ea + 1e-12,
                                      "tile %zu: y[%d][%d][%d][%d] = %.8g, want %.8g", k, nn, oh, ow, c, y[at], e);
                        s[c] += y[at];
                        q[c] += (double)y[at] * y[at];
                    }
        for (int c = 0; c < OC; c++) {
            ck_assert_msg(fabs(stats[c] - (stats0[c] + s[c])) <= 1e-5 * (1 + fabs(s[c])),
                          "tile %zu: sum[%d] %.8g, want %.8g", k, c, stats[c], stats0[c] + s[c]);
            ck_assert_msg(fabs(stats[OC + c] - (stats0[OC + c] + q[c])) <= 1e-5 * (1 + q[c]),
                          "tile %zu: sumsq[%d] %.8g, want %.8g", k, c, stats[OC + c], stats0[OC + c] + q[c]);
        }
    }
    free(m);
    free(y);
    free(before);
    free(stats);
    free(stats0);
}
END_TEST

/* ---- whole blocks against a direct convolution ---------------------------- */

/* A forward convolution x[n][h][w][ic] * w[3][3][ic][oc], pad p, stride 1,
 * and how to run it: rows of tiles per block, tiles x vectors per register
 * tile, BN statistics, accumulation, and whether to run the data gradient
 * (dy[n][oh][ow][oc] -> dx[n][h][w][ic]) instead of the forward pass. */
typedef struct {
    int n, h, w, ic, oc, p;
    int rb, tw, cv;
    int stats, acc, dgrad;
} Case;

static const Case cases[] = {
    /* forward */
    {2, 5, 7, 16, 32, 1, 3, 5, 2, 1, 0, 0},     /* 5x7: 2 tile rows x 2; blocks 3+1; TB 6 = 5 + 1 */
    {1, 8, 8, 32, 16, 1, 1, 1, 1, 1, 0, 0},     /* exact multiple of 4; one-tile register tiles */
    {3, 6, 6, 48, 48, 0, 2, 3, 3, 1, 0, 0},     /* pad 0: 4x4 out; blocks 2+1; TW 3 > TB 2; CV 3 */
    {2, 9, 9, 16, 64, 2, 2, 4, 4, 1, 0, 0},     /* pad 2: 11x11 out; TB 6 = 4 + 2; CV 4 */
    {1, 1, 1, 16, 16, 1, 1, 1, 1, 1, 0, 0},     /* 1x1 */
    {2, 2, 3, 32, 48, 2, 3, 2, 3, 0, 0, 0},     /* 2x3 pad 2: 4x5 out; one block, short (2 of 3 rows) */
    {1, 4, 4, 64, 32, 1, 1, 1, 2, 0, 1, 0},     /* accumulate into y */
    {3, 7, 5, 16, 16, 0, 4, 28, 1, 1, 0, 0},    /* pad 0: 5x3 out; blocks 4+2; widest TW */
    {3, 13, 13, 16, 32, 1, 5, 14, 2, 1, 0, 0},  /* 12 tile rows: blocks 5+5+2; TB 20 = 14 + 6; TW*CV 28 */
    {1, 3, 3, 16, 16, 0, 1, 1, 1, 1, 0, 0},     /* pad 0: 1x1 out */
    {2, 6, 6, 48, 16, 1, 1, 3, 1, 1, 0, 0},     /* 6x6 pad 1: the second tile row is 2 rows high */
    {1, 8, 10, 16, 16, 1, 2, 3, 1, 1, 0, 0},    /* windows inside but for their last row (ih0 + 5 = H) */
    {1, 32, 32, 16, 32, 1, 3, 10, 2, 1, 0, 0},  /* CIFAR's first stage: blocks 3+3+2; TB 24 = 2*10 + 4 */
    /* data gradient: dy (OH x OW x OC) -> dx (H x W x IC), pad 2 - P */
    {2, 5, 7, 32, 16, 1, 3, 5, 2, 0, 0, 1},     /* dx 5x7; blocks 3+1; TB 6 = 5 + 1 */
    {1, 6, 6, 48, 64, 0, 1, 3, 3, 0, 1, 1},     /* P 0: dy 4x4 -> dx 6x6 (pad 2); accumulated */
    {3, 9, 9, 64, 16, 2, 2, 4, 4, 0, 1, 1},     /* P 2: dy 11x11 -> dx 9x9 (pad 0); blocks 2+..+1 */
    {1, 2, 3, 16, 32, 1, 1, 1, 1, 0, 0, 1},     /* dx 2x3 */
    {2, 1, 1, 16, 48, 2, 1, 1, 1, 0, 1, 1},     /* P 2: dy 3x3 -> dx 1x1 */
    {2, 12, 12, 32, 32, 1, 4, 7, 2, 0, 0, 1},   /* dx 12x12: blocks 4+2; TB 12 = 7 + 5; ih0 + 5 = H again */
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* The shape rnc_wg_block sees: its input, output and pad. */
typedef struct {
    int h, w, ic, oh, ow, oc, p, th, tws, tb, blocks;
} BlockShape;

static BlockShape block_shape(const Case *c) {
    const int oh = c->h + 2 * c->p - 2, ow = c->w + 2 * c->p - 2;
    BlockShape s = c->dgrad ? (BlockShape){oh, ow, c->oc, c->h, c->w, c->ic, 2 - c->p, 0, 0, 0, 0}
                            : (BlockShape){c->h, c->w, c->ic, oh, ow, c->oc, c->p, 0, 0, 0, 0};
    s.th = (s.oh + 3) / 4;
    s.tws = (s.ow + 3) / 4;
    s.tb = c->rb * s.tws;
    s.blocks = (c->n * s.th + c->rb - 1) / c->rb;
    return s;
}

/* The direct convolution in double: forward, or the transposed convolution
 *   dx[n][ih][iw][ic] = sum of dy[n][oh][ow][oc] * w[kh][kw][ic][oc], ih = oh - P + kh, iw = ow - P + kw. */
static void reference(const Case *c, const float *in, const float *w, double *out) {
    const int H = c->h, W = c->w, IC = c->ic, OC = c->oc, P = c->p, OH = H + 2 * P - 2, OW = W + 2 * P - 2;
    if (!c->dgrad) {
        for (int n = 0; n < c->n; n++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++)
                    for (int oc = 0; oc < OC; oc++) {
                        double s = 0;
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++) {
                                const int ih = oh - P + kh, iw = ow - P + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                for (int ic = 0; ic < IC; ic++)
                                    s += (double)in[(((long)n * H + ih) * W + iw) * IC + ic] *
                                         w[((kh * 3 + kw) * IC + ic) * OC + oc];
                            }
                        out[(((long)n * OH + oh) * OW + ow) * OC + oc] = s;
                    }
        return;
    }
    for (long i = 0; i < (long)c->n * H * W * IC; i++)
        out[i] = 0;
    for (int n = 0; n < c->n; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++) {
                        const int ih = oh - P + kh, iw = ow - P + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                            continue;
                        const float *d = in + (((long)n * OH + oh) * OW + ow) * OC;
                        for (int ic = 0; ic < IC; ic++) {
                            double s = 0;
                            for (int oc = 0; oc < OC; oc++)
                                s += (double)d[oc] * w[((kh * 3 + kw) * IC + ic) * OC + oc];
                            out[(((long)n * H + ih) * W + iw) * IC + ic] += s;
                        }
                    }
}

/* Per-row sums against the output the kernel wrote: summed over each row of
 * tiles (a tile row's sums may sit in any of its four rows) and in total. */
static void check_stats(int ci, const BlockShape *s, const float *y, const float *partial, int pass) {
    const Case *c = &cases[ci];
    const int OC = s->oc;
    ck_assert_int_le(OC, 64);
    double tot_s[64] = {0}, tot_a[64] = {0}, tot_p[64] = {0};
    for (int n = 0; n < c->n; n++)
        for (int th = 0; th < s->th; th++)
            for (int oc = 0; oc < OC; oc++) {
                double sum = 0, mag = 0, sq = 0, psum = 0, psq = 0;
                for (int oh = th * 4; oh < th * 4 + 4 && oh < s->oh; oh++) {
                    const long row = (long)n * s->oh + oh;
                    psum += partial[row * 2 * OC + oc];
                    psq += partial[row * 2 * OC + OC + oc];
                    for (int ow = 0; ow < s->ow; ow++) {
                        const double v = y[(row * s->ow + ow) * OC + oc];
                        sum += v, mag += fabs(v), sq += v * v;
                    }
                }
                ck_assert_msg(fabs(psum - sum) <= 1e-5 * (mag + 1e-3),
                              "case %d pass %d: n %d rows %d-%d channel %d: partial sum %.8g, output sums to %.8g",
                              ci, pass, n, th * 4, th * 4 + 3, oc, psum, sum);
                ck_assert_msg(fabs(psq - sq) <= 1e-5 * (sq + 1e-3),
                              "case %d pass %d: n %d rows %d-%d channel %d: partial sum of squares %.8g, want %.8g",
                              ci, pass, n, th * 4, th * 4 + 3, oc, psq, sq);
                tot_s[oc] += sum, tot_a[oc] += mag, tot_p[oc] += psum;
            }
    for (int oc = 0; oc < OC; oc++)
        ck_assert_msg(fabs(tot_p[oc] - tot_s[oc]) <= 1e-5 * (tot_a[oc] + 1e-3),
                      "case %d pass %d: channel %d: partial sums total %.8g, output total %.8g", ci, pass,
                      oc, tot_p[oc], tot_s[oc]);
}

/* One case: the weights transformed as generated code does, then every block,
 * in ascending order and again in descending order, against the reference. */
START_TEST(blocks_match_direct_convolution) {
    const int ci = _i;
    const Case *c = &cases[ci];
    const BlockShape s = block_shape(c);
    /* the kernels' preconditions */
    ck_assert(s.ic % RNC_VL == 0 && s.oc % RNC_VL == 0);
    ck_assert(c->cv >= 1 && c->cv <= RNC_MAX_CV && (s.oc / RNC_VL) % c->cv == 0);
    ck_assert(c->tw >= 1 && c->tw <= RNC_MAX_TW && c->tw * c->cv <= 28);
    ck_assert(s.oh >= 1 && s.ow >= 1 && c->p >= 0 && c->p <= 2);
    ck_assert(!(c->stats && c->dgrad));

    seed(ci);
    const long nin = (long)c->n * s.h * s.w * s.ic, nout = (long)c->n * s.oh * s.ow * s.oc;
    const long nw = 9L * c->ic * c->oc, nu = 36L * s.ic * s.oc;
    const long nv = 36L * s.tb * s.ic, nm = 36L * s.tb * s.oc, np = (long)c->n * s.oh * 2 * s.oc;
    float *in = alloc_floats(nin), *w = alloc_floats(nw), *u = alloc_floats(nu), *out = alloc_floats(nout);
    float *prior = alloc_floats(nout), *v = alloc_floats(nv), *m = alloc_floats(nm);
    float *partial = c->stats ? alloc_floats(np) : NULL;
    double *want = malloc(sizeof(double) * nout);
    ck_assert_ptr_nonnull(want);
    fill_uniform(in, nin, 1);
    fill_uniform(w, nw, 1 / sqrt(9.0 * s.ic));   /* outputs of order one */
    fill_uniform(prior, nout, 1);
    reference(c, in, w, want);
    double big = 0;
    for (long i = 0; i < nout; i++) {
        if (c->acc)
            want[i] += prior[i];
        big = fmax(big, fabs(want[i]));
    }
    ck_assert(big > 1e-3);   /* not degenerate: a zero output would check nothing */
    const double tol = 1e-4 * big;

    fill_nan(u, nu);
    for (int a = 0; a < s.ic; a++)
        rnc_wg_weights(w, u, a, s.ic, s.oc, c->dgrad);
    fill_nan(v, nv);
    fill_nan(m, nm);
    for (int pass = 0; pass < 2; pass++) {
        if (c->acc)
            memcpy(out, prior, sizeof(float) * nout);
        else
            fill_nan(out, nout);
        if (partial)
            fill_nan(partial, np);
        for (int k = 0; k < s.blocks; k++) {
            const int b = pass ? s.blocks - 1 - k : k;
            rnc_wg_block(in, u, out, partial, v, m, b, c->n, s.h, s.w, s.ic, s.oh, s.ow, s.oc, s.p, c->rb, c->tw,
                         c->cv, c->acc);
        }
        long worst = 0;
        double err = 0;
        for (long i = 0; i < nout; i++) {
            const double e = fabs(out[i] - want[i]);
            if (!(e <= err)) {   /* NaN (an unwritten output) counts as worst */
                err = isnan(e) ? INFINITY : e;
                worst = i;
            }
        }
        const int oc = (int)(worst % s.oc), ow = (int)(worst / s.oc % s.ow), oh = (int)(worst / s.oc / s.ow % s.oh),
                  n = (int)(worst / s.oc / s.ow / s.oh);
        if (getenv("WINOGRAD_VERBOSE"))
            printf("case %2d pass %d: largest error %.3g of the largest output %.3g\n", ci, pass, err / big, big);
        ck_assert_msg(err <= tol,
                      "case %d (%s N %d %dx%d IC %d OC %d P %d RB %d TW %d CV %d%s%s) pass %d: "
                      "out[%d][%d][%d][%d] = %.8g, want %.8g (tolerance %.3g)",
                      ci, c->dgrad ? "data gradient" : "forward", c->n, c->h, c->w, c->ic, c->oc, c->p, c->rb, c->tw,
                      c->cv, c->stats ? " stats" : "", c->acc ? " accumulate" : "", pass, n, oh, ow, oc, out[worst],
                      want[worst], tol);
        if (partial)
            check_stats(ci, &s, out, partial, pass);
    }
    free(in);
    free(w);
    free(u);
    free(out);
    free(prior);
    free(v);
    free(m);
    free(partial);
    free(want);
}
END_TEST

/* The table above keeps covering the edges it is meant to (so that editing
 * it cannot quietly drop one). */
START_TEST(cases_cover_the_edges) {
    int pads[2][3] = {{0}}, cvs[5] = {0}, ns[4] = {0};
    int short_block = 0, tw_rest = 0, tw_wide = 0, ragged = 0, exact = 0, stats[2] = {0}, acc[2] = {0}, unequal = 0;
    for (int i = 0; i < NCASES; i++) {
        const Case *c = &cases[i];
        const BlockShape s = block_shape(c);
        pads[c->dgrad][c->p]++;
        cvs[c->cv]++;
        ns[c->n]++;
        short_block += (c->n * s.th) % c->rb != 0;
        tw_rest += s.tb > c->tw && s.tb % c->tw != 0;
        tw_wide += c->tw > s.tb;
        ragged += s.oh % 4 != 0 && s.ow % 4 != 0;
        exact += s.oh % 4 == 0 && s.ow % 4 == 0;
        stats[c->stats]++;
        acc[c->dgrad] += c->acc;
        unequal += c->ic != c->oc;
    }
    for (int d = 0; d < 2; d++)
        for (int p = 0; p < 3; p++)
            ck_assert_msg(pads[d][p] > 0, "no %s case with pad %d", d ? "data-gradient" : "forward", p);
    for (int cv = 1; cv <= 4; cv++)
        ck_assert_msg(cvs[cv] > 0, "no case with CV %d", cv);
    for (int n = 1; n <= 3; n++)
        ck_assert_msg(ns[n] > 0, "no case with N %d", n);
    ck_assert(short_block && tw_rest && tw_wide && ragged && exact && stats[0] && stats[1] && acc[0] && acc[1] &&
              unequal);
}
END_TEST

int main(void) {
    Suite *s = suite_create("winograd");
    TCase *tc = tcase_create("transforms");
    tcase_add_test(tc, weights_are_g_g_gt);
    tcase_add_test(tc, input_tile_is_bt_d_b);
    tcase_add_test(tc, output_tile_is_at_m_a);
    suite_add_tcase(s, tc);
    tc = tcase_create("blocks");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, blocks_match_direct_convolution, 0, NCASES);
    tcase_add_test(tc, cases_cover_the_edges);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
