/* rng.c - deterministic random numbers.
 *
 * Generator: xoshiro256** (Blackman & Vigna), seeded through splitmix64.
 * Streams: rather than one generator advanced through the whole run (whose
 * state would depend on everything drawn before), every consumer asks for
 * the stream of a key (seed, domain, a, b). The key is hashed with the
 * splitmix64 finalizer, so any two keys give unrelated streams and a stream
 * can be recreated at any point of a run - which is what makes --resume
 * exact and batch assembly parallel.
 */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include <math.h>

#include "rnc/runtime.h"

uint64_t rnc_mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t splitmix64(uint64_t *state) {
    *state += 0x9e3779b97f4a7c15ULL;
    return rnc_mix64(*state);
}

void rnc_rng_seed(rnc_rng *r, uint64_t seed) {
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&sm);
    /* splitmix64 outputs are a bijection of distinct counters, so all four
     * words cannot be zero; xoshiro's one forbidden state is avoided. */
}

rnc_rng rnc_rng_stream(uint64_t seed, uint64_t domain, uint64_t a, uint64_t b) {
    /* Each word goes through a different odd multiplier before mixing so that
     * swapping fields (a <-> b) gives a different key. */
    uint64_t h = rnc_mix64(seed ^ 0x6a09e667f3bcc909ULL);
    h = rnc_mix64(h ^ (domain * 0x9e3779b97f4a7c15ULL));
    h = rnc_mix64(h ^ (a * 0xc2b2ae3d27d4eb4fULL + 1));
    h = rnc_mix64(h ^ (b * 0x165667b19e3779f9ULL + 2));
    rnc_rng r;
    rnc_rng_seed(&r, h);
    return r;
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t rnc_rng_u64(rnc_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t rnc_rng_below(rnc_rng *r, uint32_t n) {
    /* Lemire's multiply-and-reject: unbiased without a division per draw. */
    uint64_t m = (uint64_t)(uint32_t)(rnc_rng_u64(r) >> 32) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = -n % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)(rnc_rng_u64(r) >> 32) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double rnc_rng_uniform(rnc_rng *r) {
    return (double)(rnc_rng_u64(r) >> 11) * 0x1.0p-53;
}

double rnc_rng_normal(rnc_rng *r) {
    /* Box-Muller with u1 in (0, 1] so the log is finite. One value per call
     * (the sine partner is dropped) keeps the stream position simple. */
    double u1 = (double)((rnc_rng_u64(r) >> 11) + 1) * 0x1.0p-53;
    double u2 = rnc_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}
