/* emit.c - the scheduled graph as one C file.
 *
 * Layout of the output: a header comment, named views into the model's
 * buffers, the kernels (kernels.c), train_step() and infer() calling them
 * layer by layer, and the rnc_model descriptor the runtime reads. */
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

void c_identifier(const char *name, char *out, size_t size) {
    size_t i = 0;
    for (; name[i] && i + 1 < size; i++) {
        char c = name[i];
        out[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) ? c : '_';
    }
    out[i] = '\0';
}

/* The C expression for tensor t (grad: its gradient buffer for parameters). */
static const char *ref(const Graph *g, int t, bool grad) {
    static char bufs[8][160];
    static int next;
    char *buf = bufs[next++ % 8];
    const Tensor *T = &g->tensors[t];
    char name[128];
    c_identifier(T->name, name, sizeof name);
    switch (T->kind) {
    case T_INPUT:
        return "images";
    case T_LABELS:
        return "labels";
    case T_PARAM:
        snprintf(buf, 160, "%s_%s", grad ? "dP" : "P", name);
        break;
    case T_STATE:
        snprintf(buf, 160, "S_%s", name);
        break;
    case T_GRAD:
        snprintf(buf, 160, "G_%s", name + 2);   /* drop the "d_" of "d.<name>" */
        break;
    default:
        snprintf(buf, 160, "%s_%s", T->is_int ? "I" : "A", name);
    }
    return buf;
}

static void emit_views(FILE *out, const Graph *g) {
    fprintf(out, "/* Named views into the model's buffers: parameters and their gradients\n"
                 " * (net->params, net->grads), BN running statistics (net->state), and\n"
                 " * activations, saved statistics and gradients (net->work, byte offsets). */\n");
    for (int t = 0; t < g->n_tensors; t++) {
        const Tensor *T = &g->tensors[t];
        if (T->kind == T_PARAM) {
            fprintf(out, "#define %s (params + %zu)\n", ref(g, t, false), T->offset);
            fprintf(out, "#define %s (grads + %zu)\n", ref(g, t, true), T->offset);
        } else if (T->kind == T_STATE) {
            fprintf(out, "#define %s (state + %zu)\n", ref(g, t, false), T->offset);
        }
    }
    /* Work tensors: only those some live op touches (the plan gave them offsets). */
    bool *used = xcalloc(g->n_tensors, sizeof(bool));
    for (int i = 0; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        if (op->dead)
            continue;
        int ts[OP_TENSORS];
        op_tensors(op, ts);
        for (int k = 0; k < OP_TENSORS; k++)
            if (ts[k] >= 0)
                used[ts[k]] = true;
    }
    for (int t = 0; t < g->n_tensors; t++) {
        const Tensor *T = &g->tensors[t];
        if (!used[t] || !(T->kind == T_ACT || T->kind == T_SCRATCH || T->kind == T_GRAD))
            continue;
        fprintf(out, "#define %s ((%s *)(work + %zu))\n", ref(g, t, false),
                T->is_int ? "int32_t" : T->bf16 ? "rnc_bf16" : "float", T->offset);
    }
    free(used);
    fprintf(out, "#define PARTIAL ((float *)(work + %zu))   /* per-row BN sums */\n", g->stats_scratch_off);
    fprintf(out, "#define WSCRATCH ((float *)(work + %zu))  /* transposed or transformed weights */\n",
            g->wgrad_scratch_off);
    fprintf(out, "#define THREAD_SCRATCH_FLOATS %zu   /* per thread, in net->scratch */\n\n",
            g->thread_scratch_bytes / 4);
}

/* train_step's call sites, named for the profile (model->sites), and the
 * tensors each writes (model->site_writes, for --detect-anomaly). */
typedef struct {
    char **names;
    double *flops;   /* per call: 2 x multiply-adds over the batch */
    int n, cap;
    char *writes;    /* the site_writes[] rows, as C text */
    size_t writes_len;
    FILE *wout;
    int n_writes;
} Sites;

/* The call's comment: the layer, the op, and the shapes it maps (for a
 * backward op, its output gradient's to its input's). */
static void emit_call_comment(FILE *out, const Graph *g, const Op *op) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y >= 0 ? op->y : op->x];
    char from[48], to[48], window[32] = "";
    bool back = is_backward(op->kind) && op->kind != OP_LOSS_BWD;
    tensor_shape_text(back ? y : x, from, sizeof from);
    tensor_shape_text(back ? x : y, to, sizeof to);
    if (is_conv(op->kind) || op->kind == OP_MAXPOOL || op->kind == OP_MAXPOOL_BWD)
        snprintf(window, sizeof window, " %dx%d/%d", op->k, op->k, op->stride);
    if (op->kind == OP_CONV_BWD_WEIGHT)   /* from x and dy to dw */
        fprintf(out, "    /* %s: %s%s, x %s and dy %s -> dw */\n", op->name, op_kind_name(op->kind), window, to,
                from);
    else if (op->kind == OP_LOSS || op->kind == OP_LOSS_BWD)
        fprintf(out, "    /* %s: %s, %s logits */\n", op->name, op_kind_name(op->kind), from);
    else
        fprintf(out, "    /* %s: %s%s%s%s, %s -> %s */\n", op->name, op_kind_name(op->kind), window,
                op->x2 >= 0 && op->kind == OP_BN ? " + residual" : "", op->relu ? " + relu" : "", from, to);
}

/* What a call passes for one kernel parameter. */
static const char *actual(const Graph *g, const KernelArg *a) {
    switch (a->bind) {
    case BIND_TENSOR:
        return ref(g, a->tensor, a->grad);
    case BIND_BN_PARTIAL:
        return "PARTIAL";
    case BIND_WEIGHT_SCRATCH:
        return "WSCRATCH";
    case BIND_THREAD_SCRATCH:
        return "tscratch";
    case BIND_SLOTS:
        return "slots";
    case BIND_LABELS:
        return "labels";
    case BIND_BN_SYNC:
        return "net->bn_sync";
    default:
        return "stats";
    }
}

static void record_site(Sites *sites, const Graph *g, const Op *op, const char *fn) {
    if (sites->n == sites->cap) {
        sites->cap = sites->cap ? 2 * sites->cap : 64;
        sites->names = xrealloc(sites->names, sites->cap * sizeof *sites->names);
        sites->flops = xrealloc(sites->flops, sites->cap * sizeof *sites->flops);
    }
    sites->flops[sites->n] = 2.0 * g->batch * (double)op_multiply_adds(g, op);
    char name[256];
    snprintf(name, sizeof name, "%s: %s %s", op->name, op_kind_name(op->kind), fn);
    sites->names[sites->n++] = xstrdup(name);
}

/* The float tensors a site's kernel writes: {site, buffer, offset in floats, count, name}. */
static void record_writes(Sites *sites, const Graph *g, const KernelArg *args, int n) {
    if (!sites->wout && !(sites->wout = open_memstream(&sites->writes, &sites->writes_len)))
        fatal("out of memory");
    for (int i = 0; i < n; i++) {
        const KernelArg *a = &args[i];
        if (a->bind != BIND_TENSOR || !a->written || g->tensors[a->tensor].is_int)
            continue;
        const Tensor *T = &g->tensors[a->tensor];
        const char *buf = T->kind == T_PARAM ? (a->grad ? "RNC_BUF_GRADS" : "RNC_BUF_PARAMS")
                          : T->kind == T_STATE ? "RNC_BUF_STATE" : "RNC_BUF_WORK";
        size_t off = T->kind == T_PARAM || T->kind == T_STATE ? T->offset : T->offset / 4;
        fprintf(sites->wout, "    {%d, %s, %zu, %zu, \"%s%s\"},\n", sites->n - 1, buf, off, T->count,
                a->grad ? "d." : "", T->name);
        sites->n_writes++;
    }
}

/* Emits op's kernel call, its arguments from the family's parameter list;
 * with sites, timed as the next call site. */
static void emit_call(FILE *out, KernelSet *ks, const Graph *g, const Op *op, bool train, Sites *sites) {
    const OpSchedule *s = &g->sched[op - g->ops];
    const char *fn = kernel_for(ks, g, op, s, train);
    KernelCtx k = {.g = g, .op = op, .family = s->family, .p = s->p, .train = train};
    KernelArg args[KERNEL_MAX_ARGS];
    int n = s->family->args(&k, args);
    emit_call_comment(out, g, op);
    int col;
    if (sites) {
        col = fprintf(out, "    RNC_TIMED(prof, %d, %s(", sites->n, fn);
        record_site(sites, g, op, fn);
        record_writes(sites, g, args, n);
    } else {
        col = fprintf(out, "    %s(", fn);
    }
    for (int i = 0; i < n; i++) {
        const char *a = actual(g, &args[i]);
        int w = (int)strlen(a) + 2;
        if (i && col + w > 112) {
            fprintf(out, ",\n        ");
            col = 8;
        } else if (i) {
            col += fprintf(out, ", ");
        }
        col += fprintf(out, "%s", a);
    }
    if (sites)
        fprintf(out, "));\n    RNC_CHECK(%d);\n", sites->n - 1);
    else
        fprintf(out, ");\n");
}

/* Deep networks (ResNet-1202: ~5,000 calls per step) are split into segment
 * functions of this many calls, which keeps C compilers' time and memory
 * linear in depth instead of blowing up on one enormous function. */
enum { SEGMENT_CALLS = 64 };

/* Does the C text use identifier prefix `name` (not as part of a longer identifier)? */
static bool uses(const char *text, const char *name) {
    for (const char *p = strstr(text, name); p; p = strstr(p + 1, name)) {
        char before = p == text ? ' ' : p[-1];
        if (!(before == '_' || (before >= 'a' && before <= 'z') || (before >= 'A' && before <= 'Z') ||
              (before >= '0' && before <= '9')))
            return true;
    }
    return false;
}

typedef struct {
    FILE *out;            /* where segment functions go */
    FILE *body;           /* the calls of the function being written */
    char *buf;
    size_t len;
    int calls, segments;
    const char *prefix;   /* segment function names: <prefix>_<n> */
} Segmenter;

static void flush_segment(Segmenter *sg, FILE *caller) {
    if (!sg->calls)
        return;
    fclose(sg->body);
    sg->segments++;
    fprintf(sg->out, "\nstatic void %s_%d(float *restrict params, float *restrict grads, float *restrict state,\n"
                     "    char *restrict work, float *restrict tscratch, int slots, const float *restrict images,\n"
                     "    const int32_t *restrict labels, double *restrict prof, const rnc_net *net)\n{\n",
            sg->prefix, sg->segments);
    const char *const unused[][2] = {{"P_", "params"}, {"dP_", "grads"}, {"S_", "state"}, {"images", "images"},
                                     {"labels", "labels"}, {"tscratch", "tscratch"}, {"slots", "slots"},
                                     {"prof", "prof"}};
    for (size_t i = 0; i < sizeof unused / sizeof unused[0]; i++)
        if (!uses(sg->buf, unused[i][0]))
            fprintf(sg->out, "    (void)%s;\n", unused[i][1]);
    /* net: in the checks (RNC_CHECK), the hooks and batch norm's bn_sync */
    if (!uses(sg->buf, "RNC_CHECK") && !uses(sg->buf, "net"))
        fprintf(sg->out, "    (void)net;\n");
    fwrite(sg->buf, 1, sg->len, sg->out);
    fprintf(sg->out, "}\n");
    fprintf(caller, "    %s_%d(params, grads, state, work, tscratch, slots, images, labels, prof, net);\n", sg->prefix,
            sg->segments);
    free(sg->buf);
    sg->buf = NULL;
    sg->calls = 0;
}

/* Does train_step (and infer) call op's kernel?  The loss is called on its
 * own, between the forward and backward ops. */
static bool called_in_order(const Op *op) { return !op->dead && op->kind != OP_LOSS; }

/* Where the backward pass finishes each parameter's gradient, for the
 * grad_ready hook (model.h: data-parallel training starts a gradient's
 * all-reduce there): per tensor, the last live op writing its gradient
 * (-1: none), and per tensor its index in the model's parameter table. */
typedef struct {
    int *last_writer;
    int *param_index;
} GradReady;

static int written_param_grads(const Graph *g, const Op *op, int *tensors) {
    const OpSchedule *s = &g->sched[op - g->ops];
    KernelCtx k = {.g = g, .op = op, .family = s->family, .p = s->p, .train = true};
    KernelArg args[KERNEL_MAX_ARGS];
    int n = s->family->args(&k, args), m = 0;
    for (int i = 0; i < n; i++)
        if (args[i].bind == BIND_TENSOR && args[i].grad && args[i].written && g->tensors[args[i].tensor].kind == T_PARAM)
            tensors[m++] = args[i].tensor;
    return m;
}

static GradReady grad_ready_plan(const Graph *g) {
    GradReady r = {xcalloc(g->n_tensors, sizeof(int)), xcalloc(g->n_tensors, sizeof(int))};
    int np = 0;
    for (int t = 0; t < g->n_tensors; t++) {
        r.last_writer[t] = -1;
        r.param_index[t] = g->tensors[t].kind == T_PARAM ? np++ : -1;
    }
    for (int i = g->n_fwd; i < g->n_ops; i++) {
        if (!called_in_order(&g->ops[i]))
            continue;
        int ts[KERNEL_MAX_ARGS];
        int m = written_param_grads(g, &g->ops[i], ts);
        for (int j = 0; j < m; j++)
            r.last_writer[ts[j]] = i;
    }
    return r;
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

/* After op i's call: the hook for the parameters whose gradients it finished. */
static void emit_grad_ready(FILE *out, const Graph *g, const GradReady *gr, int i) {
    int ts[KERNEL_MAX_ARGS], idx[KERNEL_MAX_ARGS], n = 0;
    int m = written_param_grads(g, &g->ops[i], ts);
    for (int j = 0; j < m; j++)
        if (gr->last_writer[ts[j]] == i)
            idx[n++] = gr->param_index[ts[j]];
    qsort(idx, (size_t)n, sizeof *idx, cmp_int);
    for (int j = 0; j < n;) {
        int k = j + 1;
        while (k < n && idx[k] == idx[k - 1] + 1)
            k++;
        fprintf(out, "    if (net->grad_ready)\n        net->grad_ready(net, %d, %d);\n", idx[j], k - j);
        j = k;
    }
}

/* Emits the calls for live ops [from, to), in segments when there are many;
 * with gr, each followed by the grad_ready hook of the gradients it finished. */
static void emit_ops(FILE *out, FILE *caller, KernelSet *ks, const Graph *g, int from, int to, bool train,
                     const char *prefix, Sites *sites, const GradReady *gr) {
    int live = 0;
    for (int i = from; i < to; i++)
        live += called_in_order(&g->ops[i]);
    if (live <= SEGMENT_CALLS) {
        for (int i = from; i < to; i++)
            if (called_in_order(&g->ops[i])) {
                emit_call(caller, ks, g, &g->ops[i], train, sites);
                if (gr)
                    emit_grad_ready(caller, g, gr, i);
            }
        return;
    }
    Segmenter sg = {.out = out, .prefix = prefix};
    for (int i = from; i < to; i++) {
        if (!called_in_order(&g->ops[i]))
            continue;
        if (!sg.calls && !(sg.body = open_memstream(&sg.buf, &sg.len)))
            fatal("out of memory");
        emit_call(sg.body, ks, g, &g->ops[i], train, sites);
        if (gr)
            emit_grad_ready(sg.body, g, gr, i);
        if (++sg.calls == SEGMENT_CALLS)
            flush_segment(&sg, caller);
    }
    flush_segment(&sg, caller);
}

static int add_site(int *ops, int n, int op) {
    if (ops)
        ops[n] = op;
    return n + 1;
}

/* train_step's call sites in order (as emit_steps writes them: the live
 * forward ops, the loss, the live backward ops) into ops, unless NULL;
 * returns their count. */
int train_step_sites(const Graph *g, int *ops) {
    int n = 0;
    for (int i = 0; i < g->n_fwd; i++)
        if (called_in_order(&g->ops[i]))
            n = add_site(ops, n, i);
    n = add_site(ops, n, g->loss_op);
    for (int i = g->n_fwd; i < g->n_ops; i++)
        if (called_in_order(&g->ops[i]))
            n = add_site(ops, n, i);
    return n;
}

/* The per-thread scratch, for a step whose calls (body) use it. */
static void emit_scratch_locals(FILE *out, const char *body) {
    if (uses(body, "tscratch"))
        fprintf(out, "    float *restrict tscratch = net->scratch;\n    const int slots = net->scratch_slots;\n");
    fprintf(out, "\n");
}

static void emit_steps(FILE *out, KernelSet *ks, const Graph *g, Sites *sites) {
    const Tensor *logits = &g->tensors[g->logits];
    char *tbuf = NULL, *ibuf = NULL;
    size_t tlen = 0, ilen = 0;
    FILE *train = open_memstream(&tbuf, &tlen), *infer = open_memstream(&ibuf, &ilen);
    if (!train || !infer)
        fatal("out of memory");
    GradReady gr = grad_ready_plan(g);
    emit_ops(out, train, ks, g, 0, g->n_fwd, true, "forward_train", sites, NULL);
    fprintf(train, "    if (logits)\n        memcpy(logits, %s, sizeof(float) * %zu);\n", ref(g, g->logits, false),
            logits->count);
    emit_call(train, ks, g, &g->ops[g->loss_op], true, sites);
    fprintf(train, "\n    /* backward */\n");
    emit_ops(out, train, ks, g, g->n_fwd, g->n_ops, true, "backward", sites, &gr);
    emit_ops(out, infer, ks, g, 0, g->n_fwd, false, "forward_eval", NULL, NULL);
    free(gr.last_writer);
    free(gr.param_index);
    fclose(train);
    fclose(infer);

    fprintf(out, "\n/* Forward in training mode, loss, and backward: net->grads = d(loss)/d(params). */\n"
                 "static void train_step(const rnc_net *net, const float *restrict images, const int32_t *restrict labels,\n"
                 "                       float *restrict logits, rnc_step_stats *restrict stats)\n{\n"
                 "    float *restrict params = net->params, *restrict grads = net->grads, *restrict state = net->state;\n"
                 "    char *restrict work = net->work;\n"
                 "    double *restrict prof = net->profile;\n");
    emit_scratch_locals(out, tbuf);
    fwrite(tbuf, 1, tlen, out);
    fprintf(out, "}\n");
    fprintf(out, "\n/* Forward in evaluation mode (BN running statistics). */\n"
                 "static void infer(const rnc_net *net, const float *restrict images, float *restrict logits)\n{\n"
                 "    float *restrict params = net->params, *restrict state = net->state;\n"
                 "    char *restrict work = net->work;\n");
    emit_scratch_locals(out, ibuf);
    if (uses(ibuf, "forward_eval_1"))   /* segments take the training step's arguments */
        fprintf(out, "    float *grads = NULL;\n    const int32_t *labels = NULL;\n    double *prof = NULL;\n");
    fwrite(ibuf, 1, ilen, out);
    fprintf(out, "    memcpy(logits, %s, sizeof(float) * %zu);\n}\n", ref(g, g->logits, false), logits->count);
    free(tbuf);
    free(ibuf);
}

static const char *init_name(rnc_init init) {
    static const char *const names[] = {"RNC_INIT_ZERO", "RNC_INIT_ONE", "RNC_INIT_HE_NORMAL", "RNC_INIT_FC_UNIFORM"};
    return names[init];
}

static int emit_tensor_table(FILE *out, const Graph *g, TensorKind kind, const char *table) {
    int n = 0;
    fprintf(out, "static const rnc_tensor_info %s[] = {\n", table);
    for (int t = 0; t < g->n_tensors; t++) {
        const Tensor *T = &g->tensors[t];
        if (T->kind != kind)
            continue;
        fprintf(out, "    {\"%s\", %zu, %zu, %d, {%d, %d, %d, %d}, %s, %d, %d},\n", T->name, T->offset, T->count,
                T->rank, T->shape[0], T->shape[1], T->shape[2], T->shape[3], init_name(T->init), T->fan_in,
                T->fan_out);
        n++;
    }
    fprintf(out, "};\n");
    return n;
}

static void emit_site_writes(FILE *out, Sites *sites) {
    if (sites->wout)
        fclose(sites->wout);
    sites->wout = NULL;
    fprintf(out, "/* The float tensors each call writes (--detect-anomaly checks them after the call). */\n"
                 "static const rnc_site_write site_writes[] = {\n");
    if (sites->writes)
        fwrite(sites->writes, 1, sites->writes_len, out);
    fprintf(out, "};\n");
}

static void emit_sites(FILE *out, const Sites *sites) {
    fprintf(out, "\n/* train_step's kernel calls, in order: net->profile's entries. */\n"
                 "static const char *const sites[] = {\n");
    for (int i = 0; i < sites->n; i++)
        fprintf(out, "    \"%s\",\n", sites->names[i]);
    fprintf(out, "};\n");
    fprintf(out, "/* Their floating-point operations per call (2 per multiply-add; 0: not counted). */\n"
                 "static const double site_flops[] = {");
    for (int i = 0; i < sites->n; i++)
        fprintf(out, "%s%s%.0f", i ? "," : "", i % 8 ? " " : "\n    ", sites->flops[i]);
    fprintf(out, "\n};\n");
}

/* The vector width the kernels are built for, and a clear stop where the
 * compiler was not asked for the target's instructions (the code would run,
 * but split every vector). */
void emit_target_check(FILE *out, const Target *t) {
    fprintf(out, "/* Generated for %s: %d-float vectors. */\n#define RNC_VL %d\n#define RNC_TARGET \"%s\"\n", t->name,
            t->vec, t->vec, t->name);
    fprintf(out, "#ifndef %s\n#error \"this file was generated for the %s target: compile it with %s (or rnc --target ...)\"\n"
                 "#endif\n",
            t->isa_macro, t->name, t->march);
    if (t->amx_emulated)
        fprintf(out, "/* AMX tiles as a C model of them (rnc/kernels.h): slow, for tests. */\n#define RNC_AMX_EMULATE 1\n");
    else if (t->amx)
        fprintf(out, "#if !defined(__AMX_BF16__) && !defined(__AMXBF16__)\n#error \"this file uses AMX tiles: compile it with -march=native on an AMX CPU or "
                     "-march=sapphirerapids\"\n#endif\n");
}

static const char *schedule_name(const Graph *g) {
    return g->reference ? "naive (reference loops)" : "default (tiled, OpenMP)";
}

/* " * Precision: ..." and " * Convolutions: ..." lines: how tensors are
 * stored, and which family computes how many of the convolution calls
 * (forward, data and weight gradients), in the families' order. */
static void emit_census(FILE *out, const Graph *g) {
    if (g->precision == PRECISION_BF16)
        fprintf(out, " * Precision: bf16 (activations and their gradients stored as bfloat16; weights, momentum,\n"
                     " *   BN statistics and every sum fp32)%s.\n",
                g->target.bf16_dot || g->target.amx
                    ? ""
                    : ";\n *   this target has no bf16 dot products or tiles: convolutions compute in fp32");
    fprintf(out, " * Convolutions:");
    const char *sep = " ";
    for (int f = 0; kernel_families[f]; f++) {
        int n = 0;
        for (int i = 0; i < g->n_ops; i++)
            n += !g->ops[i].dead && is_conv(g->ops[i].kind) && g->sched[i].family == kernel_families[f];
        if (n > 0) {
            fprintf(out, "%s%d %s", sep, n, kernel_families[f]->name);
            sep = ", ";
        }
    }
    fprintf(out, ".\n");
}

/* " * Tuned: ..." lines: which tuned schedules the build used (g->tuned). */
/* The tuning line of the generated file's header (and of the JIT's
 * verbose report): which database entries the schedule took. */
void tuned_text(const TunedNotes *t, char *buf, size_t size) {
    switch (t->status) {
    case TUNED_OFF:
        snprintf(buf, size, "none (--no-tune)");
        break;
    case TUNED_REFERENCE:
        snprintf(buf, size, "none (naive schedule)");
        break;
    case TUNED_NO_DB:
        snprintf(buf, size, "none (no tuning database at %s)", t->db);
        break;
    case TUNED_BAD_DB:
        snprintf(buf, size, "none (tuning database %s unreadable or of another format: ignored)", t->db);
        break;
    case TUNED_NO_ENTRIES:
        snprintf(buf, size, "none (no entries for this machine in %s)", t->db);
        break;
    case TUNED_USED:
        snprintf(buf, size, "%d of %d kernels from %s", t->n, t->kernels, t->db);
    }
}

static void emit_tuned(FILE *out, const Graph *g) {
    const TunedNotes *t = &g->tuned;
    char line[4400];
    tuned_text(t, line, sizeof line);
    fprintf(out, " * Tuned: %s\n", line);
    if (t->status == TUNED_USED)
        for (int i = 0; i < t->n; i++)
            fprintf(out, " *   %s: %s\n *     (default %s), %.2fx\n", t->used[i].sig, t->used[i].point, t->used[i].dflt,
                    t->used[i].speedup);
}

static void emit_model(FILE *out, const Graph *g, Sites *sites) {
    const Spec *s = &g->spec;
    const rnc_recipe *r = &s->recipe;
    char sym[80];
    c_identifier(s->name, sym, sizeof sym);
    fprintf(out, "\n");
    int np = emit_tensor_table(out, g, T_PARAM, "param_views");
    int ns = emit_tensor_table(out, g, T_STATE, "state_views");
    emit_sites(out, sites);
    emit_site_writes(out, sites);
    fprintf(out, "\nconst rnc_model rnc_model_%s = {\n", sym);
    fprintf(out, "    .abi_version = RNC_ABI_VERSION,\n    .name = \"%s\",\n    .spec_file = \"%s\",\n"
                 "    .rnc_version = \"%s\",\n    .schedule = \"%s\",\n",
            s->name, s->file, RNC_VERSION, schedule_name(g));
    fprintf(out, "    .batch = BATCH, .height = %d, .width = %d, .channels = %d, .classes = %d,\n", s->in_h, s->in_w,
            s->in_c, s->classes);
    fprintf(out, "    .param_count = %zu, .state_count = %zu, .work_bytes = %zu, .thread_scratch_bytes = %zu,\n",
            g->param_count, g->state_count, g->work_bytes, g->thread_scratch_bytes);
    fprintf(out, "    .n_params = %d, .params = param_views, .n_state = %d, .state = state_views,\n", np, ns);
    fprintf(out, "    .recipe = {.batch = BATCH, .epochs = %d, .iterations = %d, .lr = %g, .momentum = %g,\n"
                 "               .weight_decay = %g, .lr_decay = %g, .n_lr_steps = %d, .lr_steps = {",
            r->epochs, r->iterations, r->lr, r->momentum, r->weight_decay, r->lr_decay, r->n_lr_steps);
    for (int i = 0; i < r->n_lr_steps; i++)
        fprintf(out, "%s%d", i ? ", " : "", r->lr_steps[i]);
    fprintf(out, "},\n               .lr_steps_in_iterations = %d, .warmup_iterations = %d, .warmup_lr = %g},\n",
            r->lr_steps_in_iterations, r->warmup_iterations, r->warmup_lr);
    fprintf(out, "    .bn_momentum = BN_MOMENTUM,\n    .train_step = train_step,\n    .infer = infer,\n"
                 "    .n_sites = %d,\n    .sites = sites,\n    .site_flops = site_flops,\n"
                 "    .n_site_writes = %d,\n    .site_writes = site_writes,\n", sites->n, sites->n_writes);
    fprintf(out, "    .target = RNC_TARGET,\n");
    if (g->target.cpu_feature)
        fprintf(out, "    .cpu_feature = \"%s\",\n", g->target.cpu_feature);
    if (g->target.amx && !g->target.amx_emulated)
        fprintf(out, "    .cpu_setup = rnc_amx_request,\n");
    if (g->ranks > 1)
        fprintf(out, "    .ranks = %d,\n    .global_batch = %d,\n", g->ranks, g->global_batch);
    fprintf(out, "};\n");
    fprintf(out, "\n#ifndef RNC_NO_MAIN\nint main(int argc, char **argv)\n{\n"
                 "    return rnc_main(&rnc_model_%s, argc, argv);\n}\n#endif\n", sym);
}

void emit_c(FILE *out, const Graph *g) {
    const Spec *s = &g->spec;
    char *kbuf = NULL, *sbuf = NULL;
    size_t klen = 0, slen = 0;
    FILE *kern = open_memstream(&kbuf, &klen), *steps = open_memstream(&sbuf, &slen);
    if (!kern || !steps)
        fatal("out of memory");
    KernelSet *ks = kernels_new(kern);
    Sites sites = {0};
    emit_steps(steps, ks, g, &sites);
    fclose(kern);
    fclose(steps);

    fprintf(out, "/*\n * %s: generated by rnc %s from %s. Do not edit; edit the spec.\n", s->name, RNC_VERSION,
            s->file);
    fprintf(out, " * Input %dx%dx%d, %d classes, batch %d. %lld parameters, %lld multiply-adds per image.\n",
            s->in_h, s->in_w, s->in_c, s->classes, g->batch, count_parameters(g), count_multiply_adds(g));
    char target[256];
    target_text(&g->target, target, sizeof target);
    fprintf(out, " * Target: %s.\n", target);
    if (s->overrides[0])
        fprintf(out, " * Overrides: %s.\n", s->overrides);
    if (g->ranks > 1)
        fprintf(out, " * Data-parallel: %d processes (mpirun -np %d), batch %d of a global batch of %d each.\n",
                g->ranks, g->ranks, g->batch, g->global_batch);
    fprintf(out, " * Schedule: %s. Work buffer: %.1f MiB.\n", schedule_name(g), g->work_bytes / 1048576.0);
    emit_census(out, g);
    emit_tuned(out, g);
    fprintf(out, " *\n");
    fprintf(out, " * Build: %s %s %s.c -Iinclude -Lbuild -lrnrt -ljansson -lxxhash -ljpeg -lpthread -lm\n */\n",
            g->target.cross_cc ? g->target.cross_cc : "cc", compile_cflags(&g->target), s->name);
    emit_target_check(out, &g->target);
    fprintf(out, "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n"
                 "#include \"rnc/model.h\"\n#include \"rnc/kernels.h\"\n\n");
    fprintf(out, "#define BATCH %d\n#define BN_EPS %g\n#define BN_MOMENTUM %g\n\n", g->batch, s->bn_eps,
            s->bn_momentum);
    emit_views(out, g);
    fwrite(kbuf, 1, klen, out);
    fwrite(sbuf, 1, slen, out);
    emit_model(out, g, &sites);
    for (int i = 0; i < sites.n; i++)
        free(sites.names[i]);
    free(sites.names);
    free(sites.flops);
    free(sites.writes);
    kernels_free(ks);
    free(kbuf);
    free(sbuf);
}
