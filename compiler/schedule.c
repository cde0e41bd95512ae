/* schedule.c - how the graph runs: the schedule table's defaults (which
 * kernel family computes each op, with what parameters) and the memory
 * plan.  Nothing here changes what the network computes; the families own
 * their rules (compiler/kernels/), the tuning database may then replace
 * defaults (tunedb_apply), and the plan comes last. */
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

/* The first family that applies and prefers op; the reference schedule
 * takes the first reference family that applies. */
static OpSchedule default_for(const Graph *g, const Op *op, bool reference) {
    for (int i = 0; kernel_families[i]; i++) {
        const KernelFamily *f = kernel_families[i];
        OpSchedule s;
        if (reference && !f->reference)
            continue;
        if (f->applies(g, op) && (reference || !f->preferred || f->preferred(g, op)) && family_default(f, g, op, &s))
            return s;
    }
    fatal("internal error: no kernel family computes %s (%s)", op->name, op_kind_name(op->kind));
}

void schedule_defaults(Graph *g, const ScheduleOptions *opt) {
    if (!target_named(opt->target, &g->target))
        fatal("internal error: target '%s' not checked before the schedule", opt->target);
    g->reference = opt->reference;
    free(g->sched);
    g->sched = xcalloc(g->n_ops > 0 ? g->n_ops : 1, sizeof *g->sched);
    for (int i = 0; i < g->n_ops; i++)
        if (!g->ops[i].dead)
            g->sched[i] = default_for(g, &g->ops[i], opt->reference);
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Every tensor a live op touches, with the step range it must live over. */
static void mark_use(int *first, int *last, int t, int step) {
    if (t < 0)
        return;
    if (first[t] < 0)
        first[t] = step;
    last[t] = step;
}

/* Gradients: reuse a buffer of the same size once its last reader has run.
 * Taken op by op, and within an op by tensor index; each op's gradients
 * are found through a list by first use, so the plan is linear in the
 * graph's size. */
static size_t plan_gradients(Graph *g, const int *first, const int *last, size_t work) {
    typedef struct { size_t offset, bytes; int free_after; } Slot;
    Slot *slots = xcalloc(g->n_tensors, sizeof(Slot));
    int n_slots = 0;
    /* head[i]: the first gradient first used by op i; next[t]: the one after t */
    int *head = xcalloc(g->n_ops > 0 ? g->n_ops : 1, sizeof(int)), *next = xcalloc(g->n_tensors, sizeof(int));
    for (int i = 0; i < g->n_ops; i++)
        head[i] = -1;
    for (int t = g->n_tensors - 1; t >= 0; t--)
        if (g->tensors[t].kind == T_GRAD && first[t] >= g->n_fwd) {
            next[t] = head[first[t]];
            head[first[t]] = t;
        }
    for (int i = g->n_fwd; i < g->n_ops; i++) {
        for (int t = head[i]; t >= 0; t = next[t]) {
            Tensor *T = &g->tensors[t];
            size_t bytes = align64(tensor_bytes(T));
            int s = 0;
            while (s < n_slots && !(slots[s].bytes == bytes && slots[s].free_after < i))
                s++;
            if (s == n_slots) {
                slots[n_slots++] = (Slot){work, bytes, 0};
                work += bytes;
            }
            slots[s].free_after = last[t];
            T->offset = slots[s].offset;
        }
    }
    free(head);
    free(next);
    free(slots);
    return work;
}

/* Scratch shared by kernels that run one at a time: the largest any call
 * of the training step needs (a superset of inference's). */
static ScratchNeed plan_scratch(const Graph *g) {
    ScratchNeed most = {0};
    for (int i = 0; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        const OpSchedule *s = &g->sched[i];
        if (op->dead || !s->family->scratch)
            continue;
        ScratchNeed need = {0};
        KernelCtx k = {.g = g, .op = op, .family = s->family, .p = s->p, .train = true};
        s->family->scratch(&k, &need);
        most.partial = need.partial > most.partial ? need.partial : most.partial;
        most.weights = need.weights > most.weights ? need.weights : most.weights;
        most.thread = need.thread > most.thread ? need.thread : most.thread;
    }
    return most;
}

void plan_memory(Graph *g) {
    int nt = g->n_tensors;
    int *first = xcalloc(nt, sizeof(int)), *last = xcalloc(nt, sizeof(int));
    for (int t = 0; t < nt; t++)
        first[t] = last[t] = -1;
    for (int i = 0; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        if (op->dead)
            continue;
        int ts[OP_TENSORS];
        op_tensors(op, ts);
        for (int k = 0; k < OP_TENSORS; k++)
            mark_use(first, last, ts[k], i);
    }
    size_t params = 0, state = 0, work = 0;
    for (int t = 0; t < nt; t++) {
        Tensor *T = &g->tensors[t];
        if (T->kind == T_PARAM) {
            T->offset = params;
            params += T->count;
        } else if (T->kind == T_STATE) {
            T->offset = state;
            state += T->count;
        } else if ((T->kind == T_ACT || T->kind == T_SCRATCH) && first[t] >= 0) {
            T->offset = work;
            work += align64(tensor_bytes(T));
        }
    }
    g->act_bytes = work;
    work = plan_gradients(g, first, last, work);
    g->grad_bytes = work - g->act_bytes;
    ScratchNeed s = plan_scratch(g);
    g->thread_scratch_bytes = align64(s.thread * 4);
    g->stats_scratch_off = work;
    g->stats_scratch_bytes = align64(s.partial * 4);
    work += g->stats_scratch_bytes;
    g->wgrad_scratch_off = work;
    g->wgrad_scratch_bytes = align64(s.weights * 4);
    work += g->wgrad_scratch_bytes;
    g->param_count = params;
    g->state_count = state;
    g->work_bytes = work;
    free(first);
    free(last);
}

void copy_graph(const Graph *g, Graph *c) {
    *c = *g;
    c->ops = xcalloc(g->n_ops > 0 ? g->n_ops : 1, sizeof(Op));
    memcpy(c->ops, g->ops, sizeof(Op) * g->n_ops);
    c->cap_ops = g->n_ops;
    c->tensors = xcalloc(g->n_tensors > 0 ? g->n_tensors : 1, sizeof(Tensor));
    memcpy(c->tensors, g->tensors, sizeof(Tensor) * g->n_tensors);
    c->cap_tensors = g->n_tensors;
    c->sched = NULL;
    if (g->sched) {
        c->sched = xcalloc(g->n_ops > 0 ? g->n_ops : 1, sizeof(OpSchedule));
        memcpy(c->sched, g->sched, sizeof(OpSchedule) * g->n_ops);
    }
    c->tuned.used = NULL;
    if (g->tuned.n) {
        c->tuned.used = xcalloc(g->tuned.n, sizeof(TunedKernel));
        memcpy(c->tuned.used, g->tuned.used, sizeof(TunedKernel) * g->tuned.n);
    }
}
