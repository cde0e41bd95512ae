/* torchnames.c - rnc's tensor names and layouts <-> torchvision's ResNets
 * (the mapping: include/rnc/safetensors.h, docs/weights.md).  Pure string
 * and index work, shared by the runtime and the compiler. */
#include <stdio.h>
#include <string.h>

#include "rnc/safetensors.h"

/* The layer part: "stem.conv" -> "conv1"; 0 when rnc has no such layer. */
static int torch_layer(const char *layer, char *out, size_t size) {
    static const char *const fixed[][2] = {
        {"stem.conv", "conv1"}, {"stem.bn", "bn1"}, {"head.fc", "fc"}, {"head.bn", "bn_final"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!strcmp(layer, fixed[i][0]))
            return snprintf(out, size, "%s", fixed[i][1]) < (int)size ? 1 : -1;
    int stage, block, at = 0;
    if (sscanf(layer, "stage%d.block%d.%n", &stage, &block, &at) != 2 || at == 0 || stage < 1 || block < 1)
        return 0;
    const char *rest = layer + at;
    if (!strcmp(rest, "shortcut.conv"))
        rest = "downsample.0";
    else if (!strcmp(rest, "shortcut.bn"))
        rest = "downsample.1";
    else if (strncmp(rest, "conv", 4) && strncmp(rest, "bn", 2))
        return 0;
    int n = snprintf(out, size, "layer%d.%d.%s", stage, block - 1, rest);
    return n >= 0 && n < (int)size ? 1 : -1;
}

int rnc_torch_name(const char *rnc_name, char *out, size_t size) {
    const char *dot = strrchr(rnc_name, '.');
    if (!dot)
        return 0;
    const char *field = dot + 1;
    static const char *const fields[][2] = {
        {"weight", "weight"}, {"bias", "bias"}, {"gamma", "weight"}, {"beta", "bias"},
        {"running_mean", "running_mean"}, {"running_var", "running_var"},
    };
    const char *tf = NULL;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!strcmp(field, fields[i][0]))
            tf = fields[i][1];
    char layer[256], tl[256];
    if (!tf || (size_t)(dot - rnc_name) >= sizeof layer)
        return 0;
    memcpy(layer, rnc_name, (size_t)(dot - rnc_name));
    layer[dot - rnc_name] = '\0';
    int r = torch_layer(layer, tl, sizeof tl);
    if (r <= 0)
        return r;
    int n = snprintf(out, size, "%s.%s", tl, tf);
    return n >= 0 && n < (int)size ? 1 : -1;
}

int rnc_torch_shape(int rank, const int *shape, int64_t *ts) {
    if (rank == 4) {   /* [K][K][IC][OC] -> [OC][IC][K][K] */
        ts[0] = shape[3], ts[1] = shape[2], ts[2] = shape[0], ts[3] = shape[1];
    } else if (rank == 2) {   /* [IN][OUT] -> [OUT][IN] */
        ts[0] = shape[1], ts[1] = shape[0];
    } else {
        for (int i = 0; i < rank; i++)
            ts[i] = shape[i];
    }
    return rank;
}

/* from_rnc: rnc -> torch; else torch -> rnc.  The index pairs are the same. */
static void convert(int rank, const int *shape, const float *src, float *dst, int from_rnc) {
    if (rank == 4) {
        const size_t KH = (size_t)shape[0], KW = (size_t)shape[1], IC = (size_t)shape[2], OC = (size_t)shape[3];
        for (size_t kh = 0; kh < KH; kh++)
            for (size_t kw = 0; kw < KW; kw++)
                for (size_t ic = 0; ic < IC; ic++)
                    for (size_t oc = 0; oc < OC; oc++) {
                        size_t r = ((kh * KW + kw) * IC + ic) * OC + oc, t = ((oc * IC + ic) * KH + kh) * KW + kw;
                        if (from_rnc)
                            dst[t] = src[r];
                        else
                            dst[r] = src[t];
                    }
    } else if (rank == 2) {
        const size_t IN = (size_t)shape[0], OUT = (size_t)shape[1];
        for (size_t i = 0; i < IN; i++)
            for (size_t o = 0; o < OUT; o++) {
                if (from_rnc)
                    dst[o * IN + i] = src[i * OUT + o];
                else
                    dst[i * OUT + o] = src[o * IN + i];
            }
    } else {
        size_t n = 1;
        for (int i = 0; i < rank; i++)
            n *= (size_t)shape[i];
        memcpy(dst, src, n * sizeof *dst);
    }
}

void rnc_to_torch_layout(int rank, const int *shape, const float *src, float *dst) {
    convert(rank, shape, src, dst, 1);
}

void rnc_from_torch_layout(int rank, const int *shape, const float *src, float *dst) {
    convert(rank, shape, src, dst, 0);
}
