/* ckpt_diff A.ckpt B.ckpt [TOL [MOMENTUM_TOL]]: how far two checkpoints of one
 * network are apart (rnc/runtime.h's layout; the checksums are the runtime's
 * to check).  Prints, for the parameters, the statistics and the momentum,
 * the largest difference relative to the largest magnitude of A's; exits 1
 * when the parameters' exceeds TOL (default 0: identical) or the momentum's
 * MOMENTUM_TOL (default TOL).  The momentum is a sum of recent gradients,
 * which follow small changes of the weights with a large gain: it may need
 * the looser bound. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t counts[3];
    float *data;
} ckpt;

static int load(const char *path, ckpt *c) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 0;
    }
    char magic[8];
    uint32_t version, tag, name_len;
    int ok = fread(magic, 1, 8, f) == 8 && !memcmp(magic, "RNCCKPT", 8) && fread(&version, 4, 1, f) == 1 &&
             fread(&tag, 4, 1, f) == 1 && fread(&name_len, 4, 1, f) == 1 && name_len < 4096 &&
             fseek(f, name_len, SEEK_CUR) == 0 && fread(c->counts, 8, 3, f) == 3 && fseek(f, 32, SEEK_CUR) == 0;
    uint64_t n = ok ? c->counts[0] + c->counts[1] + c->counts[2] : 0;
    ok = ok && n < (1ull << 32) && (c->data = malloc(n * sizeof(float) + 1)) && fread(c->data, sizeof(float), n, f) == n;
    fclose(f);
    if (!ok)
        fprintf(stderr, "ckpt_diff: %s: not a checkpoint\n", path);
    return ok;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: ckpt_diff A.ckpt B.ckpt [TOL [MOMENTUM_TOL]]\n");
        return 2;
    }
    const double tol = argc > 3 ? atof(argv[3]) : 0, tol_momentum = argc > 4 ? atof(argv[4]) : tol;
    ckpt a = {0}, b = {0};
    if (!load(argv[1], &a) || !load(argv[2], &b))
        return 2;
    if (memcmp(a.counts, b.counts, sizeof a.counts)) {
        fprintf(stderr, "ckpt_diff: the checkpoints are of different networks\n");
        return 1;
    }
    static const char *const what[] = {"parameters", "statistics", "momentum"};
    const float *pa = a.data, *pb = b.data;
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        double dmax = 0, amax = 0, d2 = 0, a2 = 0;
        for (uint64_t i = 0; i < a.counts[k]; i++) {
            double d = fabs((double)pa[i] - pb[i]);
            d2 += d * d;
            a2 += (double)pa[i] * pa[i];
            if (d > dmax || d != d)
                dmax = d;
            if (fabs(pa[i]) > amax)
                amax = fabs(pa[i]);
        }
        double rel = amax > 0 ? dmax / amax : dmax;
        if (a.counts[k])
            printf("%s: %llu values, largest difference %.3g, relative to the largest value %.3g; "
                   "relative L2 distance %.3g\n", what[k], (unsigned long long)a.counts[k], dmax, rel,
                   a2 > 0 ? sqrt(d2 / a2) : sqrt(d2));
        if ((k == 0 && !(rel <= tol)) || (k == 2 && !(rel <= tol_momentum)))
            bad = 1;
        pa += a.counts[k];
        pb += b.counts[k];
    }
    printf("%s\n", bad ? "DIFFERENT" : tol > 0 ? "WITHIN TOLERANCE" : "IDENTICAL");
    free(a.data);
    free(b.data);
    return bad;
}
