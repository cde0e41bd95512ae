/* families.c - the kernel families, in the order the default schedule tries
 * them (the first that applies and prefers an op computes it), and what the
 * rest of the compiler asks of a family.  Adding a family is a file under
 * compiler/kernels/ and a line here (docs/architecture.md). */
#include <string.h>
#include "rnc.h"

extern const KernelFamily family_conv_amx_flat, family_conv_amx, family_conv_winograd, family_conv_bf16dot, family_conv_direct, family_conv_reference;
extern const KernelFamily family_batchnorm, family_small_ops;

const KernelFamily *const kernel_families[] = {
    &family_conv_amx_flat,    /* bf16 stride-1 layers on AMX tiles, images padded and flattened */
    &family_conv_amx,         /* bf16 inputs on AMX tiles (--precision bf16) */
    &family_conv_winograd,    /* 3x3 stride 1, wide enough layers */
    &family_conv_bf16dot,     /* bf16 inputs on AVX512-BF16 (--precision bf16) */
    &family_conv_direct,      /* any conv whose channels fill vectors */
    &family_conv_reference,   /* any conv; the reference for the others */
    &family_batchnorm,
    &family_small_ops,        /* ReLU, addition, shortcut, pooling, classifier, loss */
    NULL,
};

const KernelFamily *family_named(const char *name) {
    for (int i = 0; kernel_families[i]; i++)
        if (!strcmp(kernel_families[i]->name, name))
            return kernel_families[i];
    return NULL;
}

int family_params(const KernelFamily *f, const Op *op) { return f->params ? f->params(op)->n : 0; }

bool family_legal(const KernelFamily *f, const Graph *g, const Op *op, const int *p) {
    if (!f || !f->applies(g, op))
        return false;
    return !f->legal || f->legal(g, op, p);
}

bool family_default(const KernelFamily *f, const Graph *g, const Op *op, OpSchedule *s) {
    if (!f->applies(g, op))
        return false;
    *s = (OpSchedule){.family = f};
    if (f->defaults)
        f->defaults(g, op, s->p);
    if (!family_legal(f, g, op, s->p))
        fatal("internal error: the %s family's default schedule for %s (%s) is not legal", f->name, op->name,
              op_kind_name(op->kind));
    return true;
}

const KernelFamily *reference_family(const Graph *g, const Op *op) {
    for (int i = 0; kernel_families[i]; i++)
        if (kernel_families[i]->reference && kernel_families[i]->applies(g, op))
            return kernel_families[i];
    fatal("internal error: no reference family computes %s (%s)", op->name, op_kind_name(op->kind));
}

void sched_text(const OpSchedule *s, const Op *op, char *buf, size_t size) {
    int n = snprintf(buf, size, "%s", s->family->name);
    const SchedParams *ps = s->family->params ? s->family->params(op) : NULL;
    for (int i = 0; ps && i < ps->n && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s %s %d", i ? "," : "", ps->p[i].name, s->p[i]);
}

bool sched_equal(const OpSchedule *a, const OpSchedule *b) {
    return a->family == b->family && !memcmp(a->p, b->p, sizeof a->p);
}
