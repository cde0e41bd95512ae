/*
 * rnc/kernels.h - the kernel library that generated networks are built from.
 *
 * Every function here is inlined into a generated per-layer function whose
 * shapes are enum constants, so after inlining every loop bound, stride and
 * tile size is a compile-time constant: the register tiles unroll and their
 * accumulators stay in registers.  (OpenMP regions live in the generated
 * functions, not here, because an outlined region would turn the constants
 * back into variables.)
 *
 * Layouts: activations NHWC; conv weights [K][K][IC][OC]; FC weights [IN][OUT].
 * Vectors are GNU C vector types of RNC_VL floats, one register of the
 * target the file was generated for (16: AVX-512, 8: AVX2, 4: NEON and
 * SSE); the generated file defines RNC_VL before including this header.
 * Channels that do not fill a last vector are handled by partial loads and
 * stores of that vector (rnc_vload_n), not scalar loops.
 *
 * Reductions go in a fixed order: BN statistics through per-row partial sums,
 * weight gradients tile by tile, each tile summed over rows in order by the
 * thread that owns it.  Results do not depend on the number of threads.
 */
#ifndef RNC_KERNELS_H
#define RNC_KERNELS_H

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#if (defined(__AMX_BF16__) || defined(__AMXBF16__)) && (defined(__AMX_TILE__) || defined(__AMXTILE__))
#define RNC_AMX_COMPILER 1   /* (GCC spells the macros __AMX_BF16__, Clang __AMXBF16__) */
#endif
#if defined(__AVX512BF16__) || defined(RNC_AMX_COMPILER) || defined(__AVX512BW__)
#include <immintrin.h>
#endif
#if defined(RNC_AMX_COMPILER) && !defined(RNC_AMX_EMULATE)
#define RNC_AMX_HARDWARE 1
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <stdio.h>
#include <stdlib.h>
#endif

#ifndef RNC_VL
#define RNC_VL 16   /* floats per vector */
#endif
typedef float rnc_vf __attribute__((vector_size(RNC_VL * 4)));
typedef int rnc_vi __attribute__((vector_size(RNC_VL * 4)));   /* lane masks of comparisons */
/* Register tiles at most (macros, so generated code's static checks compare
 * plain ints with its enum constants). */
#define RNC_MAX_TW 32    /* pixels (or Winograd tiles) */
#define RNC_MAX_CV 4     /* channel vectors */
#define RNC_MAX_ICB 8    /* weight gradients: input channels */

#define RNC_KERNEL static inline __attribute__((always_inline))

/* Named flags of the kernels below (generated code passes these, never 0/1). */
enum { RNC_STORE = 0, RNC_ADD = 1 };             /* overwrite the output, or add to it */
enum { RNC_NO_RELU = 0, RNC_RELU = 1 };          /* BN passes: ReLU after (mask by y > 0 before) */
enum { RNC_WG_AS_IS = 0, RNC_WG_FLIPPED = 1 };   /* Winograd weights: forward, or flipped and transposed */

/* A train_step call site, timed when net->profile is set (bench --profile). */
#define RNC_TIMED(prof, site, call)                          \
    do {                                                     \
        const double rnc_t0_ = (prof) ? omp_get_wtime() : 0; \
        call;                                                \
        if (prof)                                            \
            (prof)[site] += omp_get_wtime() - rnc_t0_;       \
    } while (0)

RNC_KERNEL rnc_vf rnc_vload(const float *p) {
    rnc_vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
RNC_KERNEL void rnc_vstore(float *p, rnc_vf v) { memcpy(p, &v, sizeof v); }
/* The first n lanes only (the rest read as zero): a last, partial vector of
 * channels.  n is a constant wherever these are inlined. */
RNC_KERNEL rnc_vf rnc_vload_n(const float *p, int n) {
    if (n == RNC_VL)
        return rnc_vload(p);
    rnc_vf v = {0};
    memcpy(&v, p, sizeof(float) * (size_t)n);
    return v;
}
RNC_KERNEL void rnc_vstore_n(float *p, rnc_vf v, int n) {
    if (n == RNC_VL)
        rnc_vstore(p, v);
    else
        memcpy(p, &v, sizeof(float) * (size_t)n);
}
RNC_KERNEL int rnc_min(int a, int b) { return a < b ? a : b; }
RNC_KERNEL int rnc_max(int a, int b) { return a > b ? a : b; }

/* ---- storage: fp32 or bf16 ---------------------------------------------
 *
 * Under --precision bf16 activations and their gradients are stored as
 * bfloat16 (the top half of an fp32), everything is computed in fp32: a
 * kernel takes such a tensor as a void pointer and its storage type, a
 * constant once inlined, and reads and writes it through these.  fp32 to
 * bf16 rounds to nearest, ties to even (a NaN stays a NaN), the same on
 * every target and compiler. */
typedef uint16_t rnc_bf16;
/* How a tensor is stored; weights of the bf16 dot-product kernels are
 * RNC_BF16_PAIRS: two bf16 of consecutive reduction channels per 32 bits
 * (rnc_dot_pack_weights). */
#define RNC_F32 0          /* (macros: generated code's static checks compare them with its enums) */
#define RNC_BF16 1
#define RNC_BF16_PAIRS 2
#define RNC_AMX_PAIRS 3    /* the same pairs, multiplied on AMX tiles (rnc_amx_tile) */
typedef uint16_t rnc_vh __attribute__((vector_size(RNC_VL * 2)));
typedef uint32_t rnc_vu __attribute__((vector_size(RNC_VL * 4)));

RNC_KERNEL float rnc_bf16_f32(rnc_bf16 h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
RNC_KERNEL rnc_bf16 rnc_f32_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (rnc_bf16)((u >> 16) | 0x40);   /* a quiet NaN */
    return (rnc_bf16)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}
/* Element i of p, stored as dt. */
RNC_KERNEL const void *rnc_at(const void *p, long i, int dt) { return (const char *)p + i * (dt == RNC_BF16 ? 2 : 4); }
RNC_KERNEL void *rnc_atw(void *p, long i, int dt) { return (char *)p + i * (dt == RNC_BF16 ? 2 : 4); }
RNC_KERNEL float rnc_ld(const void *p, long i, int dt) {
    return dt == RNC_BF16 ? rnc_bf16_f32(((const rnc_bf16 *)p)[i]) : ((const float *)p)[i];
}
RNC_KERNEL void rnc_st(void *p, long i, float v, int dt) {
    if (dt == RNC_BF16)
        ((rnc_bf16 *)p)[i] = rnc_f32_bf16(v);
    else
        ((float *)p)[i] = v;
}
/* The first n lanes of a vector at p (the rest zero), and back. */
RNC_KERNEL rnc_vf rnc_vld(const void *p, int n, int dt) {
    if (dt != RNC_BF16)
        return rnc_vload_n((const float *)p, n);
    rnc_vh h = {0};
    memcpy(&h, p, sizeof(rnc_bf16) * (size_t)n);
    return (rnc_vf)(__builtin_convertvector(h, rnc_vu) << 16);
}
RNC_KERNEL void rnc_vst(void *p, rnc_vf v, int n, int dt) {
    if (dt != RNC_BF16) {
        rnc_vstore_n((float *)p, v, n);
        return;
    }
    const rnc_vu u = (rnc_vu)v;
    const rnc_vu nan = (rnc_vu)((u & 0x7fffffffu) > 0x7f800000u);   /* all ones where NaN */
    const rnc_vu r = ((u + 0x7fffu + ((u >> 16) & 1)) >> 16 & ~nan) | ((u >> 16 | 0x40) & nan);
    const rnc_vh h = __builtin_convertvector(r, rnc_vh);
    memcpy(p, &h, sizeof(rnc_bf16) * (size_t)n);
}

/* ---- convolution ------------------------------------------------------ */

/* One register tile: tw pixels x cv vectors of output channels, the last
 * vector `lanes` wide (RNC_VL, or the channels left over past the last
 * whole vector),
 *   y[t][v] (+)= sum over nkh x nkw taps, r < R:  x[tap][t*xs + r] * w[tap][r*wr + v]
 * where tap (i, j) sits at x + i*xkh + j*xkw and w + i*wkh + j*wkw.  The same
 * tile serves the forward pass and the data gradient (with the weights
 * transposed and the taps walked backwards).  With sum/sq, the tile also adds
 * its outputs and their squares per channel (BN statistics, from registers). */
RNC_KERNEL void rnc_conv_tile(const void *restrict x, int xdt, const float *restrict w, void *restrict y, int ydt,
                              int tw, int cv, int lanes, int nkh, int nkw, long xkh, long xkw, long wkh, long wkw,
                              int R, int wr, int xs, int ys, int accumulate, rnc_vf *restrict sum,
                              rnc_vf *restrict sq) {
    rnc_vf acc[RNC_MAX_TW][RNC_MAX_CV];
    for (int t = 0; t < tw; t++)
        for (int v = 0; v < cv; v++)
            acc[t][v] = accumulate ? rnc_vld(rnc_at(y, t * ys + v * RNC_VL, ydt), v == cv - 1 ? lanes : RNC_VL, ydt)
                                   : (rnc_vf){0};
    for (int i = 0; i < nkh; i++)
        for (int j = 0; j < nkw; j++) {
            const void *xp = rnc_at(x, i * xkh + j * xkw, xdt);
            const float *wp = w + i * wkh + j * wkw;
            for (int r = 0; r < R; r++) {
                rnc_vf wv[RNC_MAX_CV];
                for (int v = 0; v < cv; v++)
                    wv[v] = rnc_vload_n(wp + r * wr + v * RNC_VL, v == cv - 1 ? lanes : RNC_VL);
                for (int t = 0; t < tw; t++) {
                    const float s = rnc_ld(xp, t * xs + r, xdt);
                    for (int v = 0; v < cv; v++)
                        acc[t][v] += s * wv[v];
                }
            }
        }
    for (int t = 0; t < tw; t++)
        for (int v = 0; v < cv; v++) {
            rnc_vst(rnc_atw(y, t * ys + v * RNC_VL, ydt), acc[t][v], v == cv - 1 ? lanes : RNC_VL, ydt);
            if (sum) {
                sum[v] += acc[t][v];
                sq[v] += acc[t][v] * acc[t][v];
            }
        }
}

/* The register tile of the bf16 dot-product kernels: rnc_conv_tile's with
 * x stored as bf16 and w packed as RNC_BF16_PAIRS, so that R counts pairs of
 * reduction channels and each step multiplies a pair of x by a pair of each
 * output channel's weights.  AVX512-BF16's VDPBF16PS does a pair per lane
 * and instruction (twice the fp32 FMA rate); elsewhere the same sums are
 * formed in the same order (the odd element's product first: those of bf16
 * are exact in fp32), so results agree but for denormals, which VDPBF16PS
 * flushes to zero. */
RNC_KERNEL void rnc_dot_tile(const void *restrict x, const float *restrict w, void *restrict y, int ydt, int tw,
                             int cv, int lanes, int nkh, int nkw, long xkh, long xkw, long wkh, long wkw, int R,
                             int wr, int xs, int ys, int accumulate, rnc_vf *restrict sum, rnc_vf *restrict sq) {
    rnc_vf acc[RNC_MAX_TW][RNC_MAX_CV];
    for (int t = 0; t < tw; t++)
        for (int v = 0; v < cv; v++)
            acc[t][v] = accumulate ? rnc_vld(rnc_at(y, t * ys + v * RNC_VL, ydt), v == cv - 1 ? lanes : RNC_VL, ydt)
                                   : (rnc_vf){0};
    for (int i = 0; i < nkh; i++)
        for (int j = 0; j < nkw; j++) {
            const rnc_bf16 *xp = (const rnc_bf16 *)x + i * xkh + j * xkw;
            const float *wp = w + i * wkh + j * wkw;
            for (int r = 0; r < R; r++) {
                rnc_vf wv[RNC_MAX_CV];
                for (int v = 0; v < cv; v++)
                    wv[v] = rnc_vload_n(wp + r * wr + v * RNC_VL, v == cv - 1 ? lanes : RNC_VL);
                for (int t = 0; t < tw; t++) {
                    uint32_t pair;
                    memcpy(&pair, xp + t * xs + 2 * r, sizeof pair);
#if defined(__AVX512BF16__) && RNC_VL == 16
                    const __m512bh b = (__m512bh)_mm512_set1_epi32((int)pair);
                    for (int v = 0; v < cv; v++)
                        acc[t][v] = (rnc_vf)_mm512_dpbf16_ps((__m512)acc[t][v], b, (__m512bh)wv[v]);
#else
                    const float lo = rnc_bf16_f32((rnc_bf16)pair), hi = rnc_bf16_f32((rnc_bf16)(pair >> 16));
                    for (int v = 0; v < cv; v++) {
                        const rnc_vu u = (rnc_vu)wv[v];
                        acc[t][v] += hi * (rnc_vf)(u & 0xffff0000u);
                        acc[t][v] += lo * (rnc_vf)(u << 16);
                    }
#endif
                }
            }
        }
    for (int t = 0; t < tw; t++)
        for (int v = 0; v < cv; v++) {
            rnc_vst(rnc_atw(y, t * ys + v * RNC_VL, ydt), acc[t][v], v == cv - 1 ? lanes : RNC_VL, ydt);
            if (sum) {
                sum[v] += acc[t][v];
                sq[v] += acc[t][v] * acc[t][v];
            }
        }
}

/* wp = w in pairs of reduction channels, rounded to bf16: for the forward
 * (RNC_WG_AS_IS) wp[tap][IC/2][OC] = (w[tap][2p][oc], w[tap][2p+1][oc]);
 * for the data gradient (RNC_WG_FLIPPED: transposed as rnc_transpose_weights
 * does) wp[tap][OC/2][IC] = (w[tap][ic][2q], w[tap][ic][2q+1]).  The low 16
 * bits hold the even channel, as an x pair in memory does. */
RNC_KERNEL void rnc_dot_pack_weights(const float *restrict w, uint32_t *restrict wp, int K, int IC, int OC,
                                     int transposed) {
    const long taps = (long)K * K, pairs = transposed ? OC / 2 : IC / 2, inner = transposed ? IC : OC;
#pragma omp parallel for schedule(static)
    for (long tp = 0; tp < taps * pairs; tp++) {
        const long tap = tp / pairs, q = tp % pairs;
        for (long e = 0; e < inner; e++) {
            const float a = transposed ? w[(tap * IC + e) * OC + 2 * q] : w[(tap * IC + 2 * q) * OC + e];
            const float b = transposed ? w[(tap * IC + e) * OC + 2 * q + 1] : w[(tap * IC + 2 * q + 1) * OC + e];
            wp[tp * inner + e] = (uint32_t)rnc_f32_bf16(a) | (uint32_t)rnc_f32_bf16(b) << 16;
        }
    }
}

/* ---- AMX tiles ----------------------------------------------------------
 *
 * rnc_amx_tile computes what rnc_dot_tile computes (x bf16, w in pairs of
 * reduction channels, fp32 sums) with TDPBF16PS on the eight tile
 * registers: up to 2 x 2 accumulator tiles of 16 pixels x 16 channels
 * (tmm0-3), the pixels' 16 x 2*KB bf16 rows (tmm4-5, loaded straight from x
 * with the pixels' stride) and the weights' KB x 16 pairs (tmm6-7, straight
 * from the packed weights: their rows are wp's pair rows).  KB, the pairs
 * per product, is the largest divisor of R up to 16, so no row is partial.
 *
 * Where the compiler has no AMX (RNC_AMX_EMULATE: the amx-emulated target)
 * the same tile program runs on a C model of the tiles that checks each
 * instruction's operand shapes as the hardware does: the tile program is
 * tested on any CPU, the instructions only where they exist. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} rnc_amx_config;   /* LDTILECFG's 64 bytes (palette 1) */

#ifdef RNC_AMX_HARDWARE
/* LDTILECFG, TILELOADD and TILESTORED as inline asm that says what they
 * touch: GCC 12's <amxtileintrin.h> declares LDTILECFG as reading 8 of its
 * 64 bytes, TILELOADD as reading no memory and TILESTORED as writing none,
 * so GCC may drop the stores that feed them (seen with -O2 on a scratch
 * function) or reorder the reads of what they wrote.  T is a tile number,
 * 0-7. */
#define RNC_AMX_LOAD_CONFIG(c) __asm__ volatile("ldtilecfg %0" ::"m"(*(const rnc_amx_config *)(c)))
#define RNC_AMX_LOAD(t, p, stride) \
    __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(p), "r"((long)(stride)) : "memory")
#define RNC_AMX_ZERO(t) _tile_zero(t)
#define RNC_AMX_STORE(t, p, stride) \
    __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(p), "r"((long)(stride)) : "memory")
#define RNC_AMX_DP(c, a, b) _tile_dpbf16ps(c, a, b)
long syscall(long number, ...);   /* (<unistd.h> declares it only for _DEFAULT_SOURCE) */
/* Linux hands out the tile state only on request (arch_prctl, 5.16 on); the
 * grant is the process's.  0, or -1 with what was refused in why.  The
 * network's binary asks before it starts (rnc_model.cpu_setup); the kernels
 * ask again (at no cost) in case their caller did not. */
static inline int rnc_amx_request(char *why, size_t n) {
    static int granted;
    if (__atomic_load_n(&granted, __ATOMIC_ACQUIRE))
        return 0;
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        snprintf(why, n, "Linux refused this process the AMX tile state "
                         "(arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): %s); AMX needs Linux 5.16 or later "
                         "with AMX enabled: generate the network for --target avx512 instead", strerror(errno));
        return -1;
    }
    __atomic_store_n(&granted, 1, __ATOMIC_RELEASE);
    return 0;
}
static inline void rnc_amx_permit(void) {
    char why[320];
    if (rnc_amx_request(why, sizeof why)) {
        fprintf(stderr, "rnc: error: %s\n", why);
        exit(1);
    }
}
#elif defined(RNC_AMX_EMULATE)
typedef struct {
    int rows, colsb;
    unsigned char d[16][64];
} rnc_amx_emu_tile;
__attribute__((weak)) __thread rnc_amx_emu_tile rnc_amx_emu[8];   /* one per program, as rnc_amx_now */
static inline void rnc_amx_emu_fault(const char *what, int t) {
    fprintf(stderr, "rnc: internal error: AMX tile program: %s (tmm%d); the hardware would fault\n", what, t);
    abort();
}
static inline void rnc_amx_emu_config(const rnc_amx_config *c) {
    for (int t = 0; t < 8; t++) {
        rnc_amx_emu[t].rows = c->rows[t];
        rnc_amx_emu[t].colsb = c->colsb[t];
        if (c->rows[t] > 16 || c->colsb[t] > 64 || c->colsb[t] % 4)
            rnc_amx_emu_fault("a tile's shape is out of range", t);
        memset(rnc_amx_emu[t].d, 0, sizeof rnc_amx_emu[t].d);
    }
}
static inline rnc_amx_emu_tile *rnc_amx_emu_tile_of(int t) {
    if (!rnc_amx_emu[t].rows)
        rnc_amx_emu_fault("a tile not configured", t);
    return &rnc_amx_emu[t];
}
static inline void rnc_amx_emu_zero(int t) { memset(rnc_amx_emu_tile_of(t)->d, 0, sizeof rnc_amx_emu[t].d); }
static inline void rnc_amx_emu_load(int t, const void *p, long stride) {
    rnc_amx_emu_tile *T = rnc_amx_emu_tile_of(t);
    memset(T->d, 0, sizeof T->d);
    for (int r = 0; r < T->rows; r++)
        memcpy(T->d[r], (const char *)p + r * stride, (size_t)T->colsb);
}
static inline void rnc_amx_emu_store(int t, void *p, long stride) {
    const rnc_amx_emu_tile *T = rnc_amx_emu_tile_of(t);
    for (int r = 0; r < T->rows; r++)
        memcpy((char *)p + r * stride, T->d[r], (size_t)T->colsb);
}
/* TDPBF16PS as the SDM defines it: c[m][n] += a[m][2k]b[k][2n], then
 * += a[m][2k+1]b[k][2n+1], in k order. */
static inline void rnc_amx_emu_dp(int c, int a, int b) {
    rnc_amx_emu_tile *C = rnc_amx_emu_tile_of(c);
    const rnc_amx_emu_tile *A = rnc_amx_emu_tile_of(a), *B = rnc_amx_emu_tile_of(b);
    if (C->rows != A->rows || B->rows != A->colsb / 4 || B->colsb != C->colsb)
        rnc_amx_emu_fault("operand shapes do not match", c);
    for (int m = 0; m < C->rows; m++)
        for (int k = 0; k < A->colsb / 4; k++) {
            rnc_bf16 ab[2], bb[32];
            memcpy(ab, A->d[m] + 4 * k, sizeof ab);
            memcpy(bb, B->d[k], (size_t)B->colsb);
            for (int n = 0; n < C->colsb / 4; n++) {
                float acc;
                memcpy(&acc, C->d[m] + 4 * n, sizeof acc);
                acc += rnc_bf16_f32(ab[0]) * rnc_bf16_f32(bb[2 * n]);
                acc += rnc_bf16_f32(ab[1]) * rnc_bf16_f32(bb[2 * n + 1]);
                memcpy(C->d[m] + 4 * n, &acc, sizeof acc);
            }
        }
}
#define RNC_AMX_LOAD_CONFIG(c) rnc_amx_emu_config(c)
#define RNC_AMX_ZERO(t) rnc_amx_emu_zero(t)
#define RNC_AMX_LOAD(t, p, stride) rnc_amx_emu_load(t, p, stride)
#define RNC_AMX_STORE(t, p, stride) rnc_amx_emu_store(t, p, stride)
#define RNC_AMX_DP(c, a, b) rnc_amx_emu_dp(c, a, b)
static inline void rnc_amx_permit(void) {}
static inline int rnc_amx_request(char *why, size_t n) { (void)why, (void)n; return 0; }
#else
/* Neither: no AMX kernel is emitted for this target (rnc_any_tile's AMX
 * branch is dead code here), so no tile state either. */
#define RNC_AMX_NONE 1
static inline void rnc_amx_unavailable(void) {
    fprintf(stderr, "rnc: internal error: an AMX kernel in code built without AMX\n");
    abort();
}
#define RNC_AMX_LOAD_CONFIG(c) ((void)(c), rnc_amx_unavailable())
#define RNC_AMX_ZERO(t) rnc_amx_unavailable()
#define RNC_AMX_LOAD(t, p, stride) ((void)(p), (void)(stride), rnc_amx_unavailable())
#define RNC_AMX_STORE(t, p, stride) ((void)(p), (void)(stride), rnc_amx_unavailable())
#define RNC_AMX_DP(c, a, b) rnc_amx_unavailable()
static inline void rnc_amx_permit(void) {}
static inline int rnc_amx_request(char *why, size_t n) { (void)why, (void)n; return 0; }
#endif

/* The configuration this thread's tiles have: one variable for every file
 * of a program (weak, so each file that includes this header defines the
 * same one), since two networks linked together share the thread's tiles.
 * Code built by rnc's in-process JIT (RNC_NO_TLS: LLVM 14's JIT cannot
 * allocate thread-local storage) keeps no such record and loads the
 * configuration at every call. */
#if defined(RNC_NO_TLS) && defined(RNC_AMX_EMULATE)
#error "the amx-emulated tiles are thread-local state: build this file ahead of time, not in the JIT"
#endif
#if !defined(RNC_AMX_NONE) && !defined(RNC_NO_TLS)
#define RNC_AMX_CACHE 1
__attribute__((weak)) __thread rnc_amx_config rnc_amx_now;
#endif

/* The thread's tile shapes: accumulators of rows0 (and rows1) pixels by 16
 * channels, cv of them across; KB pairs per product.  Loaded only when they
 * change (LDTILECFG also clears the tiles). */
RNC_KERNEL void rnc_amx_shape(int rows0, int rows1, int kb, int cv) {
#ifdef RNC_AMX_CACHE
    rnc_amx_config *now = &rnc_amx_now;
#else
    rnc_amx_config unused = {0}, *now = &unused;   /* never equal to c: always loaded */
#endif
    rnc_amx_config c = {.palette = 1};
    for (int m = 0; m < 2; m++) {
        const int rows = m ? rows1 : rows0;
        for (int v = 0; v < cv && rows; v++) {
            c.rows[2 * m + v] = (uint8_t)rows;
            c.colsb[2 * m + v] = 64;
        }
        c.rows[4 + m] = (uint8_t)rows;
        c.colsb[4 + m] = rows ? (uint16_t)(4 * kb) : 0;
    }
    for (int v = 0; v < cv; v++) {
        c.rows[6 + v] = (uint8_t)kb;
        c.colsb[6 + v] = 64;
    }
    if (memcmp(&c, now, sizeof c)) {
        rnc_amx_permit();
        RNC_AMX_LOAD_CONFIG(&c);
        *now = c;
    }
}

RNC_KERNEL int rnc_amx_pairs_per_product(int R) {
    for (int d = 16; d > 1; d--)
        if (R % d == 0)
            return d;
    return 1;
}

/* rnc_dot_tile's tile (R pairs, lanes == RNC_VL) on AMX: tw <= 32 pixels,
 * cv <= 2 vectors. */
RNC_KERNEL void rnc_amx_tile(const void *restrict x, const float *restrict w, void *restrict y, int ydt, int tw,
                             int cv, int nkh, int nkw, long xkh, long xkw, long wkh, long wkw, int R, int wr, int xs,
                             int ys, int accumulate, rnc_vf *restrict sum, rnc_vf *restrict sq) {
    const int rows0 = tw > 16 ? 16 : tw, rows1 = tw - rows0, kb = rnc_amx_pairs_per_product(R);
    const long xb = 2L * xs, wb = 4L * wr;   /* row strides in bytes */
    rnc_amx_shape(rows0, rows1, kb, cv);
    RNC_AMX_ZERO(0);
    if (cv > 1)
        RNC_AMX_ZERO(1);
    if (rows1) {
        RNC_AMX_ZERO(2);
        if (cv > 1)
            RNC_AMX_ZERO(3);
    }
    for (int i = 0; i < nkh; i++)
        for (int j = 0; j < nkw; j++) {
            const rnc_bf16 *xp = (const rnc_bf16 *)x + i * xkh + j * xkw;
            const uint32_t *wp = (const uint32_t *)w + i * wkh + j * wkw;
            for (int r = 0; r < R; r += kb) {
                RNC_AMX_LOAD(4, xp + 2 * r, xb);
                RNC_AMX_LOAD(6, wp + (long)r * wr, wb);
                if (cv > 1)
                    RNC_AMX_LOAD(7, wp + (long)r * wr + RNC_VL, wb);
                RNC_AMX_DP(0, 4, 6);
                if (cv > 1)
                    RNC_AMX_DP(1, 4, 7);
                if (rows1) {
                    RNC_AMX_LOAD(5, xp + 16L * xs + 2 * r, xb);
                    RNC_AMX_DP(2, 5, 6);
                    if (cv > 1)
                        RNC_AMX_DP(3, 5, 7);
                }
            }
        }
    float c[32][2 * RNC_VL] __attribute__((aligned(64)));
    RNC_AMX_STORE(0, c[0], sizeof c[0]);
    if (cv > 1)
        RNC_AMX_STORE(1, c[0] + RNC_VL, sizeof c[0]);
    if (rows1) {
        RNC_AMX_STORE(2, c[16], sizeof c[0]);
        if (cv > 1)
            RNC_AMX_STORE(3, c[16] + RNC_VL, sizeof c[0]);
    }
    for (int t = 0; t < tw; t++)
        for (int v = 0; v < cv; v++) {
            void *out = rnc_atw(y, (long)t * ys + v * RNC_VL, ydt);
            rnc_vf acc = rnc_vload(c[t] + v * RNC_VL);
            if (accumulate)
                acc += rnc_vld(out, RNC_VL, ydt);
            rnc_vst(out, acc, RNC_VL, ydt);
            if (sum) {
                sum[v] += acc;
                sq[v] += acc * acc;
            }
        }
}


/* ---- AMX weight gradients --------------------------------------------
 *
 * dw[tap][ic][oc] = sum over output pixels q of dy[q][oc] * x(q shifted by
 * the tap)[ic], as C[oc][ic] += A[oc][q] x B[q][ic] with the pixels as the
 * tiles' K (dw transposed: each thread sums into its own dwt[tap][oc][ic]).
 * Each thread packs NB images at a time (rnc_amx_wg_pack_*), stacked: image
 * b's rows are rows b*RB .. b*RB + RB - 1 of one tall image, RB = OH +
 * (K-1)/S (its output rows and room for the taps' reach):
 * - the output pixels flattened with a row pitch of WH (even, at least OW +
 *   (K-1)/S): q = row*WH + ow, QP of them (a multiple of 32); dy transposed
 *   as the A operand: dyt[oc][q], 0 where ow >= OW or the row is past an
 *   image's OH (those q add nothing);
 * - x split by stride phase (ph, pw), each phase stacked and flattened the
 *   same way, xf[m] = x_b[i*S + ph - P][j*S + pw - P] at m = (b*RB + i)*WH +
 *   j (0 outside the input), as the B operand: pairs of pixels interleaved,
 *   twice (parity e: xp[phase][e][j][ic] = (xf[2j+e][ic], xf[2j+e+1][ic])),
 *   LX2 pairs each.  Tap (kh, kw) then reads phase (kh%S, kw%S) at m = q +
 *   off, off = (kh/S)*WH + kw/S: pairs from (q + off - e)/2 of parity e =
 *   off % 2.  Every tile row starts on a 64-byte line (TILELOADD of rows
 *   that straddle lines ran at half speed), and one load of a dy tile
 *   serves every tap.
 * The pixels go in chunks of QB, every tap over one chunk before the next,
 * so that a chunk's packed rows stay in L1 for all the taps reading them.
 * Products of bf16 are exact, sums fp32: the fp32 kernels' result up to the
 * order of the sums. */
#if defined(__AVX512BW__)
/* 16 channels of two pixels (NULL: zeros) as one vector of pairs. */
RNC_KERNEL __m512i rnc_amx_pair16(const rnc_bf16 *a, const rnc_bf16 *b) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m256i va = a ? _mm256_loadu_si256((const __m256i *)a) : _mm256_setzero_si256();
    const __m256i vb = b ? _mm256_loadu_si256((const __m256i *)b) : _mm256_setzero_si256();
    return _mm512_permutexvar_epi16(idx, _mm512_inserti64x4(_mm512_castsi256_si512(va), vb, 1));
}
/* r[i] (16 rows of 16 dwords) transposed in place. */
RNC_KERNEL void rnc_amx_transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 16; i += 8)
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
    }
}

/* The pixel of image x (H x W x IC) at (ih, iw), or NULL outside it. */
RNC_KERNEL const rnc_bf16 *rnc_amx_wg_at(const rnc_bf16 *x, int ih, int iw, int H, int W, int IC) {
    return ih >= 0 && ih < H && iw >= 0 && iw < W ? x + ((long)ih * W + iw) * IC : NULL;
}

/* Output row `row` of a pack of nb images stacked RB rows apart: the image
 * and its row, or NULL past the images' rows. */
RNC_KERNEL const rnc_bf16 *rnc_amx_wg_row(const rnc_bf16 *t, int row, int RB, int nb, int rows, long image, int *r) {
    const int b = row / RB;
    *r = row % RB;
    return b < nb && *r < rows ? t + b * image : NULL;
}

/* dy of nb images (OH x OW x OC each) transposed: dyt + oc * QP/2 holds
 * QP/2 pairs of flattened pixels. */
RNC_KERNEL void rnc_amx_wg_pack_dy(const rnc_bf16 *restrict dy, uint32_t *restrict dyt, int nb, int OH, int OW, int OC,
                                   int RB, int WH, int QP) {
    const long pitch = QP / 2;
    for (int j0 = 0; j0 < QP / 2; j0 += 16)
        for (int c = 0; c < OC; c += 16) {
            __m512i r[16];
            for (int j = 0; j < 16; j++) {
                int oh;
                const int ow = 2 * (j0 + j) % WH;   /* WH is even: both pixels on one row */
                const rnc_bf16 *img = rnc_amx_wg_row(dy, 2 * (j0 + j) / WH, RB, nb, OH, (long)OH * OW * OC, &oh);
                const rnc_bf16 *a = img ? rnc_amx_wg_at(img, oh, ow, OH, OW, OC) : NULL;
                const rnc_bf16 *b = img ? rnc_amx_wg_at(img, oh, ow + 1, OH, OW, OC) : NULL;
                r[j] = rnc_amx_pair16(a ? a + c : NULL, b ? b + c : NULL);
            }
            rnc_amx_transpose16(r);
            for (int e = 0; e < 16; e++)
                _mm512_storeu_si512(dyt + (c + e) * pitch + j0, r[e]);
        }
}

/* Row ih of image pointer img (H x W x C), or NULL outside it. */
RNC_KERNEL const rnc_bf16 *rnc_amx_wg_line(const rnc_bf16 *img, int ih, int H, int W, int C) {
    return img && ih >= 0 && ih < H ? img + (long)ih * W * C : NULL;
}

/* x of nb images (H x W x IC each) by stride phase, in pairs of flattened
 * pixels of both parities: xp + ((phase * 2 + e) * LX2 + j) * IC; SP =
 * min(K, S) phases each way.  Parity 1's pairs are parity 0's shifted by one
 * pixel (the high half of one pair and the low half of the next). */
RNC_KERNEL void rnc_amx_wg_pack_x(const rnc_bf16 *restrict x, uint32_t *restrict xp, int nb, int H, int W, int IC,
                                  int S, int P, int SP, int RB, int WH, int LX2) {
    for (int ph = 0; ph < SP; ph++)
        for (int pw = 0; pw < SP; pw++) {
            uint32_t *o0 = xp + (long)(ph * SP + pw) * 2 * LX2 * IC, *o1 = o0 + (long)LX2 * IC;
            int row = 0, col = 0, i;
            const rnc_bf16 *img = rnc_amx_wg_row(x, row, RB, nb, RB, (long)H * W * IC, &i);
            const rnc_bf16 *line = rnc_amx_wg_line(img, i * S + ph - P, H, W, IC);
            for (int j = 0; j < LX2; j++) {
                const int iw = col * S + pw - P;
                const rnc_bf16 *a = line && iw >= 0 && iw < W ? line + (long)iw * IC : NULL;
                const rnc_bf16 *b = line && iw + S >= 0 && iw + S < W ? line + (long)(iw + S) * IC : NULL;
                for (int c = 0; c < IC; c += 16)
                    _mm512_storeu_si512(o0 + (long)j * IC + c, rnc_amx_pair16(a ? a + c : NULL, b ? b + c : NULL));
                if ((col += 2) == WH) {   /* WH is even: a pair never spans rows */
                    col = 0;
                    img = rnc_amx_wg_row(x, ++row, RB, nb, RB, (long)H * W * IC, &i);
                    line = rnc_amx_wg_line(img, i * S + ph - P, H, W, IC);
                }
            }
            for (long k = 0; k < (long)LX2 * IC; k += 16) {
                const __m512i lo = _mm512_loadu_si512(o0 + k);
                const __m512i hi = k + IC < (long)LX2 * IC ? _mm512_loadu_si512(o0 + k + IC) : _mm512_setzero_si512();
                _mm512_storeu_si512(o1 + k, _mm512_or_si512(_mm512_srli_epi32(lo, 16), _mm512_slli_epi32(hi, 16)));
            }
        }
}

/* The tile instructions with the tile numbers as values (the instructions
 * take them as immediates): inlined with constants, each folds to one. */
RNC_KERNEL void rnc_amx_load_any(int t, const void *p, long stride) {
    switch (t) {
    case 0: RNC_AMX_LOAD(0, p, stride); break;
    case 1: RNC_AMX_LOAD(1, p, stride); break;
    case 2: RNC_AMX_LOAD(2, p, stride); break;
    case 3: RNC_AMX_LOAD(3, p, stride); break;
    case 4: RNC_AMX_LOAD(4, p, stride); break;
    case 5: RNC_AMX_LOAD(5, p, stride); break;
    case 6: RNC_AMX_LOAD(6, p, stride); break;
    default: RNC_AMX_LOAD(7, p, stride); break;
    }
}
RNC_KERNEL void rnc_amx_store_any(int t, void *p, long stride) {
    switch (t) {
    case 0: RNC_AMX_STORE(0, p, stride); break;
    case 1: RNC_AMX_STORE(1, p, stride); break;
    case 2: RNC_AMX_STORE(2, p, stride); break;
    default: RNC_AMX_STORE(3, p, stride); break;
    }
}
/* C tile c (0-3) += A tile a (4-5) x B tile b (6-7). */
RNC_KERNEL void rnc_amx_dp_any(int c, int a, int b) {
    switch (c * 4 + (a - 4) * 2 + (b - 6)) {
    case 0: RNC_AMX_DP(0, 4, 6); break;
    case 1: RNC_AMX_DP(0, 4, 7); break;
    case 2: RNC_AMX_DP(0, 5, 6); break;
    case 3: RNC_AMX_DP(0, 5, 7); break;
    case 4: RNC_AMX_DP(1, 4, 6); break;
    case 5: RNC_AMX_DP(1, 4, 7); break;
    case 6: RNC_AMX_DP(1, 5, 6); break;
    case 7: RNC_AMX_DP(1, 5, 7); break;
    case 8: RNC_AMX_DP(2, 4, 6); break;
    case 9: RNC_AMX_DP(2, 4, 7); break;
    case 10: RNC_AMX_DP(2, 5, 6); break;
    case 11: RNC_AMX_DP(2, 5, 7); break;
    case 12: RNC_AMX_DP(3, 4, 6); break;
    case 13: RNC_AMX_DP(3, 4, 7); break;
    case 14: RNC_AMX_DP(3, 5, 6); break;
    default: RNC_AMX_DP(3, 5, 7); break;
    }
}

/* dwt of G consecutive taps from tap0 (OC x IC each, fp32, row pitch IC)
 * += the products of pixels [q0, q1) from the packed dyt and xp:
 * accumulator tiles of the G taps x OT x 16 output channels x IT x 16 input
 * channels (at most 4), loaded from dwt and stored back around the pixels'
 * K loop.  The taps share each dy tile: one load of it feeds G products. */
RNC_KERNEL void rnc_amx_wg_taps(const uint32_t *restrict dyt, const uint32_t *restrict xp, float *restrict dwt,
                                int tap0, int G, int IC, int OC, int K, int S, int SP, int WH, int LX2, int QP, int q0,
                                int q1, int IT, int OT) {
    const long ab = 2L * QP, bb = 4L * IC, cb = 4L * IC;   /* row strides in bytes */
    const uint32_t *xb[4];
    for (int g = 0; g < G; g++) {
        const int kh = (tap0 + g) / K, kw = (tap0 + g) % K, off = (kh / S) * WH + kw / S, e = off % 2;
        xb[g] = xp + ((long)((kh % S) * SP + kw % S) * 2 + e) * LX2 * IC + (long)(off - e) / 2 * IC;
    }
    for (int oc = 0; oc < OC; oc += 16 * OT)
        for (int ic = 0; ic < IC; ic += 16 * IT) {
            for (int g = 0; g < G; g++)
                for (int o = 0; o < OT; o++)
                    for (int i = 0; i < IT; i++)
                        rnc_amx_load_any((g * OT + o) * IT + i, dwt + ((long)(tap0 + g) * OC + oc + 16 * o) * IC + ic + 16 * i, cb);
            for (int q = q0; q < q1; q += 32) {
                for (int o = 0; o < OT; o++)
                    rnc_amx_load_any(4 + o, dyt + (long)(oc + 16 * o) * (QP / 2) + q / 2, ab);
                for (int g = 0; g < G; g++)
                    for (int i = 0; i < IT; i++) {
                        const int b = 6 + (g * IT + i) % 2;
                        rnc_amx_load_any(b, xb[g] + (long)q / 2 * IC + ic + 16 * i, bb);
                        for (int o = 0; o < OT; o++)
                            rnc_amx_dp_any((g * OT + o) * IT + i, 4 + o, b);
                    }
            }
            for (int g = 0; g < G; g++)
                for (int o = 0; o < OT; o++)
                    for (int i = 0; i < IT; i++)
                        rnc_amx_store_any((g * OT + o) * IT + i, dwt + ((long)(tap0 + g) * OC + oc + 16 * o) * IC + ic + 16 * i, cb);
        }
}

/* dwt (K*K taps) += a pack's products: pixels in chunks of QB, each chunk's
 * taps in groups of G (G * IT * OT <= 4), the last K*K % G one at a time. */
RNC_KERNEL void rnc_amx_wg_pack(const uint32_t *restrict dyt, const uint32_t *restrict xp, float *restrict dwt, int IC,
                                int OC, int K, int S, int SP, int WH, int LX2, int QP, int QB, int G, int IT, int OT) {
    rnc_amx_shape(16, 16, 16, 2);   /* every tile 16 x 64 bytes */
    for (int q0 = 0; q0 < QP; q0 += QB) {
        const int q1 = rnc_min(q0 + QB, QP);
        int tap = 0;
        for (; tap + G <= K * K; tap += G)
            rnc_amx_wg_taps(dyt, xp, dwt, tap, G, IC, OC, K, S, SP, WH, LX2, QP, q0, q1, IT, OT);
        for (; tap < K * K; tap++)
            rnc_amx_wg_taps(dyt, xp, dwt, tap, 1, IC, OC, K, S, SP, WH, LX2, QP, q0, q1, IT, OT);
    }
}

/* dw[tap][ic][oc] = the sum over T threads' dwt[tap][oc][ic] (each `stride`
 * floats after the last), 16 x 16 blocks [first, last) of them. */
RNC_KERNEL void rnc_amx_wg_reduce(const float *restrict dwt, long stride, int T, float *restrict dw, long first,
                                  long last, int IC, int OC) {
    const int icb = IC / 16, ocb = OC / 16;
    for (long blk = first; blk < last; blk++) {
        const long tap = blk / ((long)icb * ocb);
        const int ic = (int)(blk / ocb % icb) * 16, oc = (int)(blk % ocb) * 16;
        float acc[16][16] = {{0}};
        for (int u = 0; u < T; u++)
            for (int o = 0; o < 16; o++)
                for (int i = 0; i < 16; i++)
                    acc[o][i] += dwt[u * stride + (tap * OC + oc + o) * IC + ic + i];
        for (int i = 0; i < 16; i++)
            for (int o = 0; o < 16; o++)
                dw[(tap * IC + ic + i) * OC + oc + o] = acc[o][i];
    }
}

/* ---- AMX convolution over flattened, padded images (stride 1) ----------
 *
 * y[q][co] = sum over kh of sum over k < K*CI of xp[q + kh*WP][k] *
 * wk[kh][k][co]: the image zero-padded by P (xp, row pitch WP = W + 2P) and
 * the output flattened at the same pitch (q = oh*WP + ow; columns ow >= OW
 * are computed and dropped).  Along one row of taps the K pixels' channels
 * are contiguous, so a row of taps is one reduction of K*CI values: tiles of
 * 16 pixels whose rows are 32 consecutive values, in KC chunks per kh, the
 * last chunk's weights past K*CI zero.  Every tile is full whatever the
 * width, with no border cases.  The data gradient is the same product over
 * dy with the taps flipped and pad K - 1 - P. */
RNC_KERNEL int rnc_amx_flat_chunks(int K, int CI) { return (K * CI + 31) / 32; }

/* wk[kh][32 * KC][CO] as pairs along k (k = kw*CI + ci): the forward's w
 * (w[kh][kw][ci][co]), or with flipped the data gradient's (w[K-1-kh][K-1-kw]
 * [co][ci] for a layer of CO input and CI output channels). */
RNC_KERNEL void rnc_amx_flat_pack_w(const float *restrict w, uint32_t *restrict wk, int K, int CI, int CO, int flipped) {
    const int KC = rnc_amx_flat_chunks(K, CI), rows = 16 * KC;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < K * rows; r++) {
        const int kh = r / rows;
        for (int co = 0; co < CO; co++) {
            uint32_t v = 0;
            for (int h = 0; h < 2; h++) {
                const int k = 2 * (r % rows) + h, kw = k / CI, ci = k % CI;
                if (k >= K * CI)
                    continue;
                const float f = flipped ? w[(((long)(K - 1 - kh) * K + K - 1 - kw) * CO + co) * CI + ci]
                                        : w[(((long)kh * K + kw) * CI + ci) * CO + co];
                v |= (uint32_t)rnc_f32_bf16(f) << (16 * h);
            }
            wk[(long)r * CO + co] = v;
        }
    }
}

/* One image (H x W x CI) into xp, padded by P and zero past it up to len. */
RNC_KERNEL void rnc_amx_flat_pack_x(const rnc_bf16 *restrict x, rnc_bf16 *restrict xp, int H, int W, int CI, int P,
                                    long len) {
    const int WP = W + 2 * P;
    memset(xp, 0, sizeof(rnc_bf16) * (size_t)len);
    for (int ih = 0; ih < H; ih++)
        memcpy(xp + ((long)(ih + P) * WP + P) * CI, x + (long)ih * W * CI, sizeof(rnc_bf16) * (size_t)W * CI);
}

/* One image's y (OH x OW x CO, as ydt; added to with accumulate) from xp
 * and wk: MT x 16 pixels by NT x 16 channels at a time; with stats, each
 * output row's sums and sums of squares (stats[oh][2][CO]) added to. */
RNC_KERNEL void rnc_amx_flat_image(const rnc_bf16 *restrict xp, const uint32_t *restrict wk, void *restrict y, int ydt,
                                   float *restrict stats, int OH, int OW, int CI, int CO, int K, int WP, int MT, int NT,
                                   int accumulate) {
    const int KC = rnc_amx_flat_chunks(K, CI), Q = OH * WP;
    const long ab = 2L * CI, bb = 4L * CO;   /* row strides in bytes */
    float c[32][32] __attribute__((aligned(64)));
    rnc_amx_shape(16, MT > 1 ? 16 : 0, 16, NT);
    for (int q0 = 0; q0 < Q; q0 += 16 * MT)
        for (int co = 0; co < CO; co += 16 * NT) {
            RNC_AMX_ZERO(0);
            if (NT > 1)
                RNC_AMX_ZERO(1);
            if (MT > 1) {
                RNC_AMX_ZERO(2);
                if (NT > 1)
                    RNC_AMX_ZERO(3);
            }
            for (int kh = 0; kh < K; kh++)
                for (int kc = 0; kc < KC; kc++) {
                    const rnc_bf16 *a = xp + ((long)q0 + (long)kh * WP) * CI + 32 * kc;
                    const uint32_t *b = wk + ((long)kh * KC + kc) * 16 * CO + co;
                    RNC_AMX_LOAD(4, a, ab);
                    RNC_AMX_LOAD(6, b, bb);
                    RNC_AMX_DP(0, 4, 6);
                    if (NT > 1) {
                        RNC_AMX_LOAD(7, b + 16, bb);
                        RNC_AMX_DP(1, 4, 7);
                    }
                    if (MT > 1) {
                        RNC_AMX_LOAD(5, a + 16L * CI, ab);
                        RNC_AMX_DP(2, 5, 6);
                        if (NT > 1)
                            RNC_AMX_DP(3, 5, 7);
                    }
                }
            RNC_AMX_STORE(0, c[0], sizeof c[0]);
            if (NT > 1)
                RNC_AMX_STORE(1, c[0] + 16, sizeof c[0]);
            if (MT > 1) {
                RNC_AMX_STORE(2, c[16], sizeof c[0]);
                if (NT > 1)
                    RNC_AMX_STORE(3, c[16] + 16, sizeof c[0]);
            }
            rnc_vf sum[2] = {{0}}, sq[2] = {{0}};
            int row = -1;   /* the output row sum and sq are for */
            for (int t = 0; t < 16 * MT && q0 + t < Q; t++) {
                const int oh = (q0 + t) / WP, ow = (q0 + t) % WP;
                if (ow >= OW)
                    continue;
                if (stats && oh != row) {
                    for (int v = 0; v < NT && row >= 0; v++) {
                        float *st = stats + (long)row * 2 * CO + co + v * RNC_VL;
                        rnc_vstore(st, rnc_vload(st) + sum[v]);
                        rnc_vstore(st + CO, rnc_vload(st + CO) + sq[v]);
                        sum[v] = sq[v] = (rnc_vf){0};
                    }
                    row = oh;
                }
                for (int v = 0; v < NT; v++) {
                    void *out = rnc_atw(y, ((long)oh * OW + ow) * CO + co + v * RNC_VL, ydt);
                    rnc_vf acc = rnc_vload(c[t] + v * RNC_VL);
                    if (accumulate)
                        acc += rnc_vld(out, RNC_VL, ydt);
                    rnc_vst(out, acc, RNC_VL, ydt);
                    sum[v] += acc;
                    sq[v] += acc * acc;
                }
            }
            for (int v = 0; v < NT && stats && row >= 0; v++) {
                float *st = stats + (long)row * 2 * CO + co + v * RNC_VL;
                rnc_vstore(st, rnc_vload(st) + sum[v]);
                rnc_vstore(st + CO, rnc_vload(st + CO) + sq[v]);
            }
        }
}
#endif   /* __AVX512BW__: the amx targets have it */

/* ---- bf16 weight gradients on dot products ----------------------------
 *
 * dw[tap][ic][oc] = sum over output pixels of x * dy, the pixels taken in
 * pairs along a row (ow = 2j, 2j + 1) as VDPBF16PS's pairs.  Per output row
 * the dy row is packed as pairs, dp[j][oc] = (dy[2j][oc], dy[2j+1][oc]) (0
 * past the row's end), and each input row it reads as xt[ic][phase][m] =
 * x[ih][m*S + phase - P] (0 outside the row): the x of pair j at tap kw is
 * then xt[ic][kw % S][2j + kw / S] and the next element, adjacent as
 * rnc_dot_tile reads a pair.  Exact products, fp32 sums: only the order of
 * the sums differs from the fp32 kernels'. */
RNC_KERNEL int rnc_dot_wg_pairs(int OW) { return (OW + 1) / 2; }
RNC_KERNEL int rnc_dot_wg_span(int OW, int K, int S) { return 2 * rnc_dot_wg_pairs(OW) + (K - 1) / S + 1; }

RNC_KERNEL void rnc_dot_wg_pack_dy(const rnc_bf16 *restrict dy, uint32_t *restrict dp, int OW, int OC) {
    const int JP = rnc_dot_wg_pairs(OW);
    for (int j = 0; j < JP; j++) {
        const rnc_bf16 *a = dy + (long)2 * j * OC, *b = a + OC;
        const int odd = 2 * j + 1 < OW;
        for (int oc = 0; oc < OC; oc++)
            dp[(long)j * OC + oc] = (uint32_t)a[oc] | (odd ? (uint32_t)b[oc] << 16 : 0u);
    }
}

RNC_KERNEL void rnc_dot_wg_pack_x(const rnc_bf16 *restrict xrow, rnc_bf16 *restrict xt, int W, int IC, int OW, int K,
                                  int S, int P) {
    const int MP = rnc_dot_wg_span(OW, K, S);
    for (int ic = 0; ic < IC; ic++)
        for (int ph = 0; ph < S; ph++) {
            rnc_bf16 *o = xt + ((long)ic * S + ph) * MP;
            for (int m = 0; m < MP; m++) {
                const int col = m * S + ph - P;
                o[m] = col >= 0 && col < W ? xrow[(long)col * IC + ic] : 0;
            }
        }
}

/* dw (+)= the sums of output rows [r0, r1) (row = n*OH + oh) for tap
 * (kh, kw), input channels [ic, ic + ICB) and output channels [oc, oc +
 * CV*RNC_VL), from the rows packed by the two functions above: dp holds row
 * r's pairs at dp + (r - r0) * JP * OC, xt row r's K input rows at xt +
 * ((r - r0) * K + kh) * IC * S * MP.  Consecutive rows that read the input
 * (a run inside one image) are one tile's taps, summed in its accumulators.
 * (The AMX weight gradients have their own kernels: rnc_amx_wg_*.) */
RNC_KERNEL void rnc_dot_wg_tile(const rnc_bf16 *restrict xt, const uint32_t *restrict dp, float *restrict dw, int r0,
                                int r1, int kh, int kw, int ic, int oc, int H, int IC, int OH, int OW, int OC, int K,
                                int S, int P, int ICB, int CV) {
    const int JP = rnc_dot_wg_pairs(OW), MP = rnc_dot_wg_span(OW, K, S);
    float *out = dw + (((long)kh * K + kw) * IC + ic) * OC + oc;
    const long xrow = (long)K * IC * S * MP, wrow = (long)JP * OC;   /* one packed row to the next */
    for (int r = r0; r < r1;) {
        const int ih = r % OH * S - P + kh;
        if (ih < 0 || ih >= H) {
            r++;
            continue;
        }
        int run = 1;   /* rows r .. r + run - 1 of one image, each reading its input */
        while (r + run < r1 && (r + run) % OH && (r + run) % OH * S - P + kh < H)
            run++;
        const rnc_bf16 *x = xt + (((long)(r - r0) * K + kh) * IC + ic) * S * MP + (long)(kw % S) * MP + kw / S;
        const float *w = (const float *)(dp + (long)(r - r0) * JP * OC + oc);
        rnc_dot_tile(x, w, out, RNC_F32, ICB, CV, RNC_VL, run, 1, xrow, 0, wrow, 0, JP, OC, S * MP, OC, RNC_ADD, NULL,
                     NULL);
        r += run;
    }
}

/* One tile of any kind: w stored as wdt (RNC_F32, RNC_BF16_PAIRS or RNC_AMX_PAIRS). */
RNC_KERNEL void rnc_any_tile(const void *restrict x, int xdt, const float *restrict w, int wdt, void *restrict y,
                             int ydt, int tw, int cv, int lanes, int nkh, int nkw, long xkh, long xkw, long wkh, long wkw,
                             int R, int wr, int xs, int ys, int accumulate, rnc_vf *restrict sum, rnc_vf *restrict sq) {
    if (wdt == RNC_AMX_PAIRS)
        rnc_amx_tile(x, w, y, ydt, tw, cv, nkh, nkw, xkh, xkw, wkh, wkw, R / 2, wr, xs, ys, accumulate, sum, sq);
    else if (wdt == RNC_BF16_PAIRS)
        rnc_dot_tile(x, w, y, ydt, tw, cv, lanes, nkh, nkw, xkh, xkw, wkh, wkw, R / 2, wr, xs, ys, accumulate, sum,
                     sq);
    else
        rnc_conv_tile(x, xdt, w, y, ydt, tw, cv, lanes, nkh, nkw, xkh, xkw, wkh, wkw, R, wr, xs, ys, accumulate, sum,
                      sq);
}

/* Sums of each channel and of its square over one row of W pixels. */
RNC_KERNEL void rnc_row_sums(const void *restrict x, int xdt, float *restrict part, int W, int C) {
    float *s = part, *q = part + C;
    for (int c = 0; c < C; c++)
        s[c] = q[c] = 0;
    for (int w = 0; w < W; w++)
#pragma omp simd
        for (int c = 0; c < C; c++) {
            const float v = rnc_ld(x, (long)w * C + c, xdt);
            s[c] += v;
            q[c] += v * v;
        }
}

/* Output channels [oc, oc + (cv - 1)*RNC_VL + lanes) of output row `row` (=
 * n*OH + oh) of y = conv(x, w), and with stats their per-channel sums for
 * batch normalization. */
RNC_KERNEL void rnc_conv_fwd_block(const void *restrict x, int xdt, const float *restrict w, int wdt,
                                   void *restrict y, int ydt, float *restrict stats, int row, int oc, int cv,
                                   int lanes, int H, int W, int IC, int OH, int OW, int OC, int K, int S, int P,
                                   int TW) {
    const int n = row / OH, oh = row % OH, ih0 = oh * S - P;
    const int kh0 = rnc_max(0, -ih0), kh1 = rnc_min(K, H - ih0);
    const void *xr = rnc_at(x, ((long)n * H + ih0 + kh0) * W * IC, xdt);
    void *yr = rnc_atw(y, (long)row * OW * OC, ydt);
    /* columns whose whole window is inside the input: [lo, hi) */
    const int lo = rnc_min(OW, (P + S - 1) / S);
    const int hi = rnc_max(lo, rnc_min(OW, W + P - K >= 0 ? (W + P - K) / S + 1 : 0));
    const long pw = wdt == RNC_F32 ? 1 : 2;   /* reduction channels per weight */
    const long xkh = (long)W * IC, wkh = (long)K * IC * OC / pw, wkw = (long)IC * OC / pw;
    const float *wk = w + kh0 * wkh + oc;
    rnc_vf sum[RNC_MAX_CV], sq[RNC_MAX_CV];
    for (int v = 0; v < cv; v++)
        sum[v] = sq[v] = (rnc_vf){0};
    rnc_vf *s = stats ? sum : NULL, *q = stats ? sq : NULL;
    for (int e = 0; e < lo + OW - hi; e++) {   /* border columns: clip the window */
        const int ow = e < lo ? e : hi + e - lo;
        const int iw0 = ow * S - P, kw0 = rnc_max(0, -iw0), kw1 = rnc_min(K, W - iw0);
        rnc_any_tile(rnc_at(xr, (long)(iw0 + kw0) * IC, xdt), xdt, wk + kw0 * wkw, wdt,
                     rnc_atw(yr, (long)ow * OC + oc, ydt), ydt, 1, cv, lanes, kh1 - kh0, kw1 - kw0, xkh, IC, wkh,
                     wkw, IC, OC, S * IC, OC, 0, s, q);
    }
    int ow = lo;
    for (; ow + TW <= hi; ow += TW)
        rnc_any_tile(rnc_at(xr, (long)(ow * S - P) * IC, xdt), xdt, wk, wdt, rnc_atw(yr, (long)ow * OC + oc, ydt), ydt,
                     TW, cv, lanes, kh1 - kh0, K, xkh, IC, wkh, wkw, IC, OC, S * IC, OC, 0, s, q);
    if ((hi - lo) % TW)
        rnc_any_tile(rnc_at(xr, (long)(ow * S - P) * IC, xdt), xdt, wk, wdt, rnc_atw(yr, (long)ow * OC + oc, ydt), ydt,
                     (hi - lo) % TW, cv, lanes, kh1 - kh0, K, xkh, IC, wkh, wkw, IC, OC, S * IC, OC, 0, s, q);
    if (stats)
        for (int v = 0; v < cv; v++) {
            const int l = v == cv - 1 ? lanes : RNC_VL;
            rnc_vstore_n(stats + (long)row * 2 * OC + oc + v * RNC_VL, sum[v], l);
            rnc_vstore_n(stats + (long)row * 2 * OC + OC + oc + v * RNC_VL, sq[v], l);
        }
}

/* Output rows [r0, r1) (row = n*OH + oh) of y = conv(x, w): for each block
 * of CV whole vectors of channels (then the channels past them) every row,
 * so that the block's weights stay in cache across the rows (a cache
 * block of rows; the sums are the same in any order). */
RNC_KERNEL void rnc_conv_fwd_rows(const void *restrict x, int xdt, const float *restrict w, int wdt,
                                  void *restrict y, int ydt, float *restrict stats, int r0, int r1, int H, int W,
                                  int IC, int OH, int OW, int OC, int K, int S, int P, int TW, int CV) {
    const int whole = OC / RNC_VL * RNC_VL;
    for (int oc = 0; oc < whole; oc += CV * RNC_VL)
        for (int row = r0; row < r1; row++)
            rnc_conv_fwd_block(x, xdt, w, wdt, y, ydt, stats, row, oc, CV, RNC_VL, H, W, IC, OH, OW, OC, K, S, P,
                               TW);
    if (OC % RNC_VL)
        for (int row = r0; row < r1; row++)
            rnc_conv_fwd_block(x, xdt, w, wdt, y, ydt, stats, row, whole, 1, OC % RNC_VL, H, W, IC, OH, OW, OC, K, S,
                               P, TW);
}

/* Input channels [ic, ic + (cv - 1)*RNC_VL + lanes) of input-gradient row
 * `row` (= n*H + ih): dx = sum over taps of dy * w, with the weights
 * transposed to wt[K][K][OC][IC].  Pixels of one stride phase (iw = pw +
 * S*j) share their taps, so they form the register tiles. */
RNC_KERNEL void rnc_conv_bwd_data_block(const void *restrict dy, int dydt, const float *restrict wt, int wdt,
                                        void *restrict dx, int dxdt, int row, int ic, int cv, int lanes, int H, int W,
                                        int IC, int OH, int OW, int OC, int K, int S, int P, int TW,
                                        int accumulate) {
    const int n = row / H, ih = row % H;
    int kh0 = (ih + P) % S;
    while (kh0 < K && (ih + P - kh0) / S >= OH)
        kh0 += S;
    int nkh = 0;
    for (int kh = kh0; kh < K && ih + P - kh >= 0; kh += S)
        nkh++;
    const void *dyr = nkh ? rnc_at(dy, ((long)n * OH + (ih + P - kh0) / S) * OW * OC, dydt) : dy;
    void *dxr = rnc_atw(dx, (long)row * W * IC, dxdt);
    const long xkh = -(long)OW * OC, xkw = -(long)OC;
    const long pw = wdt == RNC_F32 ? 1 : 2, tap = (long)OC * IC / pw;   /* a tap's weights */
    const long wkh = S * K * tap, wkw = S * tap;
    const float *wk = wt + (nkh ? kh0 : 0) * K * tap + ic;
    for (int pw = 0; pw < S && pw < W; pw++) {
        const int kw0 = (pw + P) % S;
        const int nkw = kw0 < K ? (K - kw0 + S - 1) / S : 0;
        const int nj = (W - pw + S - 1) / S;
        const int ow0 = (pw + P - kw0) / S;   /* dy column of tap 0 for j = 0 */
        const int jlo = rnc_min(nj, rnc_max(0, nkw - 1 - ow0));
        const int jhi = rnc_max(jlo, rnc_min(nj, OW - ow0));
        for (int e = 0; e < jlo + nj - jhi; e++) {   /* border pixels: clip the taps */
            const int j = e < jlo ? e : jhi + e - jlo;
            const int m0 = rnc_max(0, ow0 + j - OW + 1), m1 = rnc_min(nkw, ow0 + j + 1);
            rnc_any_tile(rnc_at(dyr, (long)(ow0 + j - m0) * OC, dydt), dydt, wk + (kw0 + m0 * S) * tap, wdt,
                         rnc_atw(dxr, (long)(pw + S * j) * IC + ic, dxdt), dxdt, 1, cv, lanes, nkh,
                         rnc_max(0, m1 - m0), xkh, xkw, wkh, wkw, OC, IC, OC, S * IC, accumulate, NULL, NULL);
        }
        int j = jlo;
        for (; j + TW <= jhi; j += TW)
            rnc_any_tile(rnc_at(dyr, (long)(ow0 + j) * OC, dydt), dydt, wk + kw0 * tap, wdt,
                         rnc_atw(dxr, (long)(pw + S * j) * IC + ic, dxdt), dxdt, TW, cv, lanes, nkh, nkw, xkh, xkw,
                         wkh, wkw, OC, IC, OC, S * IC, accumulate, NULL, NULL);
        if (j < jhi)   /* the remainder, as one narrower tile */
            rnc_any_tile(rnc_at(dyr, (long)(ow0 + j) * OC, dydt), dydt, wk + kw0 * tap, wdt,
                         rnc_atw(dxr, (long)(pw + S * j) * IC + ic, dxdt), dxdt, jhi - j, cv, lanes, nkh, nkw, xkh,
                         xkw, wkh, wkw, OC, IC, OC, S * IC, accumulate, NULL, NULL);
    }
}

/* Input-gradient rows [r0, r1) (row = n*H + ih): for each block of CV
 * whole vectors of channels (then the channels past them) every row, its
 * weights staying in cache across the rows. */
RNC_KERNEL void rnc_conv_bwd_data_rows(const void *restrict dy, int dydt, const float *restrict wt, int wdt,
                                       void *restrict dx, int dxdt, int r0, int r1, int H, int W, int IC, int OH,
                                       int OW, int OC, int K, int S, int P, int TW, int CV, int accumulate) {
    const int whole = IC / RNC_VL * RNC_VL;
    for (int ic = 0; ic < whole; ic += CV * RNC_VL)
        for (int row = r0; row < r1; row++)
            rnc_conv_bwd_data_block(dy, dydt, wt, wdt, dx, dxdt, row, ic, CV, RNC_VL, H, W, IC, OH, OW, OC, K, S, P,
                                    TW, accumulate);
    if (IC % RNC_VL)
        for (int row = r0; row < r1; row++)
            rnc_conv_bwd_data_block(dy, dydt, wt, wdt, dx, dxdt, row, whole, 1, IC % RNC_VL, H, W, IC, OH, OW, OC, K, S,
                                    P, TW, accumulate);
}

/* wt[kh][kw][oc][ic] = w[kh][kw][ic][oc], in 16x16 blocks (whole cache lines
 * both ways) shared among the threads: every data gradient does it once per
 * step, and done serially, by element, it took ~3% of a ResNet-50 step. */
RNC_KERNEL void rnc_transpose_weights(const float *restrict w, float *restrict wt, int K, int IC, int OC) {
    enum { B = 16 };
    const int icb = (IC + B - 1) / B, ocb = (OC + B - 1) / B;
#pragma omp parallel for schedule(static)
    for (long blk = 0; blk < (long)K * K * icb * ocb; blk++) {
        const int k = (int)(blk / ((long)icb * ocb)), i0 = (int)(blk / ocb % icb) * B, o0 = (int)(blk % ocb) * B;
        const int i1 = rnc_min(IC, i0 + B), o1 = rnc_min(OC, o0 + B);
        for (int oc = o0; oc < o1; oc++)
            for (int ic = i0; ic < i1; ic++)
                wt[((long)k * OC + oc) * IC + ic] = w[((long)k * IC + ic) * OC + oc];
    }
}

/* Weight-gradient tile for tap (kh, kw), input channels [ic, ic+ICB) and
 * output channels [oc, oc + (CV - 1)*RNC_VL + lanes): dw (+)= sum of x * dy
 * over output rows [r0, r1) (row = n*OH + oh).  Callers sweep the rows in
 * blocks that stay in cache while every tile a thread owns is updated from
 * them. */
RNC_KERNEL void rnc_conv_bwd_weight_tile(const void *restrict x, int xdt, const void *restrict dy, int dydt,
                                         float *restrict dw, int r0, int r1, int kh, int kw, int ic, int oc, int H,
                                         int W, int IC, int OH, int OW, int OC, int K, int S, int P, int ICB, int CV,
                                         int lanes, int accumulate) {
    float *out = dw + (((long)kh * K + kw) * IC + ic) * OC + oc;
    rnc_vf acc[RNC_MAX_ICB][RNC_MAX_CV];
    for (int i = 0; i < ICB; i++)
        for (int v = 0; v < CV; v++)
            acc[i][v] = accumulate ? rnc_vload_n(out + (long)i * OC + v * RNC_VL, v == CV - 1 ? lanes : RNC_VL)
                                   : (rnc_vf){0};
    /* output columns whose tap (kh, kw) reads inside the input */
    const int ow0 = kw >= P ? 0 : (P - kw + S - 1) / S;
    const int ow1 = W - 1 + P - kw >= 0 ? rnc_min(OW, (W - 1 + P - kw) / S + 1) : 0;
    for (int row = r0; row < r1; row++) {
        const int n = row / OH, oh = row % OH, ih = oh * S - P + kh;
        if (ih < 0 || ih >= H)
            continue;
        const void *xp = rnc_at(x, (((long)n * H + ih) * W + ow0 * S - P + kw) * IC + ic, xdt);
        const void *dp = rnc_at(dy, ((long)row * OW + ow0) * OC + oc, dydt);
        for (int ow = ow0; ow < ow1; ow++, xp = rnc_at(xp, S * IC, xdt), dp = rnc_at(dp, OC, dydt)) {
            rnc_vf d[RNC_MAX_CV];
            for (int v = 0; v < CV; v++)
                d[v] = rnc_vld(rnc_at(dp, v * RNC_VL, dydt), v == CV - 1 ? lanes : RNC_VL, dydt);
            for (int i = 0; i < ICB; i++) {
                const float s = rnc_ld(xp, i, xdt);
                for (int v = 0; v < CV; v++)
                    acc[i][v] += s * d[v];
            }
        }
    }
    for (int i = 0; i < ICB; i++)
        for (int v = 0; v < CV; v++)
            rnc_vstore_n(out + (long)i * OC + v * RNC_VL, acc[i][v], v == CV - 1 ? lanes : RNC_VL);
}

/* ---- Winograd F(4x4, 3x3): 3x3 stride-1 convolutions ------------------------
 *
 * y = A^T [ (G g G^T) . (B^T d B) ] A for every 4x4 output tile (Lavin & Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2016): 36 multiplies
 * per tile and channel pair instead of 144.  Per block of tiles the 6x6
 * input tiles are transformed into V[36][TB][IC], each of the 36 points is a
 * small matrix product M[xi] = V[xi] U[xi] with U[36][IC][OC] the transformed
 * weights, and the 6x6 results are transformed back.  The data gradient of a
 * 3x3 stride-1 convolution is the same computation on dy with the weights
 * flipped and transposed, and pad 2 - P.  A block holds whole rows of tiles,
 * so BN statistics of an output row come from exactly one block. */

enum { RNC_WG_POINTS = 36 };

/* r = G s over three vectors: the six rows of the 6x3 weight transform.
 * Divisions, not multiplies by 1/6: no compiler may fuse them into FMAs, so
 * gcc and Clang (the JIT) transform the weights bit for bit alike. */
RNC_KERNEL void rnc_wg_g(const rnc_vf s[3], rnc_vf r[6]) {
    const rnc_vf a = s[0] / 24, b = s[1] / 12, c = s[2] / 6;
    r[0] = s[0] / 4;
    r[1] = -(s[0] + s[1] + s[2]) / 6;
    r[2] = -(s[0] - s[1] + s[2]) / 6;
    r[3] = a + b + c;
    r[4] = a - b + c;
    r[5] = s[2];
}

/* u[xi][a][b] = (G g G^T)[xi] for one reduction channel a, all b, where
 * g[kh][kw] = w[kh][kw][a][b] (forward) or w[2-kh][2-kw][b][a] (flip:
 * data gradient, a = output channel of w).  Sixteen b at a time, so every
 * store is a whole vector of u (the flipped loads gather along b). */
RNC_KERNEL void rnc_wg_weights(const float *restrict w, float *restrict u, int a, int A, int B, int flip) {
    for (int b0 = 0; b0 < B; b0 += RNC_VL) {
        const int nb = rnc_min(RNC_VL, B - b0);
        rnc_vf g[3][3], t[6][3];
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                if (!flip && nb == RNC_VL) {
                    g[kh][kw] = rnc_vload(w + ((long)(kh * 3 + kw) * A + a) * B + b0);
                    continue;
                }
                rnc_vf v = {0};
                for (int l = 0; l < nb; l++)
                    v[l] = flip ? w[((long)((2 - kh) * 3 + 2 - kw) * B + b0 + l) * A + a]
                                : w[((long)(kh * 3 + kw) * A + a) * B + b0 + l];
                g[kh][kw] = v;
            }
        for (int kw = 0; kw < 3; kw++) {   /* t = G g, column by column */
            rnc_vf col[3] = {g[0][kw], g[1][kw], g[2][kw]}, r[6];
            rnc_wg_g(col, r);
            for (int i = 0; i < 6; i++)
                t[i][kw] = r[i];
        }
        for (int i = 0; i < 6; i++) {   /* u = t G^T, row by row */
            rnc_vf r[6];
            rnc_wg_g(t[i], r);
            for (int j = 0; j < 6; j++) {
                float *dst = u + ((long)(i * 6 + j) * A + a) * B + b0;
                if (nb == RNC_VL)
                    rnc_vstore(dst, r[j]);
                else
                    for (int l = 0; l < nb; l++)
                        dst[l] = r[j][l];
            }
        }
    }
}

/* r = B^T d over six vectors (stride 1 in units of vectors). */
RNC_KERNEL void rnc_wg_bt(const rnc_vf d[6], rnc_vf r[6]) {
    const rnc_vf four = (rnc_vf){0} + 4, two = (rnc_vf){0} + 2, five = (rnc_vf){0} + 5;
    r[0] = four * d[0] - five * d[2] + d[4];
    r[1] = (d[3] + d[4]) - four * (d[1] + d[2]);
    r[2] = (d[4] - d[3]) + four * (d[1] - d[2]);
    r[3] = (d[4] - d[2]) + two * (d[3] - d[1]);
    r[4] = (d[4] - d[2]) - two * (d[3] - d[1]);
    r[5] = four * d[1] - five * d[3] + d[5];
}

/* r = A^T m over six vectors: four outputs. */
RNC_KERNEL void rnc_wg_at(const rnc_vf m[6], rnc_vf r[4]) {
    const rnc_vf a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
    r[0] = m[0] + a + c;
    r[1] = b + 2 * d;
    r[2] = a + 4 * c;
    r[3] = b + 8 * d + m[5];
}

/* Transforms input tile (n, th, tw) into V[xi][t][C] for every channel vector. */
RNC_KERNEL void rnc_wg_input_tile(const void *restrict x, int xdt, float *restrict v, int t, int n, int th, int tw,
                                  int H, int W, int C, int P, int TB) {
    const int ih0 = th * 4 - P, iw0 = tw * 4 - P;
    const int inside = ih0 >= 0 && iw0 >= 0 && ih0 + 6 <= H && iw0 + 6 <= W;
    for (int c = 0; c < C; c += RNC_VL) {
        rnc_vf d[6][6], e[6][6];
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++) {
                const int ih = ih0 + i, iw = iw0 + j;
                d[i][j] = inside || (ih >= 0 && ih < H && iw >= 0 && iw < W)
                              ? rnc_vld(rnc_at(x, (((long)n * H + ih) * W + iw) * C + c, xdt), RNC_VL, xdt)
                              : (rnc_vf){0};
            }
        for (int j = 0; j < 6; j++) {   /* columns: e = B^T d */
            rnc_vf col[6], r[6];
            for (int i = 0; i < 6; i++)
                col[i] = d[i][j];
            rnc_wg_bt(col, r);
            for (int i = 0; i < 6; i++)
                e[i][j] = r[i];
        }
        for (int i = 0; i < 6; i++) {   /* rows: V = e B */
            rnc_vf r[6];
            rnc_wg_bt(e[i], r);
            for (int j = 0; j < 6; j++)
                rnc_vstore(v + ((long)(i * 6 + j) * TB + t) * C + c, r[j]);
        }
    }
}

/* Transforms M[xi][t][OC] of tile (n, th, tw) back into the 4x4 outputs it
 * covers (clipped at the edges), overwriting or adding to y; with stats,
 * adds each channel's sum and sum of squares into stats[0..2*OC). */
RNC_KERNEL void rnc_wg_output_tile(const float *restrict m, void *restrict y, int ydt, float *restrict stats, int t,
                                   int n, int th, int tw, int OH, int OW, int OC, int TB, int accumulate) {
    const int oh0 = th * 4, ow0 = tw * 4;
    const int nh = rnc_min(4, OH - oh0), nw = rnc_min(4, OW - ow0);
    for (int c = 0; c < OC; c += RNC_VL) {
        rnc_vf e[4][6];
        for (int j = 0; j < 6; j++) {   /* columns: e = A^T m */
            rnc_vf col[6], r[4];
            for (int i = 0; i < 6; i++)
                col[i] = rnc_vload(m + ((long)(i * 6 + j) * TB + t) * OC + c);
            rnc_wg_at(col, r);
            for (int i = 0; i < 4; i++)
                e[i][j] = r[i];
        }
        rnc_vf sum = {0}, sq = {0};
        for (int i = 0; i < nh; i++) {   /* rows: y = e A */
            rnc_vf r[4];
            rnc_wg_at(e[i], r);
            void *yr = rnc_atw(y, (((long)n * OH + oh0 + i) * OW + ow0) * OC + c, ydt);
            for (int j = 0; j < nw; j++) {
                void *at = rnc_atw(yr, (long)j * OC, ydt);
                const rnc_vf out = accumulate ? rnc_vld(at, RNC_VL, ydt) + r[j] : r[j];
                rnc_vst(at, out, RNC_VL, ydt);
                sum += out;
                sq += out * out;
            }
        }
        if (stats) {
            rnc_vstore(stats + c, rnc_vload(stats + c) + sum);
            rnc_vstore(stats + OC + c, rnc_vload(stats + OC + c) + sq);
        }
    }
}

/* A block is tile rows [b*RB, b*RB + RB) of the N * ceil(OH/4) rows, TB =
 * RB * ceil(OW/4) tiles, in three steps: each tile's input transform into
 * v[36][TB][IC] (zeros past the last row), one small product per (point,
 * output-channel block) into m[36][TB][OC], and each row of tiles back to
 * the outputs.  With partial, also the per-row BN sums: a tile row's sums go
 * to its first output row, zeros to the others. */
RNC_KERNEL void rnc_wg_block_input(const void *restrict x, int xdt, float *restrict v, int t, int b, int N, int H,
                                   int W, int IC, int OH, int OW, int P, int RB) {
    const int TH = (OH + 3) / 4, TWS = (OW + 3) / 4, TB = RB * TWS, r = b * RB + t / TWS;
    if (r < N * TH)
        rnc_wg_input_tile(x, xdt, v, t, r / TH, r % TH, t % TWS, H, W, IC, P, TB);
    else
        for (int xi = 0; xi < RNC_WG_POINTS; xi++)
            memset(v + ((long)xi * TB + t) * IC, 0, sizeof(float) * IC);
}

RNC_KERNEL void rnc_wg_block_product(const float *restrict v, const float *restrict u, float *restrict m, int xi,
                                     int oc, int TB, int IC, int OC, int TW, int CV) {
    const float *vx = v + (long)xi * TB * IC, *ux = u + (long)xi * IC * OC + oc;
    float *mx = m + (long)xi * TB * OC + oc;
    int t = 0;
    for (; t + TW <= TB; t += TW)
        rnc_conv_tile(vx + (long)t * IC, RNC_F32, ux, mx + (long)t * OC, RNC_F32, TW, CV, RNC_VL, 1, 1, 0, 0, 0, 0, IC,
                      OC, IC, OC, 0, NULL, NULL);
    if (t < TB)
        rnc_conv_tile(vx + (long)t * IC, RNC_F32, ux, mx + (long)t * OC, RNC_F32, TB - t, CV, RNC_VL, 1, 1, 0, 0, 0, 0,
                      IC, OC, IC, OC, 0, NULL, NULL);
}

/* Row k of block b's tiles back to outputs; nothing past the last row. */
RNC_KERNEL void rnc_wg_block_output(const float *restrict m, void *restrict y, int ydt, float *restrict partial,
                                    int k, int b, int N, int OH, int OW, int OC, int RB, int accumulate) {
    const int TH = (OH + 3) / 4, TWS = (OW + 3) / 4, r = b * RB + k, n = r / TH, th = r % TH;
    if (r >= N * TH)
        return;
    float *stats = NULL;
    if (partial) {
        stats = partial + ((long)n * OH + th * 4) * 2 * OC;
        memset(stats, 0, sizeof(float) * 2 * OC * rnc_min(4, OH - th * 4));
    }
    for (int tw = 0; tw < TWS; tw++)
        rnc_wg_output_tile(m, y, ydt, stats, k * TWS + tw, n, th, tw, OH, OW, OC, RB * TWS, accumulate);
}

/* One block by the calling thread alone; v and m are its scratch (36*TB*IC
 * and 36*TB*OC floats). */
RNC_KERNEL void rnc_wg_block(const void *restrict x, int xdt, const float *restrict u, void *restrict y, int ydt,
                             float *restrict partial, float *restrict v, float *restrict m, int b, int N, int H,
                             int W, int IC, int OH, int OW, int OC, int P, int RB, int TW, int CV,
                             int accumulate) {
    const int TB = RB * ((OW + 3) / 4);
    for (int t = 0; t < TB; t++)
        rnc_wg_block_input(x, xdt, v, t, b, N, H, W, IC, OH, OW, P, RB);
    for (int xi = 0; xi < RNC_WG_POINTS; xi++)
        for (int oc = 0; oc < OC; oc += CV * RNC_VL)
            rnc_wg_block_product(v, u, m, xi, oc, TB, IC, OC, TW, CV);
    for (int k = 0; k < RB; k++)
        rnc_wg_block_output(m, y, ydt, partial, k, b, N, OH, OW, OC, RB, accumulate);
}

/* One block by all threads of the enclosing parallel region together (for
 * layers with fewer blocks than threads): tiles, (point, channel block)
 * products and tile rows are each shared out, so a thread reads only its
 * part of the transformed weights.  v and m are one scratch for the team. */
RNC_KERNEL void rnc_wg_block_shared(const void *restrict x, int xdt, const float *restrict u, void *restrict y,
                                    int ydt, float *restrict partial, float *restrict v, float *restrict m, int b,
                                    int N, int H, int W, int IC, int OH, int OW, int OC, int P, int RB, int TW,
                                    int CV, int accumulate) {
    const int TB = RB * ((OW + 3) / 4), OCB = OC / (CV * RNC_VL);
#pragma omp for schedule(static)
    for (int t = 0; t < TB; t++)
        rnc_wg_block_input(x, xdt, v, t, b, N, H, W, IC, OH, OW, P, RB);
#pragma omp for schedule(static)
    for (int item = 0; item < RNC_WG_POINTS * OCB; item++)
        rnc_wg_block_product(v, u, m, item / OCB, item % OCB * CV * RNC_VL, TB, IC, OC, TW, CV);
#pragma omp for schedule(static)
    for (int k = 0; k < RB; k++)
        rnc_wg_block_output(m, y, ydt, partial, k, b, N, OH, OW, OC, RB, accumulate);
}

/* ---- Winograd weight gradient ---------------------------------------------
 *
 * With M = U . V per tile, dL/dU[xi][ic][oc] = sum over tiles of V[xi][t][ic] *
 * (A dY_t A^T)[xi][oc]: 36 small products reducing over the tiles, and
 * dw = G^T dU G.  Each thread owns rows i of the 6x6 points (and blocks of
 * output channels), transforms only those rows of each tile, and adds them
 * up in tile order: no two threads write the same dU, and the sums do not
 * depend on the number of threads. */

#define RNC_WG_MAX_ICB 16   /* Winograd weight gradients: input channels per register tile */

/* V[i][j] for j < 6 (one row of B^T d B) of input tile (n, th, tw), all
 * channel vectors, into v[j][t][C]. */
RNC_KERNEL void rnc_wg_input_row(const void *restrict x, int xdt, float *restrict v, int i, int t, int n, int th,
                                 int tw, int H, int W, int C, int P, int TB) {
    static const float bt[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                   {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
    const int ih0 = th * 4 - P, iw0 = tw * 4 - P;
    for (int c = 0; c < C; c += RNC_VL) {
        rnc_vf e[6], r[6];
        for (int j = 0; j < 6; j++)
            e[j] = (rnc_vf){0};
        for (int k = 0; k < 6; k++) {
            const int ih = ih0 + k;
            if (bt[i][k] == 0 || ih < 0 || ih >= H)
                continue;
            const void *xr = rnc_at(x, (((long)n * H + ih) * W) * C + c, xdt);
            for (int j = 0; j < 6; j++) {
                const int iw = iw0 + j;
                if (iw >= 0 && iw < W)
                    e[j] += bt[i][k] * rnc_vld(rnc_at(xr, (long)iw * C, xdt), RNC_VL, xdt);
            }
        }
        rnc_wg_bt(e, r);
        for (int j = 0; j < 6; j++)
            rnc_vstore(v + ((long)j * TB + t) * C + c, r[j]);
    }
}

/* r = A s for a row of four: the transpose of rnc_wg_at. */
RNC_KERNEL void rnc_wg_a(const rnc_vf s[4], rnc_vf r[6]) {
    const rnc_vf p = s[0] + s[2], q = s[1] + s[3], p4 = s[0] + 4 * s[2], q2 = 2 * s[1] + 8 * s[3];
    r[0] = s[0];
    r[1] = p + q;
    r[2] = p - q;
    r[3] = p4 + q2;
    r[4] = p4 - q2;
    r[5] = s[3];
}

/* Row i of A dY A^T for output tile (n, th, tw), channels [oc, oc + CV*16),
 * into g[j][t][CV*16]; outputs past the edge count as zero. */
RNC_KERNEL void rnc_wg_grad_row(const void *restrict dy, int dydt, float *restrict g, int i, int t, int n, int th,
                                int tw, int OH, int OW, int OC, int oc, int CV, int TB) {
    static const float a[6][4] = {{1, 0, 0, 0}, {1, 1, 1, 1}, {1, -1, 1, -1}, {1, 2, 4, 8}, {1, -2, 4, -8}, {0, 0, 0, 1}};
    const int oh0 = th * 4, ow0 = tw * 4;
    for (int v = 0; v < CV; v++) {
        rnc_vf s[4], r[6];
        for (int l = 0; l < 4; l++)
            s[l] = (rnc_vf){0};
        for (int k = 0; k < 4 && oh0 + k < OH; k++) {
            if (a[i][k] == 0)
                continue;
            const void *dr = rnc_at(dy, (((long)n * OH + oh0 + k) * OW + ow0) * OC + oc + v * RNC_VL, dydt);
            for (int l = 0; l < 4 && ow0 + l < OW; l++)
                s[l] += a[i][k] * rnc_vld(rnc_at(dr, (long)l * OC, dydt), RNC_VL, dydt);
        }
        rnc_wg_a(s, r);
        for (int j = 0; j < 6; j++)
            rnc_vstore(g + ((long)j * TB + t) * CV * RNC_VL + v * RNC_VL, r[j]);
    }
}

/* du[r][v] (+)= sum over nt tiles of v[t][r] * g[t][v]: ICB rows of dU
 * (input channels) x CV vectors of output channels, in registers. */
RNC_KERNEL void rnc_wg_wgrad_tile(const float *restrict v, const float *restrict g, float *restrict du, int nt,
                                  int IC, int OC, int ICB, int CV, int accumulate) {
    rnc_vf acc[RNC_WG_MAX_ICB][RNC_MAX_CV];
    for (int r = 0; r < ICB; r++)
        for (int c = 0; c < CV; c++)
            acc[r][c] = accumulate ? rnc_vload(du + (long)r * OC + c * RNC_VL) : (rnc_vf){0};
    for (int t = 0; t < nt; t++) {
        rnc_vf d[RNC_MAX_CV];
        for (int c = 0; c < CV; c++)
            d[c] = rnc_vload(g + ((long)t * CV + c) * RNC_VL);
        for (int r = 0; r < ICB; r++) {
            const float s = v[(long)t * IC + r];
            for (int c = 0; c < CV; c++)
                acc[r][c] += s * d[c];
        }
    }
    for (int r = 0; r < ICB; r++)
        for (int c = 0; c < CV; c++)
            rnc_vstore(du + (long)r * OC + c * RNC_VL, acc[r][c]);
}

/* dw[kh][kw][a][:] = (G^T dU G)[kh][kw] for input channel a. */
RNC_KERNEL void rnc_wg_wgrad_out(const float *restrict du, float *restrict dw, int a, int IC, int OC) {
    static const float gm[6][3] = {{1.0f / 4, 0, 0},           {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                                   {-1.0f / 6, 1.0f / 6, -1.0f / 6}, {1.0f / 24, 1.0f / 12, 1.0f / 6},
                                   {1.0f / 24, -1.0f / 12, 1.0f / 6}, {0, 0, 1}};
    for (int b = 0; b < OC; b += RNC_VL) {
        rnc_vf t[3][6];
        for (int j = 0; j < 6; j++) {
            rnc_vf col[6];
            for (int i = 0; i < 6; i++)
                col[i] = rnc_vload(du + ((long)(i * 6 + j) * IC + a) * OC + b);
            for (int kh = 0; kh < 3; kh++) {
                rnc_vf s = {0};
                for (int i = 0; i < 6; i++)
                    s += gm[i][kh] * col[i];
                t[kh][j] = s;
            }
        }
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                rnc_vf s = {0};
                for (int j = 0; j < 6; j++)
                    s += gm[j][kw] * t[kh][j];
                rnc_vstore(dw + ((long)(kh * 3 + kw) * IC + a) * OC + b, s);
            }
    }
}

/* The weight gradient's part owned by one thread: items [first, last) of
 * the 6 * (OC / (CV*16)) (point row, output-channel block) pairs, summed
 * over all tiles in blocks of TB; v and g are its scratch (6*TB*IC and
 * 6*TB*CV*16 floats). */
RNC_KERNEL void rnc_wg_wgrad_items(const void *restrict x, int xdt, const void *restrict dy, int dydt,
                                   float *restrict du, float *restrict v, float *restrict g, int first, int last, int N,
                                   int H, int W, int IC, int OH, int OW, int OC, int P, int TB, int ICB, int CV) {
    const int TH = (OH + 3) / 4, TWS = (OW + 3) / 4, TILES = N * TH * TWS, OCB = OC / (CV * RNC_VL);
    for (int t0 = 0; t0 < TILES; t0 += TB) {
        const int nt = rnc_min(TB, TILES - t0);
        int row = -1;   /* the point row whose input transform is in v */
        for (int item = first; item < last; item++) {
            const int i = item / OCB, oc = item % OCB * CV * RNC_VL;
            for (int t = 0; t < nt; t++) {
                const int tile = t0 + t, n = tile / (TH * TWS), th = tile / TWS % TH, tw = tile % TWS;
                /* a constant row lets the compiler drop the transforms' zero terms */
#define RNC_WG_ROWS(I)                                                          \
    case I:                                                                     \
        if (i != row)                                                           \
            rnc_wg_input_row(x, xdt, v, I, t, n, th, tw, H, W, IC, P, TB);      \
        rnc_wg_grad_row(dy, dydt, g, I, t, n, th, tw, OH, OW, OC, oc, CV, TB);  \
        break;
                switch (i) {
                    RNC_WG_ROWS(0)
                    RNC_WG_ROWS(1)
                    RNC_WG_ROWS(2)
                    RNC_WG_ROWS(3)
                    RNC_WG_ROWS(4)
                    RNC_WG_ROWS(5)
                }
#undef RNC_WG_ROWS
            }
            row = i;
            for (int j = 0; j < 6; j++)
                for (int ic = 0; ic < IC; ic += ICB)
                    rnc_wg_wgrad_tile(v + (long)j * TB * IC + ic, g + (long)j * TB * CV * RNC_VL,
                                      du + ((long)(i * 6 + j) * IC + ic) * OC + oc, nt, IC, OC, ICB, CV, t0 > 0);
        }
    }
}

/* ---- batch normalization ------------------------------------------------ */

/* Mean and 1/sqrt(var + eps) per channel from per-row sums, in row order. */
static inline void rnc_bn_finalize(const float *restrict part, int rows, int C, double count, double eps,
                                   float *restrict mean, float *restrict invstd) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double s = 0, q = 0;
        for (int r = 0; r < rows; r++) {
            s += part[(long)r * 2 * C + c];
            q += part[(long)r * 2 * C + C + c];
        }
        const double m = s / count, var = q / count - m * m;
        mean[c] = (float)m;
        invstd[c] = (float)(1.0 / sqrt((var > 0 ? var : 0) + eps));
    }
}

/* Batch statistics over several processes (--sync-bn, docs/distributed.md):
 * when a training step is given one (rnc_net.bn_sync), batch norm's
 * per-channel sums are summed over every process's share of the global batch
 * before they are used, so each process normalizes with the global batch's
 * mean and variance.  sum() adds n doubles over the processes in place, in
 * rank order; ranks multiplies the element count.  NULL: this process alone
 * (every function below then computes exactly what it did without it). */
#ifndef RNC_BN_SYNC_DEFINED   /* the same in rnc/model.h */
#define RNC_BN_SYNC_DEFINED
typedef struct rnc_bn_sync {
    void *ctx;
    int ranks;
    void (*sum)(const struct rnc_bn_sync *s, double *v, int n);
} rnc_bn_sync;
#endif

/* The element count behind a channel's statistics: count, or the global one. */
static inline double rnc_bn_count(const rnc_bn_sync *sync, double count) {
    return sync ? count * sync->ranks : count;
}

/* rnc_bn_finalize over the global batch: local sums in row order, summed over
 * the processes (sync), then the same mean and 1/sqrt(var + eps). */
static inline void rnc_bn_finalize_sync(const rnc_bn_sync *sync, const float *restrict part, int rows, int C,
                                        double count, double eps, float *restrict mean, float *restrict invstd) {
    if (!sync) {
        rnc_bn_finalize(part, rows, C, count, eps, mean, invstd);
        return;
    }
    double sums[2 * C];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double s = 0, q = 0;
        for (int r = 0; r < rows; r++) {
            s += part[(long)r * 2 * C + c];
            q += part[(long)r * 2 * C + C + c];
        }
        sums[c] = s;
        sums[C + c] = q;
    }
    sync->sum(sync, sums, 2 * C);
    count *= sync->ranks;
    for (int c = 0; c < C; c++) {
        const double m = sums[c] / count, var = sums[C + c] / count - m * m;
        mean[c] = (float)m;
        invstd[c] = (float)(1.0 / sqrt((var > 0 ? var : 0) + eps));
    }
}

/* Batch norm backward's two per-channel sums (of g and g*xhat) over the
 * global batch, in place; returns the global element count. */
static inline double rnc_bn_sync_sums(const rnc_bn_sync *sync, double *restrict sg, double *restrict sgx, int C,
                                      double count) {
    double sums[2 * C];
    for (int c = 0; c < C; c++) {
        sums[c] = sg[c];
        sums[C + c] = sgx[c];
    }
    sync->sum(sync, sums, 2 * C);
    for (int c = 0; c < C; c++) {
        sg[c] = sums[c];
        sgx[c] = sums[C + c];
    }
    return count * sync->ranks;
}

/* Running statistics, PyTorch's convention (unbiased variance). */
static inline void rnc_bn_update_running(const float *restrict mean, const float *restrict invstd,
                                         float *restrict rmean, float *restrict rvar, int C, double count,
                                         double eps, double momentum) {
    for (int c = 0; c < C; c++) {
        const double var = 1.0 / ((double)invstd[c] * invstd[c]) - eps;
        rmean[c] = (float)((1 - momentum) * rmean[c] + momentum * mean[c]);
        rvar[c] = (float)((1 - momentum) * rvar[c] + momentum * var * count / (count - 1));
    }
}

/* A training BN's per-channel affine map from its batch statistics. */
static inline void rnc_bn_scale_shift(const float *restrict gamma, const float *restrict beta,
                                      const float *restrict mean, const float *restrict invstd,
                                      float *restrict scale, float *restrict shift, int C) {
    for (int c = 0; c < C; c++) {
        scale[c] = gamma[c] * invstd[c];
        shift[c] = beta[c] - mean[c] * scale[c];
    }
}

/* scale*x + shift: one expression, in the forward pass and where the
 * backward pass recomputes it for the ReLU's mask, so that both round
 * alike (contracted to one FMA or not, the same in both). */
static inline float rnc_bn_affine(float x, float scale, float shift) { return x * scale + shift; }
static inline rnc_vf rnc_bn_vaffine(rnc_vf x, rnc_vf scale, rnc_vf shift) { return x * scale + shift; }

/* y = scale*x + shift (+ res), then ReLU if asked, over one row.  Channels
 * filling vectors are written as vector code: from the plain loops Clang
 * (the JIT) made a loop over pixels with gathers, 9x slower than GCC's
 * (bench/bn_bandwidth.c). */
RNC_KERNEL void rnc_bn_apply_row(const void *restrict x, int xdt, const void *restrict res, int rdt,
                                 void *restrict y, int ydt, const float *restrict scale, const float *restrict shift,
                                 int W, int C, int relu) {
    if (C % RNC_VL == 0) {
        const rnc_vf zero = {0};
        for (int w = 0; w < W; w++)
            for (int c = 0; c < C; c += RNC_VL) {
                const long i = (long)w * C + c;
                rnc_vf v = rnc_bn_vaffine(rnc_vld(rnc_at(x, i, xdt), RNC_VL, xdt), rnc_vload(scale + c),
                                          rnc_vload(shift + c));
                if (res)
                    v += rnc_vld(rnc_at(res, i, rdt), RNC_VL, rdt);
                if (relu)
                    v = (rnc_vf)((rnc_vi)v & (v > zero));   /* +0 where v <= 0 or NaN, as the loop below */
                rnc_vst(rnc_atw(y, i, ydt), v, RNC_VL, ydt);
            }
        return;
    }
    for (int w = 0; w < W; w++)
#pragma omp simd
        for (int c = 0; c < C; c++) {
            const long i = (long)w * C + c;
            float v = rnc_bn_affine(rnc_ld(x, i, xdt), scale[c], shift[c]);
            if (res)
                v += rnc_ld(res, i, rdt);
            rnc_st(y, i, relu ? (v > 0 ? v : 0) : v, ydt);
        }
}

/* The ReLU's mask in the backward pass: y > 0, or, where the forward pass
 * added no residual (y NULL), its pre-activation scale*x + shift > 0
 * recomputed, which is the same test and saves reading y. */
static inline int rnc_bn_live(const void *restrict y, const void *restrict x, long i, int dt, float scale,
                               float shift) {
    return y ? rnc_ld(y, i, dt) > 0 : rnc_bn_affine(rnc_ld(x, i, dt), scale, shift) > 0;
}
static inline rnc_vf rnc_bn_vmask(rnc_vf g, const void *restrict y, rnc_vf x, long i, int dt, rnc_vf scale,
                                  rnc_vf shift) {
    const rnc_vf zero = {0}, v = y ? rnc_vld(rnc_at(y, i, dt), RNC_VL, dt) : rnc_bn_vaffine(x, scale, shift);
    return (rnc_vf)((rnc_vi)g & (v > zero));
}

/* Per-row sums of g and g*xhat, g = dy masked by the ReLU when relu (by y,
 * or with y NULL by the forward's scale and shift: rnc_bn_live; both are
 * always given). */
RNC_KERNEL void rnc_bn_bwd_sums_row(const void *restrict x, const void *restrict y, const void *restrict dy, int dt,
                                    const float *restrict mean, const float *restrict invstd,
                                    const float *restrict scale, const float *restrict shift,
                                    float *restrict part, int W, int C, int relu) {
    float *sg = part, *sgx = part + C;
    /* bf16 in vector code, converted a vector at a time: GCC's loops below
     * convert an element at a time (ResNet-20's BN backward passes took 12.3
     * ms per step in bf16 that way, 6.8 so; in fp32 the loops below are
     * 10% faster than this code, so fp32 keeps them). */
    if (dt == RNC_BF16 && C % RNC_VL == 0) {
        const rnc_vf zero = {0};
        for (int c = 0; c < C; c += RNC_VL) {
            const rnc_vf m = rnc_vload(mean + c), is = rnc_vload(invstd + c);
            const rnc_vf sc = rnc_vload(scale + c), sh = rnc_vload(shift + c);
            rnc_vf s[2] = {zero, zero}, q[2] = {zero, zero};   /* two chains: even and odd pixels */
            for (int w = 0; w < W; w++) {
                const long i = (long)w * C + c;
                const rnc_vf xv = rnc_vld(rnc_at(x, i, dt), RNC_VL, dt);
                rnc_vf g = rnc_vld(rnc_at(dy, i, dt), RNC_VL, dt);
                if (relu)
                    g = rnc_bn_vmask(g, y, xv, i, dt, sc, sh);
                s[w & 1] += g;
                q[w & 1] += g * (xv - m) * is;
            }
            rnc_vstore(sg + c, s[0] + s[1]);
            rnc_vstore(sgx + c, q[0] + q[1]);
        }
        return;
    }
    for (int c = 0; c < C; c++)
        sg[c] = sgx[c] = 0;
    for (int w = 0; w < W; w++)
#pragma omp simd
        for (int c = 0; c < C; c++) {
            const long i = (long)w * C + c;
            const float g = !relu || rnc_bn_live(y, x, i, dt, scale[c], shift[c]) ? rnc_ld(dy, i, dt) : 0;
            sg[c] += g;
            sgx[c] += g * (rnc_ld(x, i, dt) - mean[c]) * invstd[c];
        }
}

/* dx (+)= scale*(g - b - xhat*c3) and dres (+)= g over one row: scale =
 * gamma*invstd is the forward's, which is also dx's factor. */
RNC_KERNEL void rnc_bn_bwd_dx_row(const void *restrict x, const void *restrict y, const void *restrict dy, int dt,
                                  const float *restrict mean, const float *restrict invstd,
                                  const float *restrict scale, const float *restrict shift,
                                  const float *restrict b, const float *restrict c3,
                                  void *restrict dx, void *restrict dres, int W, int C, int relu, int acc_dx,
                                  int acc_res) {
    if (dt == RNC_BF16 && C % RNC_VL == 0) {   /* as rnc_bn_bwd_sums_row */
        for (int c = 0; c < C; c += RNC_VL) {
            const rnc_vf m = rnc_vload(mean + c), is = rnc_vload(invstd + c);
            const rnc_vf vb = rnc_vload(b + c), vc = rnc_vload(c3 + c);
            const rnc_vf sc = rnc_vload(scale + c), sh = rnc_vload(shift + c);
            for (int w = 0; w < W; w++) {
                const long i = (long)w * C + c;
                const rnc_vf xv = rnc_vld(rnc_at(x, i, dt), RNC_VL, dt);
                rnc_vf g = rnc_vld(rnc_at(dy, i, dt), RNC_VL, dt);
                if (relu)
                    g = rnc_bn_vmask(g, y, xv, i, dt, sc, sh);
                const rnc_vf xhat = (xv - m) * is;
                rnc_vf d = sc * (g - vb - xhat * vc);
                if (acc_dx)
                    d = rnc_vld(rnc_at(dx, i, dt), RNC_VL, dt) + d;
                rnc_vst(rnc_atw(dx, i, dt), d, RNC_VL, dt);
                if (dres)
                    rnc_vst(rnc_atw(dres, i, dt), acc_res ? rnc_vld(rnc_at(dres, i, dt), RNC_VL, dt) + g : g, RNC_VL,
                            dt);
            }
        }
        return;
    }
    for (int w = 0; w < W; w++)
#pragma omp simd
        for (int c = 0; c < C; c++) {
            const long i = (long)w * C + c;
            const float g = !relu || rnc_bn_live(y, x, i, dt, scale[c], shift[c]) ? rnc_ld(dy, i, dt) : 0;
            const float xhat = (rnc_ld(x, i, dt) - mean[c]) * invstd[c];
            const float d = scale[c] * (g - b[c] - xhat * c3[c]);
            rnc_st(dx, i, acc_dx ? rnc_ld(dx, i, dt) + d : d, dt);
            if (dres)
                rnc_st(dres, i, acc_res ? rnc_ld(dres, i, dt) + g : g, dt);
        }
}

#endif
