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
 * (Last, the direct data gradient's blocked weight transpose.)
 *
 * The weight gradient (emit_conv_wgrad_winograd) is checked the same way
 * against a direct sum of x * dy: rnc_wg_wgrad_items over the item ranges
 * of 1 to 7 threads, run one after another in any order on one dirty
 * scratch (the design says the threads' parts of dU are disjoint, so every
 * schedule must give the same bits), each item alone (it writes its own
 * part of dU and nothing else), real OpenMP threads, and functions built as
 * generated code builds them (constant shapes, OpenMP region); dy is also
 * zero but for the cut tiles at the bottom edge.  Its pieces (rows of B^T d B
 * and A dY A^T, the register-tile product, G^T dU G) are checked on their own.
 *
 * The kernels are compiled with RNC_NET_CFLAGS, as generated networks are. */
#define _GNU_SOURCE  /* testutil.h: mkdtemp, nftw */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rnc/kernels.h"
#include "testutil.h"

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
 * the flipped, transposed one of the data gradient.  B = 37 covers both
 * whole vectors of b and a partial one. */
START_TEST(weights_are_g_g_gt) {
    enum { A = 3, B = 37 };
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

/* Input windows for the input-transform tests, as (n, th, tw, P) on an
 * N=2, H=7, W=8 input: one wholly inside (the unchecked path), every edge,
 * past the bottom-right corner; (0, 1, 1, 2) is inside but for its last row. */
static const int INPUT_TILES[8][4] = {{0, 0, 0, 0}, {1, 0, 0, 1}, {0, 1, 1, 2}, {1, 1, 0, 1},
                                      {0, 0, 1, 2}, {1, 1, 1, 0}, {1, 1, 1, 1}, {0, 0, 0, 1}};

/* (B^T d B)[i][j] for channel c of x (NHWC, H x W x C), d the zero-padded
 * 6x6 window at (4th - P, 4tw - P); *mag gets the sum of its terms'
 * magnitudes (the scale of its rounding error). */
static double bt_d_b(const float *x, int i, int j, int n, int th, int tw, int P, int c, int H, int W, int C,
                     double *mag) {
    double e = 0, ea = 0;
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 6; b++) {
            const int ih = th * 4 - P + a, iw = tw * 4 - P + b;
            if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                const double term = BT[i][a] * x[(((long)n * H + ih) * W + iw) * C + c] * BT[j][b];
                e += term, ea += fabs(term);
            }
        }
    *mag = ea;
    return e;
}

/* rnc_wg_input_tile: B^T d B of the zero-padded 6x6 window at (4th - P,
 * 4tw - P), into slot t of v[36][TB][C] and nowhere else, for a window wholly
 * inside (the unchecked path), across every edge and past the bottom-right
 * corner. */
START_TEST(input_tile_is_bt_d_b) {
    enum { N = 2, H = 7, W = 8, C = 32, TB = 3, T = 1 };
    seed(1001);
    float *x = alloc_floats((size_t)N * H * W * C), *v = alloc_floats(36 * TB * C);
    fill_uniform(x, (size_t)N * H * W * C, 1);
    for (size_t k = 0; k < sizeof INPUT_TILES / sizeof INPUT_TILES[0]; k++) {
        const int n = INPUT_TILES[k][0], th = INPUT_TILES[k][1], tw = INPUT_TILES[k][2], P = INPUT_TILES[k][3];
        for (int i = 0; i < 36 * TB * C; i++)
            v[i] = 12345;
        rnc_wg_input_tile(x, RNC_F32, v, T, n, th, tw, H, W, C, P, TB);
        for (int xi = 0; xi < 36; xi++)
            for (int t = 0; t < TB; t++)
                for (int c = 0; c < C; c++) {
                    const float got = v[(xi * TB + t) * C + c];
                    if (t != T) {
                        ck_assert_msg(got == 12345, "tile %zu wrote slot %d", k, t);
                        continue;
                    }
                    double ea;
                    const double e = bt_d_b(x, xi / 6, xi % 6, n, th, tw, P, c, H, W, C, &ea);
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
        rnc_wg_output_tile(m, y, RNC_F32, stats, T, n, th, tw, OH, OW, OC, TB, acc);
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
 * in ascending order, in descending order, and shared by a team of threads
 * (rnc_wg_block_shared), against the reference. */
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
    for (int pass = 0; pass < 3; pass++) {
        if (c->acc)
            memcpy(out, prior, sizeof(float) * nout);
        else
            fill_nan(out, nout);
        if (partial)
            fill_nan(partial, np);
        if (pass == 2) {   /* every block by a team of three threads together */
#pragma omp parallel num_threads(3)
            for (int b = 0; b < s.blocks; b++)
                rnc_wg_block_shared(in, RNC_F32, u, out, RNC_F32, partial, v, m, b, c->n, s.h, s.w, s.ic, s.oh, s.ow, s.oc, s.p, c->rb,
                                    c->tw, c->cv, c->acc);
        } else {
            for (int k = 0; k < s.blocks; k++) {
                const int b = pass ? s.blocks - 1 - k : k;
                rnc_wg_block(in, RNC_F32, u, out, RNC_F32, partial, v, m, b, c->n, s.h, s.w, s.ic, s.oh, s.ow, s.oc, s.p, c->rb, c->tw,
                             c->cv, c->acc);
            }
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

/* ---- the weight gradient -------------------------------------------------- */

/* (Check writes a location record on every passing ck_assert, so the loops
 * over millions of elements below test first and call ck_abort_msg.) */

/* A 3x3 stride-1 convolution x (N,H,W,IC) -> y (N,OH,OW,OC), pad p, and the
 * schedule of its Winograd weight gradient: tiles per block, input channels
 * and output-channel vectors per register tile.  dy is random everywhere or
 * zero but for a region at the bottom edge, where the 4x4 tiles are cut. */
enum { DY_ALL, DY_LAST_ROW, DY_CORNER };   /* the last (partial) tile row; the last pixel */

typedef struct {
    int n, h, w, ic, oc, p;
    int tb, icb, cv;
    int dy;
} WCase;

static const WCase wcases[] = {
    {2, 5, 7, 16, 32, 1, 3, 4, 2, DY_ALL},        /* 5x7 out: 2x2 tiles, 8 tiles in blocks 3+3+2 */
    {1, 6, 6, 32, 16, 0, 8, 8, 1, DY_ALL},        /* pad 0: 4x4 out, one tile; TB 8 > 1 tile */
    {2, 9, 9, 48, 48, 2, 7, 3, 3, DY_ALL},        /* pad 2: 11x11 out, 18 tiles 7+7+4; ICB 3, CV 3 */
    {3, 1, 1, 16, 64, 1, 2, 4, 4, DY_ALL},        /* 1x1: 3 tiles 2+1; CV 4 */
    {1, 1, 1, 32, 16, 2, 1, 16, 1, DY_ALL},       /* 1x1 pad 2: 3x3 out; TB 1; ICB 16 */
    {2, 8, 8, 64, 32, 1, 5, 16, 1, DY_ALL},       /* exact 8x8: 8 tiles 5+3; 12 items */
    {2, 32, 32, 16, 32, 1, 24, 8, 2, DY_ALL},     /* CIFAR's first stage: 128 tiles, 5 x 24 + 8 */
    {2, 12, 12, 32, 64, 1, 10, 4, 1, DY_ALL},     /* 12x12: 18 tiles 10+8; 24 items */
    {1, 6, 6, 48, 16, 1, 3, 16, 1, DY_LAST_ROW},  /* 6x6: dy only in rows 4-5; 4 tiles 3+1 */
    {2, 6, 5, 16, 32, 1, 4, 1, 2, DY_LAST_ROW},   /* 6x5: dy only in rows 4-5 of both images; ICB 1 */
    {2, 5, 7, 32, 32, 2, 5, 8, 1, DY_CORNER},     /* 7x9 out: dy only at its last pixel; 12 tiles 5+5+2 */
    {1, 9, 9, 16, 48, 0, 1, 1, 1, DY_ALL},        /* pad 0: 7x7 out, TB 1; 18 items */
    {2, 8, 10, 64, 64, 1, 6, 4, 4, DY_ALL},       /* 8x10: 12 tiles 6+6 */
    {1, 7, 5, 64, 16, 0, 2, 8, 1, DY_ALL},        /* pad 0: 5x3 out, 2 tiles in one block */
    {1, 4, 4, 16, 64, 1, 2, 8, 2, DY_ALL},        /* 4x4: one tile, TB 2; 12 items */
    {3, 3, 10, 48, 32, 2, 9, 3, 2, DY_LAST_ROW},  /* 5x12 out: dy only in row 4; 18 tiles 9+9 */
    {2, 7, 6, 48, 64, 1, 4, 6, 4, DY_ALL},        /* ICB x CV 24, the most the tuner allows */
    {1, 5, 9, 48, 32, 1, 3, 12, 2, DY_CORNER},    /* ICB 12 x CV 2 = 24; 5x9 out, 6 tiles 3+3 */
};
enum { NWCASES = sizeof wcases / sizeof wcases[0] };

typedef struct {
    int oh, ow, th, tws, tiles, ocb, items;
} WShape;

static WShape wshape(const WCase *c) {
    WShape s = {c->h + 2 * c->p - 2, c->w + 2 * c->p - 2, 0, 0, 0, 0, 0};
    s.th = (s.oh + 3) / 4;
    s.tws = (s.ow + 3) / 4;
    s.tiles = c->n * s.th * s.tws;
    s.ocb = c->oc / (c->cv * RNC_VL);
    s.items = 6 * s.ocb;
    return s;
}

/* dy's region of nonzeros: everywhere, the rows of each image's last tile
 * row, or only the last pixel of the last image. */
static int dy_nonzero(const WCase *c, const WShape *s, int n, int oh, int ow) {
    switch (c->dy) {
    case DY_LAST_ROW:
        return oh >= (s->th - 1) * 4;
    case DY_CORNER:
        return n == c->n - 1 && oh == s->oh - 1 && ow == s->ow - 1;
    default:
        return 1;
    }
}

/* dw[kh][kw][ic][oc] = sum over n, oh, ow of x[n][oh - P + kh][ow - P + kw][ic] * dy[n][oh][ow][oc], in double. */
static void wgrad_reference(const WCase *c, const float *x, const float *dy, double *dw) {
    const int H = c->h, W = c->w, IC = c->ic, OC = c->oc, P = c->p, OH = H + 2 * P - 2, OW = W + 2 * P - 2;
    for (long i = 0; i < 9L * IC * OC; i++)
        dw[i] = 0;
    for (int n = 0; n < c->n; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++) {
                        const int ih = oh - P + kh, iw = ow - P + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                            continue;
                        const float *xp = x + (((long)n * H + ih) * W + iw) * IC;
                        const float *d = dy + (((long)n * OH + oh) * OW + ow) * OC;
                        double *out = dw + (long)(kh * 3 + kw) * IC * OC;
                        for (int ic = 0; ic < IC; ic++)
                            for (int oc = 0; oc < OC; oc++)
                                out[(long)ic * OC + oc] += (double)xp[ic] * d[oc];
                    }
}

/* The two kernels as one out-of-line call each, so that every schedule below
 * (one range after another, or real threads) runs the same machine code and
 * can be compared bit for bit. */
static __attribute__((noinline)) void wgrad_items(const WCase *c, const WShape *s, const float *x, const float *dy,
                                                  float *du, float *v, float *g, int first, int last) {
    rnc_wg_wgrad_items(x, RNC_F32, dy, RNC_F32, du, v, g, first, last, c->n, c->h, c->w, c->ic, s->oh, s->ow, c->oc, c->p, c->tb,
                       c->icb, c->cv);
}

static __attribute__((noinline)) void wgrad_out(const float *du, float *dw, int a, int IC, int OC) {
    rnc_wg_wgrad_out(du, dw, a, IC, OC);
}

/* The largest error of dw against the reference, at most 1e-4 of the
 * largest gradient (NaN, an unwritten gradient, counts as the worst). */
static void check_dw(const WCase *c, const char *what, const float *dw, const double *want, double big) {
    const long nw = 9L * c->ic * c->oc;
    const double tol = 1e-4 * big;
    long worst = 0;
    double err = 0;
    for (long i = 0; i < nw; i++) {
        const double e = fabs(dw[i] - want[i]);
        if (!(e <= err)) {
            err = isnan(e) ? INFINITY : e;
            worst = i;
        }
    }
    if (getenv("WINOGRAD_VERBOSE"))
        printf("%s: largest error %.3g of the largest gradient %.3g\n", what, err / big, big);
    const int oc = (int)(worst % c->oc), ic = (int)(worst / c->oc % c->ic), k = (int)(worst / c->oc / c->ic);
    ck_assert_msg(err <= tol,
                  "%s (N %d %dx%d IC %d OC %d P %d TB %d ICB %d CV %d dy %d): "
                  "dw[%d][%d][%d][%d] = %.8g, want %.8g (tolerance %.3g)",
                  what, c->n, c->h, c->w, c->ic, c->oc, c->p, c->tb, c->icb, c->cv, c->dy, k / 3, k % 3, ic, oc,
                  dw[worst], want[worst], tol);
}

/* The first float where two results differ bitwise, or -1. */
static long first_difference(const float *a, const float *b, long n) {
    if (!memcmp(a, b, sizeof(float) * n))
        return -1;
    for (long i = 0;; i++)
        if (memcmp(a + i, b + i, sizeof(float)))
            return i;
}

/* One case, the way generated code runs it: the item ranges of T threads
 * (T = 1, 2, 3, 6, 7; some threads get no item when T > items), each
 * range on the same dirty scratch, in ascending, descending and shuffled
 * order, into du and dw prefilled with NaN; then dw row by row (a) in
 * either order.  T = 1 must match the direct reference, and every other
 * schedule must give T = 1's du and dw bit for bit.  Then each item alone,
 * into a NaN-filled du: it writes exactly one part (a row i of the 6x6
 * points, every input channel, a block of output channels) that no other
 * item writes, and that part is already final.  Then real threads
 * (OpenMP, 2 and 7 of them), bit for bit. */
START_TEST(wgrad_matches_direct_convolution) {
    const int ci = _i;
    const WCase *c = &wcases[ci];
    const WShape s = wshape(c);
    /* the kernels' preconditions */
    ck_assert(c->ic % RNC_VL == 0 && c->oc % RNC_VL == 0);
    ck_assert(c->cv >= 1 && c->cv <= RNC_MAX_CV && (c->oc / RNC_VL) % c->cv == 0);
    ck_assert(c->icb >= 1 && c->icb <= RNC_WG_MAX_ICB && c->ic % c->icb == 0 && c->icb * c->cv <= 24);
    ck_assert(c->tb >= 1 && s.oh >= 1 && s.ow >= 1 && c->p >= 0 && c->p <= 2);

    seed(5000 + ci);
    const long nx = (long)c->n * c->h * c->w * c->ic, ndy = (long)c->n * s.oh * s.ow * c->oc;
    const long nw = 9L * c->ic * c->oc, nu = 36L * c->ic * c->oc;
    const long nv = 6L * c->tb * c->ic, ng = 6L * c->tb * c->cv * RNC_VL;
    float *x = alloc_floats(nx), *dy = alloc_floats(ndy), *du = alloc_floats(nu), *du1 = alloc_floats(nu);
    float *dw = alloc_floats(nw), *dw1 = alloc_floats(nw), *v = alloc_floats(nv), *g = alloc_floats(ng);
    double *want = malloc(sizeof(double) * nw);
    ck_assert_ptr_nonnull(want);
    fill_uniform(x, nx, 1);
    fill_uniform(dy, ndy, 1);
    for (int n = 0; n < c->n; n++)
        for (int oh = 0; oh < s.oh; oh++)
            for (int ow = 0; ow < s.ow; ow++)
                if (!dy_nonzero(c, &s, n, oh, ow))
                    memset(dy + (((long)n * s.oh + oh) * s.ow + ow) * c->oc, 0, sizeof(float) * c->oc);
    wgrad_reference(c, x, dy, want);
    double big = 0;
    for (long i = 0; i < nw; i++)
        big = fmax(big, fabs(want[i]));
    ck_assert(big > 1e-3);   /* not degenerate: a zero gradient would check nothing */
    char what[64];
    snprintf(what, sizeof what, "wgrad case %d, one thread", ci);

    fill_nan(v, nv);   /* from here on the scratch stays dirty */
    fill_nan(g, ng);
    static const int threads[] = {1, 2, 3, 6, 7};
    for (size_t k = 0; k < sizeof threads / sizeof threads[0]; k++) {
        const int T = threads[k];
        for (int order = 0; order < 3; order++) {
            int perm[7];
            for (int t = 0; t < T; t++)
                perm[t] = order == 1 ? T - 1 - t : t;
            if (order == 2)   /* Fisher-Yates */
                for (int t = T - 1; t > 0; t--) {
                    const int r = (int)(uniform() * (t + 1)), tmp = perm[t];
                    perm[t] = perm[r], perm[r] = tmp;
                }
            fill_nan(du, nu);
            fill_nan(dw, nw);
            for (int q = 0; q < T; q++) {
                const int t = perm[q];
                wgrad_items(c, &s, x, dy, du, v, g, t * s.items / T, (t + 1) * s.items / T);
            }
            for (int a = 0; a < c->ic; a++)
                wgrad_out(du, dw, order == 1 ? c->ic - 1 - a : a, c->ic, c->oc);
            if (T == 1 && order == 0) {
                check_dw(c, what, dw, want, big);
                memcpy(du1, du, sizeof(float) * nu);
                memcpy(dw1, dw, sizeof(float) * nw);
                continue;
            }
            const long i = first_difference(du, du1, nu), j = first_difference(dw, dw1, nw);
            ck_assert_msg(i < 0, "wgrad case %d, T %d order %d: du[%ld][%ld][%ld] = %a, with one thread %a", ci, T,
                          order, i / c->ic / c->oc, i / c->oc % c->ic, i % c->oc, du[i < 0 ? 0 : i],
                          du1[i < 0 ? 0 : i]);
            ck_assert_msg(j < 0, "wgrad case %d, T %d order %d: dw[%ld][%ld][%ld] = %a, with one thread %a", ci, T,
                          order, j / c->ic / c->oc, j / c->oc % c->ic, j % c->oc, dw[j < 0 ? 0 : j],
                          dw1[j < 0 ? 0 : j]);
        }
    }

    /* each item on its own writes one row i of the 6x6 points (all six j, every
     * input channel) x one block of CV vectors of output channels of du, which no
     * other item writes, with the values it has when all items run */
    const float nan = NAN;
    enum { MAX_BLOCKS = 64 };   /* output-channel blocks of a case, at any vector width */
    int owner[6][MAX_BLOCKS];
    for (int i = 0; i < 6; i++)
        for (int b = 0; b < MAX_BLOCKS; b++)
            owner[i][b] = -1;
    ck_assert_int_le(c->oc / (c->cv * RNC_VL), MAX_BLOCKS);
    for (int item = 0; item < s.items; item++) {
        fill_nan(du, nu);
        wgrad_items(c, &s, x, dy, du, v, g, item, item + 1);
        long e0 = 0;
        while (e0 < nu && !memcmp(du + e0, &nan, sizeof(float)))
            e0++;
        if (e0 == nu)
            ck_abort_msg("wgrad case %d: item %d alone wrote nothing", ci, item);
        const int i = (int)(e0 / c->ic / c->oc / 6), b = (int)(e0 % c->oc / (c->cv * RNC_VL));
        if (owner[i][b] >= 0)
            ck_abort_msg("wgrad case %d: items %d and %d both write point row %d, channel block %d", ci, owner[i][b],
                         item, i, b);
        owner[i][b] = item;
        for (long e = 0; e < nu; e++) {
            const int xi = (int)(e / c->ic / c->oc), oc = (int)(e % c->oc);
            const int mine = xi / 6 == i && oc / (c->cv * RNC_VL) == b;
            if (memcmp(du + e, mine ? du1 + e : &nan, sizeof(float)))
                ck_abort_msg("wgrad case %d, item %d alone (point row %d, channel block %d): du[%d][%ld][%d] = %a "
                             "(%s)",
                             ci, item, i, b, xi, e / c->oc % c->ic, oc, du[e],
                             mine ? "not its value with all items" : "outside its part");
        }
    }

    /* real threads, each with its own scratch, as in the generated code */
    static const int omp_threads[] = {2, 7};
    for (int k = 0; k < 2; k++) {
        const int T = omp_threads[k];
        float *vs = alloc_floats(nv * T), *gs = alloc_floats(ng * T);
        fill_nan(vs, nv * T);
        fill_nan(gs, ng * T);
        fill_nan(du, nu);
        fill_nan(dw, nw);
#pragma omp parallel num_threads(T)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            wgrad_items(c, &s, x, dy, du, vs + t * nv, gs + t * ng, t * s.items / nt, (t + 1) * s.items / nt);
#pragma omp barrier
#pragma omp for schedule(static)
            for (int a = 0; a < c->ic; a++)
                wgrad_out(du, dw, a, c->ic, c->oc);
        }
        const long i = first_difference(du, du1, nu), j = first_difference(dw, dw1, nw);
        ck_assert_msg(i < 0 && j < 0, "wgrad case %d, %d OpenMP threads: du differs at %ld, dw at %ld", ci, T, i, j);
        free(vs);
        free(gs);
    }
    free(x);
    free(dy);
    free(du);
    free(du1);
    free(dw);
    free(dw1);
    free(v);
    free(g);
    free(want);
}
END_TEST

/* The weight-gradient table keeps covering its edges. */
START_TEST(wcases_cover_the_edges) {
    int pads[3] = {0}, cvs[5] = {0}, icbs[17] = {0}, dys[3] = {0}, ns[4] = {0};
    int short_block = 0, tb_wide = 0, tb_one = 0, ragged = 0, exact = 0, ic_more = 0, oc_more = 0, one = 0;
    int few_items = 0, many_items = 0, acc24 = 0;
    for (int i = 0; i < NWCASES; i++) {
        const WCase *c = &wcases[i];
        const WShape s = wshape(c);
        pads[c->p]++;
        cvs[c->cv]++;
        icbs[c->icb]++;
        ns[c->n]++;
        /* the zero regions only test something where the tiles are cut */
        dys[c->dy] += c->dy == DY_ALL || (s.oh % 4 != 0 && (c->dy == DY_LAST_ROW || s.ow % 4 != 0));
        short_block += s.tiles > c->tb && s.tiles % c->tb != 0;
        tb_wide += c->tb > s.tiles;
        tb_one += c->tb == 1 && s.tiles > 1;
        ragged += s.oh % 4 != 0 && s.ow % 4 != 0;
        exact += s.oh % 4 == 0 && s.ow % 4 == 0;
        ic_more += c->ic > c->oc;
        oc_more += c->ic < c->oc;
        one += c->h == 1 && c->w == 1;
        few_items += s.items < 7;             /* 7 threads: some get none */
        many_items += s.items > 7 && s.items % 7 != 0;   /* 7 threads, uneven ranges */
        acc24 += c->icb * c->cv > 16;
    }
    for (int p = 0; p < 3; p++)
        ck_assert_msg(pads[p] > 0, "no weight-gradient case with pad %d", p);
    for (int cv = 1; cv <= 4; cv++)
        ck_assert_msg(cvs[cv] > 0, "no weight-gradient case with CV %d", cv);
    static const int want_icb[] = {1, 3, 4, 8, 16};
    for (int k = 0; k < 5; k++)
        ck_assert_msg(icbs[want_icb[k]] > 0, "no weight-gradient case with ICB %d", want_icb[k]);
    for (int d = 0; d < 3; d++)
        ck_assert_msg(dys[d] > 0, "no weight-gradient case with dy region %d on cut tiles", d);
    for (int n = 1; n <= 3; n++)
        ck_assert_msg(ns[n] > 0, "no weight-gradient case with N %d", n);
    /* the table was laid out for 16-float vectors: narrower ones make more
     * output-channel blocks per case, so none has fewer items than threads */
    ck_assert(short_block && tb_wide && tb_one && ragged && exact && ic_more && oc_more && one &&
              (few_items || RNC_VL < 16) && many_items && acc24);
}
END_TEST

/* rnc_wg_a: r = A s with A the transpose of A^T above, exactly on unit
 * vectors and to rounding on random ones. */
START_TEST(a_is_matrix_a) {
    seed(1003);
    for (int k = -1; k < 4; k++) {   /* -1: random; else the unit vector e_k in every lane */
        rnc_vf s[4], r[6];
        float in[4][RNC_VL], out[6][RNC_VL];
        for (int l = 0; l < 4; l++)
            for (int lane = 0; lane < RNC_VL; lane++)
                in[l][lane] = k < 0 ? (float)(2 * uniform() - 1) : l == k;
        for (int l = 0; l < 4; l++)
            s[l] = rnc_vload(in[l]);
        rnc_wg_a(s, r);
        for (int j = 0; j < 6; j++)
            rnc_vstore(out[j], r[j]);
        for (int j = 0; j < 6; j++)
            for (int lane = 0; lane < RNC_VL; lane++) {
                double e = 0, ea = 0;
                for (int l = 0; l < 4; l++)
                    e += AT[l][j] * in[l][lane], ea += fabs(AT[l][j] * in[l][lane]);
                ck_assert_msg(k < 0 ? fabs(out[j][lane] - e) <= 1e-6 * ea : out[j][lane] == e,
                              "input %d: r[%d] lane %d = %.8g, A s = %.8g", k, j, lane, out[j][lane], e);
            }
    }
}
END_TEST

/* rnc_wg_input_row: row i of B^T d B (d the zero-padded 6x6 window at
 * (4th - P, 4tw - P)) into v[j][t][C] for slot t only, every row i, across
 * the edges as for rnc_wg_input_tile. */
START_TEST(input_row_is_row_of_bt_d_b) {
    enum { N = 2, H = 7, W = 8, C = 32, TB = 3, T = 2 };
    seed(1004);
    float *x = alloc_floats((size_t)N * H * W * C), *v = alloc_floats(6 * TB * C);
    fill_uniform(x, (size_t)N * H * W * C, 1);
    for (size_t k = 0; k < sizeof INPUT_TILES / sizeof INPUT_TILES[0]; k++)
        for (int i = 0; i < 6; i++) {
            const int n = INPUT_TILES[k][0], th = INPUT_TILES[k][1], tw = INPUT_TILES[k][2], P = INPUT_TILES[k][3];
            for (int e = 0; e < 6 * TB * C; e++)
                v[e] = 12345;
            rnc_wg_input_row(x, RNC_F32, v, i, T, n, th, tw, H, W, C, P, TB);
            for (int j = 0; j < 6; j++)
                for (int t = 0; t < TB; t++)
                    for (int c = 0; c < C; c++) {
                        const float got = v[(j * TB + t) * C + c];
                        if (t != T) {
                            if (got != 12345)
                                ck_abort_msg("tile %zu row %d wrote slot %d", k, i, t);
                            continue;
                        }
                        double ea;
                        const double e = bt_d_b(x, i, j, n, th, tw, P, c, H, W, C, &ea);
                        if (!(fabs(got - e) <= 1e-6 * ea + 1e-12))
                            ck_abort_msg("tile %zu (n %d th %d tw %d P %d): V[%d][%d][%d] = %.8g, want %.8g", k, n,
                                         th, tw, P, i, j, c, got, e);
                    }
        }
    free(x);
    free(v);
}
END_TEST

/* rnc_wg_grad_row: row i of A dY A^T (dY the 4x4 tile of dy at (4th, 4tw),
 * zero past the edges) for channels [oc, oc + 16 CV) into g[j][t][16 CV],
 * slot t only, on whole and cut tiles and every legal CV. */
START_TEST(grad_row_is_row_of_a_dy_at) {
    enum { N = 2, OH = 6, OW = 7, OC = 64, TB = 3, T = 1, NG = 6 * TB * RNC_MAX_CV * RNC_VL };
    static const int tiles[][5] = {{0, 0, 0, 0, 4},  {1, 1, 1, 16, 3}, {0, 1, 0, 32, 2},
                                   {1, 0, 1, 48, 1}, {1, 1, 0, 0, 1},  {0, 0, 1, 16, 2}};   /* n th tw oc CV */
    const long ndy = (long)N * OH * OW * OC;
    seed(1005);
    float *dy = alloc_floats(ndy), *g = alloc_floats(NG);
    fill_uniform(dy, ndy, 1);
    for (size_t k = 0; k < sizeof tiles / sizeof tiles[0]; k++)
        for (int i = 0; i < 6; i++) {
            const int n = tiles[k][0], th = tiles[k][1], tw = tiles[k][2], oc = tiles[k][3], CV = tiles[k][4];
            const int L = CV * RNC_VL;
            for (int e = 0; e < NG; e++)
                g[e] = 12345;
            rnc_wg_grad_row(dy, RNC_F32, g, i, T, n, th, tw, OH, OW, OC, oc, CV, TB);
            for (int e = 6 * TB * L; e < NG; e++)
                if (g[e] != 12345)
                    ck_abort_msg("tile %zu row %d wrote g[%d], past 6 x TB x %d", k, i, e, L);
            for (int j = 0; j < 6; j++)
                for (int t = 0; t < TB; t++)
                    for (int c = 0; c < L; c++) {
                        const float got = g[(j * TB + t) * L + c];
                        if (t != T) {
                            if (got != 12345)
                                ck_abort_msg("tile %zu row %d wrote slot %d", k, i, t);
                            continue;
                        }
                        double e = 0, ea = 0;
                        for (int a = 0; a < 4; a++)
                            for (int b = 0; b < 4; b++) {
                                const int oh = th * 4 + a, ow = tw * 4 + b;
                                if (oh < OH && ow < OW) {
                                    const double term =
                                        AT[a][i] * dy[(((long)n * OH + oh) * OW + ow) * OC + oc + c] * AT[b][j];
                                    e += term, ea += fabs(term);
                                }
                            }
                        if (!(fabs(got - e) <= 1e-6 * ea + 1e-12))
                            ck_abort_msg("tile %zu (n %d th %d tw %d oc %d CV %d): (A dY A^T)[%d][%d] channel %d = "
                                         "%.8g, want %.8g",
                                         k, n, th, tw, oc, CV, i, j, oc + c, got, e);
                    }
        }
    free(dy);
    free(g);
}
END_TEST

/* rnc_wg_wgrad_tile: du[r][c] (+)= sum over t of v[t][r] g[t][c] for its
 * ICB x 16 CV window of du[IC][OC], and nothing outside it. */
START_TEST(wgrad_tile_is_a_product) {
    enum { IC = 48, OC = 64, NT = 5 };
    static const int tiles[][5] = {{3, 32, 3, 2, 0}, {0, 0, 16, 1, 1}, {32, 0, 4, 4, 1},
                                   {40, 48, 8, 1, 0}, {47, 16, 1, 3, 1}, {36, 0, 12, 2, 1}};   /* ic oc ICB CV acc */
    seed(1006);
    float *v = alloc_floats(NT * IC), *g = alloc_floats(NT * RNC_MAX_CV * RNC_VL), *du = alloc_floats(IC * OC),
          *before = alloc_floats(IC * OC);
    for (size_t k = 0; k < sizeof tiles / sizeof tiles[0]; k++) {
        const int ic0 = tiles[k][0], oc0 = tiles[k][1], ICB = tiles[k][2], CV = tiles[k][3], acc = tiles[k][4];
        const int L = CV * RNC_VL;
        fill_uniform(v, NT * IC, 1);
        fill_uniform(g, NT * RNC_MAX_CV * RNC_VL, 1);
        fill_uniform(before, IC * OC, 1);
        memcpy(du, before, sizeof(float) * IC * OC);
        rnc_wg_wgrad_tile(v + ic0, g, du + ic0 * OC + oc0, NT, IC, OC, ICB, CV, acc);
        for (int r = 0; r < IC; r++)
            for (int c = 0; c < OC; c++) {
                const int at = r * OC + c;
                if (r < ic0 || r >= ic0 + ICB || c < oc0 || c >= oc0 + L) {
                    if (memcmp(du + at, before + at, sizeof(float)))
                        ck_abort_msg("tile %zu changed du[%d][%d]", k, r, c);
                    continue;
                }
                double e = acc ? before[at] : 0, ea = fabs(e);
                for (int t = 0; t < NT; t++) {
                    const double term = (double)v[t * IC + r] * g[t * L + c - oc0];
                    e += term, ea += fabs(term);
                }
                if (!(fabs(du[at] - e) <= 1e-6 * ea + 1e-12))
                    ck_abort_msg("tile %zu: du[%d][%d] = %.8g, want %.8g", k, r, c, du[at], e);
            }
    }
    free(v);
    free(g);
    free(du);
    free(before);
}
END_TEST

/* rnc_wg_wgrad_out: dw[kh][kw][a][:] = (G^T dU G)[kh][kw] for input channel a
 * only, in double; a delta in dU gives the outer product of two columns of G. */
START_TEST(wgrad_out_is_gt_du_g) {
    enum { IC = 3, OC = 32 };
    seed(1007);
    float *du = alloc_floats(36 * IC * OC), *dw = alloc_floats(9 * IC * OC);
    fill_uniform(du, 36 * IC * OC, 1);
    fill_nan(dw, 9 * IC * OC);
    rnc_wg_wgrad_out(du, dw, 1, IC, OC);   /* channel 1 alone first */
    for (int e = 0; e < 9 * IC * OC; e++)
        ck_assert_msg(e / OC % IC == 1 || isnan(dw[e]), "channel 1 wrote dw[%d][%d][%d]", e / OC / IC,
                      e / OC % IC, e % OC);
    rnc_wg_wgrad_out(du, dw, 2, IC, OC);
    rnc_wg_wgrad_out(du, dw, 0, IC, OC);
    for (int k = 0; k < 9; k++)
        for (int a = 0; a < IC; a++)
            for (int b = 0; b < OC; b++) {
                double e = 0, ea = 0;
                for (int i = 0; i < 6; i++)
                    for (int j = 0; j < 6; j++) {
                        const double term = G[i][k / 3] * du[((i * 6 + j) * IC + a) * OC + b] * G[j][k % 3];
                        e += term, ea += fabs(term);
                    }
                const float got = dw[(k * IC + a) * OC + b];
                ck_assert_msg(fabs(got - e) <= 1e-6 * ea + 1e-12, "dw[%d][%d][%d][%d] = %.8g, G^T dU G = %.8g", k / 3,
                              k % 3, a, b, got, e);
            }
    /* a delta at point (4, 3), channels (2, 17) */
    memset(du, 0, sizeof(float) * 36 * IC * OC);
    du[((4 * 6 + 3) * IC + 2) * OC + 17] = 1;
    for (int a = 0; a < IC; a++)
        rnc_wg_wgrad_out(du, dw, a, IC, OC);
    for (int k = 0; k < 9; k++)
        for (int a = 0; a < IC; a++)
            for (int b = 0; b < OC; b++) {
                const double e = a == 2 && b == 17 ? G[4][k / 3] * G[3][k % 3] : 0;
                ck_assert_msg(fabs(dw[(k * IC + a) * OC + b] - e) <= 1e-7,
                              "delta: dw[%d][%d][%d][%d] = %.8g, want %.8g", k / 3, k % 3, a, b,
                              dw[(k * IC + a) * OC + b], e);
            }
    free(du);
    free(dw);
}
END_TEST

/* The function generated code emits (compiler/kernels.c,
 * emit_conv_wgrad_winograd), with its shapes as enum constants so that the
 * kernels are compiled the way a network compiles them, and its per-thread
 * scratch back to back in one buffer; NAME_case is its shape for the test. */
#define WG_GENERATED(NAME, N_, H_, W_, IC_, OC_, P_, TB_, ICB_, CV_)                                                 \
    static const WCase NAME##_case = {N_, H_, W_, IC_, OC_, P_, TB_, ICB_, CV_, DY_ALL};                             \
    static void NAME(const float *restrict x, const float *restrict dy, float *restrict dw, float *restrict du,      \
                     float *restrict tscratch, int slots) {                                                          \
        enum { N = N_, H = H_, W = W_, IC = IC_, OH = H_ + 2 * P_ - 2, OW = W_ + 2 * P_ - 2, OC = OC_, P = P_,       \
               TB = TB_, ICB = ICB_, CV = CV_, ITEMS = 6 * (OC / (CV * RNC_VL)),                                     \
               THREAD_SCRATCH_FLOATS = 6 * TB * (IC + CV * RNC_VL) };                                                \
        _Pragma("omp parallel num_threads(rnc_min(slots, omp_get_max_threads()))") {                                 \
            const int t = omp_get_thread_num(), T = omp_get_num_threads();                                           \
            float *v = tscratch + (long)t * THREAD_SCRATCH_FLOATS, *g = v + 6L * TB * IC;                            \
            rnc_wg_wgrad_items(x, RNC_F32, dy, RNC_F32, du, v, g, t * ITEMS / T, (t + 1) * ITEMS / T, N, H, W, IC, OH, OW, OC, P,      \
                               TB, ICB, CV);                                                                         \
            _Pragma("omp barrier") _Pragma("omp for schedule(static)") for (int a = 0; a < IC; a++)                  \
                rnc_wg_wgrad_out(du, dw, a, IC, OC);                                                                 \
        }                                                                                                            \
    }

WG_GENERATED(wgrad_tiny_a, 4, 4, 4, 32, 32, 1, 160, 8, 2)   /* tiny_a's stage 2 as scheduled */
WG_GENERATED(wgrad_ragged, 2, 5, 7, 16, 48, 1, 3, 4, 3)     /* 5x7, 8 tiles 3+3+2; CV 3 */
WG_GENERATED(wgrad_pad0, 1, 9, 9, 48, 64, 0, 3, 3, 4)       /* pad 0: 7x7 out, 4 tiles 3+1; ICB 3, CV 4 */
WG_GENERATED(wgrad_pad2, 3, 6, 5, 16, 16, 2, 5, 16, 1)      /* pad 2: 8x7 out, 12 tiles 5+5+2; ICB 16 */

typedef void WgradFn(const float *restrict, const float *restrict, float *restrict, float *restrict,
                     float *restrict, int);
static const struct {
    const WCase *c;
    WgradFn *fn;
} generated[] = {
    {&wgrad_tiny_a_case, wgrad_tiny_a},
    {&wgrad_ragged_case, wgrad_ragged},
    {&wgrad_pad0_case, wgrad_pad0},
    {&wgrad_pad2_case, wgrad_pad2},
};
enum { NGENERATED = sizeof generated / sizeof generated[0] };

/* The generated function on 1, 2, 3 and 7 threads: against the reference,
 * and the same bits on every number of threads. */
START_TEST(generated_wgrad_matches_direct_convolution) {
    const WCase *c = generated[_i].c;
    const WShape s = wshape(c);
    omp_set_num_threads(8);   /* more threads than this machine may have cores */
    seed(6000 + _i);
    const long nx = (long)c->n * c->h * c->w * c->ic, ndy = (long)c->n * s.oh * s.ow * c->oc;
    const long nw = 9L * c->ic * c->oc, nu = 36L * c->ic * c->oc, nts = 6L * c->tb * (c->ic + c->cv * RNC_VL);
    float *x = alloc_floats(nx), *dy = alloc_floats(ndy), *du = alloc_floats(nu), *dw = alloc_floats(nw),
          *dw1 = alloc_floats(nw), *ts = alloc_floats(7 * nts);
    double *want = malloc(sizeof(double) * nw);
    ck_assert_ptr_nonnull(want);
    fill_uniform(x, nx, 1);
    fill_uniform(dy, ndy, 1);
    wgrad_reference(c, x, dy, want);
    double big = 0;
    for (long i = 0; i < nw; i++)
        big = fmax(big, fabs(want[i]));
    ck_assert(big > 1e-3);
    fill_nan(ts, 7 * nts);
    static const int slots[] = {1, 2, 3, 7};
    for (int k = 0; k < 4; k++) {
        fill_nan(du, nu);
        fill_nan(dw, nw);
        generated[_i].fn(x, dy, dw, du, ts, slots[k]);
        if (k == 0) {
            char what[64];
            snprintf(what, sizeof what, "generated wgrad %d, one slot", _i);
            check_dw(c, what, dw, want, big);
            memcpy(dw1, dw, sizeof(float) * nw);
            continue;
        }
        const long j = first_difference(dw, dw1, nw);
        ck_assert_msg(j < 0, "generated wgrad %d on %d slots: dw[%ld] = %a, on one %a", _i, slots[k], j,
                      dw[j < 0 ? 0 : j], dw1[j < 0 ? 0 : j]);
    }
    free(x);
    free(dy);
    free(du);
    free(dw);
    free(dw1);
    free(ts);
    free(want);
}
END_TEST

/* The direct data gradient's weight transpose (rnc_transpose_weights), which
 * works in 16x16 blocks over OpenMP threads: every element lands where it
 * belongs for channel counts that are and are not multiples of the block. */
START_TEST(transpose_weights_is_a_transpose) {
    static const int shapes[][3] = {{3, 32, 24}, {1, 5, 7}, {3, 16, 16}, {1, 1024, 48}, {7, 3, 64}, {1, 17, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int K = shapes[s][0], IC = shapes[s][1], OC = shapes[s][2];
        const long n = (long)K * K * IC * OC;
        float *w = malloc(sizeof(float) * n), *wt = malloc(sizeof(float) * n);
        ck_assert(w && wt);
        for (long i = 0; i < n; i++) {
            w[i] = (float)i;
            wt[i] = NAN;
        }
        rnc_transpose_weights(w, wt, K, IC, OC);
        for (int k = 0; k < K * K; k++)
            for (int ic = 0; ic < IC; ic++)
                for (int oc = 0; oc < OC; oc++)
                    ck_assert_float_eq(wt[((long)k * OC + oc) * IC + ic], w[((long)k * IC + ic) * OC + oc]);
        free(w);
        free(wt);
    }
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
    tc = tcase_create("weight gradient");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_is_matrix_a);
    tcase_add_test(tc, input_row_is_row_of_bt_d_b);
    tcase_add_test(tc, grad_row_is_row_of_a_dy_at);
    tcase_add_test(tc, wgrad_tile_is_a_product);
    tcase_add_test(tc, wgrad_out_is_gt_du_g);
    tcase_add_loop_test(tc, wgrad_matches_direct_convolution, 0, NWCASES);
    tcase_add_test(tc, wcases_cover_the_edges);
    tcase_add_loop_test(tc, generated_wgrad_matches_direct_convolution, 0, NGENERATED);
    suite_add_tcase(s, tc);
    tc = tcase_create("direct");
    tcase_add_test(tc, transpose_weights_is_a_transpose);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
