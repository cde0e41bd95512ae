/* precision.c - which tensors are stored in bfloat16.
 *
 * Mixed precision as in the standard recipe (Kalamkar et al. 2019, "A Study
 * of BFLOAT16 for Deep Learning Training"; PyTorch's CPU autocast): the
 * activations and their gradients, the bulk of a step's memory and memory
 * traffic, are stored as bf16 (rounded to nearest even); weights and their
 * gradients, momentum, BN statistics, every sum and the loss stay fp32, and
 * every kernel computes in fp32.  The image batch the runtime hands in, the
 * pooled features, the logits and their gradients stay fp32 too: they are
 * small, and the classifier and the loss want them exact. */
#include <string.h>
#include "rnc.h"

const char *precision_name(Precision p) { return p == PRECISION_BF16 ? "bf16" : "fp32"; }

bool parse_precision(const char *text, Precision *p) {
    if (!strcmp(text, "fp32"))
        *p = PRECISION_FP32;
    else if (!strcmp(text, "bf16"))
        *p = PRECISION_BF16;
    else {
        fprintf(stderr, "rnc: error: unknown precision '%s' (fp32 or bf16)\n", text);
        return false;
    }
    return true;
}

size_t tensor_bytes(const Tensor *t) { return t->count * (t->bf16 ? 2 : 4); }

/* The head's tensors: global average pooling's output and everything after. */
static void keep_fp32(Graph *g, int t) {
    if (t < 0)
        return;
    g->tensors[t].bf16 = false;
    if (g->tensors[t].grad >= 0)
        g->tensors[g->tensors[t].grad].bf16 = false;
}

void assign_precision(Graph *g, Precision p) {
    g->precision = p;
    for (int t = 0; t < g->n_tensors; t++) {
        Tensor *T = &g->tensors[t];
        T->bf16 = p == PRECISION_BF16 && (T->kind == T_ACT || T->kind == T_GRAD) && !T->is_int;
    }
    keep_fp32(g, g->input);
    for (int i = 0; i < g->n_fwd; i++)
        if (g->ops[i].kind == OP_GAP || g->ops[i].kind == OP_FC)
            keep_fp32(g, g->ops[i].y);
}
