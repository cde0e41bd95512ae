/* infer_emit.c - `rnc --infer SPEC -o net.c`: a forward-only C file for
 * deployment, and its header net.h (docs/infer.md).
 *
 * The file is self-contained: it carries the kernel library
 * (rnc/kernels.h) and the support code (rnc/infer.h: a safetensors reader,
 * the layouts, BN folding) as text, so it builds with a C compiler and
 * OpenMP alone:  cc -O3 -march=native -fopenmp net.c app.c -lm.
 *
 *   graph     fold.c's inference graph: BN folded into the convs, epilogues
 *   schedule  the default kernel families (kernels.c), in evaluation mode
 *   memory    activations share buffers once their last reader has run
 *   weights   one buffer: every parameter and running statistic a live op
 *             reads; net_load fills it from a safetensors file with
 *             torchvision's names (folding as it goes), or --embed-weights
 *             has rnc do that now and write the values into the file
 *   API       PREFIX_load, PREFIX_predict, PREFIX_free, PREFIX_error */
#define _GNU_SOURCE   /* open_memstream */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "rnc.h"
#include "rnc/infer.h"
#include "rnc/safetensors.h"

bool compile_infer(const char *path, int batch, const SpecOverrides *ov, const ScheduleOptions *opt, Graph *g,
                   InferFolds *folds) {
    if (!compile_front_with(path, batch, ov, g))
        return false;
    infer_fold(g, folds);
    schedule_defaults(g, opt);
    g->tuned.status = opt->reference ? TUNED_REFERENCE : TUNED_OFF;
    return true;
}

/* ---- the memory plan ----------------------------------------------------------- */

typedef struct {
    size_t weights;                 /* floats */
    size_t work;                    /* bytes */
    size_t partial_off, wscratch_off, thread_floats;
    bool *is_weight;                /* per tensor: in the weights buffer */
    bool *in_work;
} Plan;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static bool live(const Op *op) { return !op->dead && op->kind != OP_LOSS; }

static void plan(Graph *g, Plan *p) {
    memset(p, 0, sizeof *p);
    int nt = g->n_tensors;
    p->is_weight = xcalloc(nt, sizeof(bool));
    p->in_work = xcalloc(nt, sizeof(bool));
    int *first = xcalloc(nt, sizeof(int)), *last = xcalloc(nt, sizeof(int));
    for (int t = 0; t < nt; t++)
        first[t] = last[t] = -1;
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        if (!live(op))
            continue;
        int ws[4] = {op->w, op->b, op->rmean, op->rvar};
        for (int k = 0; k < 4; k++)
            if (ws[k] >= 0 && (g->tensors[ws[k]].kind == T_PARAM || g->tensors[ws[k]].kind == T_STATE))
                p->is_weight[ws[k]] = true;
        int ts[OP_TENSORS];
        op_tensors(op, ts);
        for (int k = 0; k < OP_TENSORS; k++) {
            int t = ts[k];
            if (t < 0 || g->tensors[t].kind == T_INPUT || p->is_weight[t])
                continue;
            if (first[t] < 0)
                first[t] = i;
            last[t] = i;
        }
    }
    for (int t = 0; t < nt; t++)
        if (p->is_weight[t]) {
            g->tensors[t].offset = p->weights;
            p->weights += (g->tensors[t].count + 15) / 16 * 16;   /* each tensor 64-byte aligned */
        }
    /* exact-size slots, reused once their tensor's last reader has run; an
     * op's outputs never share with its inputs */
    typedef struct { size_t offset, bytes; int free_after; } Slot;
    Slot *slots = xcalloc(nt > 0 ? nt : 1, sizeof(Slot));
    int n_slots = 0;
    for (int i = 0; i < g->n_fwd; i++)
        for (int t = 0; t < nt; t++) {
            if (first[t] != i)
                continue;
            size_t bytes = align64(g->tensors[t].count * 4);
            int s = 0;
            while (s < n_slots && !(slots[s].bytes == bytes && slots[s].free_after < i))
                s++;
            if (s == n_slots) {
                slots[n_slots++] = (Slot){p->work, bytes, 0};
                p->work += bytes;
            }
            slots[s].free_after = last[t];
            g->tensors[t].offset = slots[s].offset;
            p->in_work[t] = true;
        }
    free(slots);
    ScratchNeed most = {0};
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        const OpSchedule *s = &g->sched[i];
        if (!live(op) || !s->family->scratch)
            continue;
        ScratchNeed need = {0};
        KernelCtx k = {.g = g, .op = op, .family = s->family, .p = s->p, .train = false};
        s->family->scratch(&k, &need);
        most.partial = need.partial > most.partial ? need.partial : most.partial;
        most.weights = need.weights > most.weights ? need.weights : most.weights;
        most.thread = need.thread > most.thread ? need.thread : most.thread;
    }
    p->partial_off = p->work;
    p->work += align64(most.partial * 4);
    p->wscratch_off = p->work;
    p->work += align64(most.weights * 4);
    p->thread_floats = align64(most.thread * 4) / 4;
    free(first);
    free(last);
}

/* ---- names ------------------------------------------------------------------------- */

static const char *ref(const Graph *g, int t) {
    static char bufs[8][200];
    static int next;
    char *buf = bufs[next++ % 8];
    const Tensor *T = &g->tensors[t];
    char name[160];
    c_identifier(T->name, name, sizeof name);
    if (T->kind == T_INPUT)
        return "images";
    snprintf(buf, 200, "%s_%s", T->kind == T_PARAM || T->kind == T_STATE ? "P" : T->is_int ? "I" : "A", name);
    return buf;
}

static const char *actual(const Graph *g, const KernelArg *a) {
    switch (a->bind) {
    case BIND_TENSOR:
        return ref(g, a->tensor);
    case BIND_BN_PARTIAL:
        return "PARTIAL";
    case BIND_WEIGHT_SCRATCH:
        return "WSCRATCH";
    case BIND_THREAD_SCRATCH:
        return "tscratch";
    case BIND_SLOTS:
        return "slots";
    default:
        fatal("internal error: an inference kernel asks for labels or step statistics");
    }
}

/* ---- the torchvision names of the weights (the load table) ------------------------------ */

typedef struct {
    int tensor;                     /* in the weights buffer */
    char name[256];                 /* torchvision's */
    const InferFold *fold;          /* a folded conv: its BN's tensors */
    char bn[4][256];                /* their names: weight, bias, running_mean, running_var */
} Load;

static void torch_name(const Graph *g, int t, char *out, size_t size) {
    if (rnc_torch_name(g->tensors[t].name, out, size) <= 0)
        fatal("internal error: %s has no torchvision name", g->tensors[t].name);
}

static int load_table(const Graph *g, const Plan *p, const InferFolds *folds, Load **out) {
    Load *l = xcalloc(g->n_tensors > 0 ? g->n_tensors : 1, sizeof *l);
    int n = 0;
    for (int t = 0; t < g->n_tensors; t++) {
        if (!p->is_weight[t])
            continue;
        const InferFold *fold = NULL;
        bool is_bias = false;
        for (int k = 0; k < folds->n; k++) {
            fold = folds->f[k].conv_w == t ? &folds->f[k] : fold;
            is_bias |= folds->f[k].bias == t;
        }
        if (is_bias)   /* computed with its conv's fold */
            continue;
        Load *e = &l[n++];
        e->tensor = t;
        e->fold = fold;
        torch_name(g, t, e->name, sizeof e->name);
        if (fold) {
            int bt[4] = {fold->gamma, fold->beta, fold->mean, fold->var};
            for (int k = 0; k < 4; k++)
                torch_name(g, bt[k], e->bn[k], sizeof e->bn[k]);
        }
    }
    *out = l;
    return n;
}

/* ---- embedded weights: rnc loads and folds them now ---------------------------------- */

static bool tensor_from_file(const rnc_st_file *f, const char *file, const char *name, int rank, const int *shape,
                             float *dst) {
    const rnc_st_tensor *s = rnc_st_find(f, name);
    if (!s) {
        fprintf(stderr, "rnc: error: %s has no tensor '%s' (docs/weights.md lists the names)\n", file, name);
        return false;
    }
    int64_t want[4];
    rnc_torch_shape(rank, shape, want);
    bool same = s->rank == rank;
    for (int d = 0; same && d < rank; d++)
        same = s->shape[d] == want[d];
    if (!same) {
        fprintf(stderr, "rnc: error: %s: tensor '%s' has another shape than the network's\n", file, name);
        return false;
    }
    float *tmp = xcalloc(s->count ? s->count : 1, sizeof(float));
    rnc_err err;
    if (rnc_st_to_float(s, tmp, &err)) {
        fprintf(stderr, "rnc: error: %s: %s\n", file, err.msg);
        free(tmp);
        return false;
    }
    rnc_from_torch_layout(rank, shape, tmp, dst);
    free(tmp);
    return true;
}

static bool embedded_weights(const Graph *g, const Load *l, int n, const char *file, float *w) {
    rnc_st_file f;
    rnc_err err;
    if (rnc_st_read(&f, file, &err)) {
        fprintf(stderr, "rnc: error: --embed-weights: %s\n", err.msg);
        return false;
    }
    bool ok = true;
    char *used = xcalloc(f.n > 0 ? f.n : 1, 1);
    for (int i = 0; i < n && ok; i++) {
        const Tensor *T = &g->tensors[l[i].tensor];
        ok = tensor_from_file(&f, file, l[i].name, T->rank, T->shape, w + T->offset);
        used[rnc_st_find(&f, l[i].name) - f.t] = ok;
        if (ok && l[i].fold) {
            int oc = T->shape[3];
            float *bn = xcalloc((size_t)4 * oc, sizeof(float));
            for (int k = 0; k < 4 && ok; k++) {
                ok = tensor_from_file(&f, file, l[i].bn[k], 1, &oc, bn + (size_t)k * oc);
                if (ok)
                    used[rnc_st_find(&f, l[i].bn[k]) - f.t] = 1;
            }
            if (ok)
                rnc_inf_fold(w + T->offset, T->count / (size_t)oc, oc, w + g->tensors[l[i].fold->bias].offset, bn,
                             bn + oc, bn + 2 * (size_t)oc, bn + 3 * (size_t)oc, g->spec.bn_eps);
            free(bn);
        }
    }
    for (int j = 0; j < f.n && ok; j++) {
        size_t len = strlen(f.t[j].name);
        if (!used[j] && !(len >= 20 && !strcmp(f.t[j].name + len - 20, ".num_batches_tracked"))) {
            fprintf(stderr, "rnc: error: %s has tensor '%s', which network %s does not (another architecture?)\n", file,
                    f.t[j].name, g->spec.name);
            ok = false;
        }
    }
    free(used);
    rnc_st_free(&f);
    return ok;
}

/* ---- the header ---------------------------------------------------------------------------- */

static void upper(const char *s, char *out, size_t size) {
    size_t i = 0;
    for (; s[i] && i + 1 < size; i++)
        out[i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 'a' + 'A') : s[i];
    out[i] = '\0';
}

static void emit_header(FILE *h, const Graph *g, const InferOptions *o) {
    const Spec *s = &g->spec;
    const char *P = o->prefix;
    char U[64];
    upper(P, U, sizeof U);
    fprintf(h, "/*\n * %s: the inference API of network %s, generated by rnc %s from %s\n", o->header, s->name,
            RNC_VERSION, s->file);
    fprintf(h, " * (rnc --infer; docs/infer.md).  Input %dx%dx%d (HxWxC), %d classes.\n *\n", s->in_h, s->in_w, s->in_c,
            s->classes);
    fprintf(h, " *     if (%s_load(\"model.safetensors\") != 0)      // NULL: the weights embedded with --embed-weights\n"
               " *         fprintf(stderr, \"%%s\\n\", %s_error());\n"
               " *     %s_predict(images, n, logits);               // n images in, n x %s_CLASSES logits out\n"
               " *     %s_free();\n *\n",
            P, P, P, U, P);
    fprintf(h, " * images: n x %s_HEIGHT x %s_WIDTH x %s_CHANNELS floats, NHWC (channels innermost),\n"
               " * normalized as for training (docs/data.md).  The network works on batches of\n"
               " * %s_BATCH images; any n is fine.  One network per process, not thread-safe;\n"
               " * OpenMP parallelizes each layer (OMP_NUM_THREADS).  Build: cc -O3 -march=native -fopenmp\n"
               " * %.*s.c yours.c -lm\n */\n",
            U, U, U, U, (int)strlen(o->header) - 2, o->header);
    fprintf(h, "#ifndef %s_INFER_H\n#define %s_INFER_H\n\n", U, U);
    fprintf(h, "#define %s_HEIGHT %d\n#define %s_WIDTH %d\n#define %s_CHANNELS %d\n#define %s_CLASSES %d\n"
               "#define %s_BATCH %d\n\n",
            U, s->in_h, U, s->in_w, U, s->in_c, U, s->classes, U, g->batch);
    fprintf(h, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    fprintf(h, "/* Loads the weights: a safetensors file with torchvision's names (what NET export\n"
               " * writes, or a torchvision state_dict saved with safetensors), batch norm folded\n"
               " * into the convolutions as it loads; NULL: the embedded weights.  0, or -1 (see\n"
               " * %s_error()).  Loading again replaces the weights. */\n"
               "int %s_load(const char *path);\n\n",
            P, P);
    fprintf(h, "/* logits[i * %s_CLASSES + k]: class k's score for image i, for n >= 0 images.\n"
               " * 0, or -1 when nothing is loaded. */\n"
               "int %s_predict(const float *images, int n, float *logits);\n\n",
            U, P);
    fprintf(h, "/* Releases what %s_load allocated. */\nvoid %s_free(void);\n\n", P, P);
    fprintf(h, "/* What the last failure was (\"\" when none). */\nconst char *%s_error(void);\n\n", P);
    fprintf(h, "#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
}

/* ---- the C file ---------------------------------------------------------------------------- */

static bool paste(FILE *out, const char *header) {
    char path[4200];
    snprintf(path, sizeof path, "%s/rnc/%s", compile_include_dir(), header);
    size_t len;
    char *text = read_text_file(path, &len);
    if (!text) {
        fprintf(stderr, "rnc: error: --infer copies rnc's %s into the file, and cannot read %s "
                        "(set RNC_INCLUDE_DIR to rnc's include directory)\n", header, path);
        return false;
    }
    /* pasted into the file, the library's unused inline functions are the
     * file's own to a compiler (Clang warns about them; gcc does not) */
    fprintf(out, "\n/* ==== rnc/%s, as rnc %s has it ==== */\n#pragma GCC diagnostic push\n"
                 "#pragma GCC diagnostic ignored \"-Wunused-function\"\n", header, RNC_VERSION);
    fwrite(text, 1, len, out);
    fprintf(out, "#pragma GCC diagnostic pop\n");
    free(text);
    return true;
}

/* The epilogue after a conv: bias, residual, ReLU, in place; returns its name. */
static const char *epilogue(FILE *kern, char (*done)[96], int *n_done, const Graph *g, const Op *op) {
    static char fn[96];
    const Tensor *y = &g->tensors[op->y];
    snprintf(fn, sizeof fn, "epilogue_%dx%dx%d%s%s%s", y->h, y->w, y->c, op->b >= 0 ? "_bias" : "",
             op->x2 >= 0 ? "_res" : "", op->relu ? "_relu" : "");
    for (int i = 0; i < *n_done; i++)
        if (!strcmp(done[i], fn))
            return fn;
    snprintf(done[(*n_done)++], 96, "%s", fn);
    fprintf(kern, "\n/* conv epilogue over %dx%dx%dx%d:%s%s%s */\n", y->n, y->h, y->w, y->c,
            op->b >= 0 ? " + bias (the folded batch norm)" : "", op->x2 >= 0 ? " + residual" : "",
            op->relu ? ", then ReLU" : "");
    fprintf(kern, "static void %s(float *restrict y%s%s)\n{\n", fn, op->b >= 0 ? ", const float *restrict bias" : "",
            op->x2 >= 0 ? ", const float *restrict res" : "");
    fprintf(kern, "    enum { N = BATCH, HW = %d, C = %d };\n"
                  "#pragma omp parallel for schedule(static)\n"
                  "    for (long p = 0; p < (long)N * HW; p++) {\n"
                  "        float *restrict v = y + p * C;\n", y->h * y->w, y->c);
    if (op->x2 >= 0)
        fprintf(kern, "        const float *restrict r = res + p * C;\n");
    fprintf(kern, "#pragma omp simd\n        for (int c = 0; c < C; c++) {\n            const float t = v[c]%s%s;\n"
                  "            v[c] = %s;\n        }\n    }\n}\n",
            op->b >= 0 ? " + bias[c]" : "", op->x2 >= 0 ? " + r[c]" : "", op->relu ? "t > 0 ? t : 0" : "t");
    return fn;
}

static void emit_call(FILE *out, KernelSet *ks, FILE *kern, char (*done)[96], int *n_done, const Graph *g,
                      const Op *op) {
    const OpSchedule *s = &g->sched[op - g->ops];
    const char *fn = kernel_for(ks, g, op, s, false);
    KernelCtx k = {.g = g, .op = op, .family = s->family, .p = s->p, .train = false};
    KernelArg args[KERNEL_MAX_ARGS];
    int n = s->family->args(&k, args);
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    char a[48], b[48];
    tensor_shape_text(x, a, sizeof a);
    tensor_shape_text(y, b, sizeof b);
    fprintf(out, "    /* %s: %s%s%s, %s -> %s */\n", op->name, op_kind_name(op->kind),
            op->kind == OP_CONV && op->b >= 0 ? " + folded batch norm" : "",
            op->x2 >= 0 && op->kind != OP_ADD ? " + residual" : "", a, b);
    int col = fprintf(out, "    %s(", fn);
    for (int i = 0; i < n; i++) {
        const char *v = actual(g, &args[i]);
        if (i && col + (int)strlen(v) + 2 > 112) {
            fprintf(out, ",\n        ");
            col = 8;
        } else if (i) {
            col += fprintf(out, ", ");
        }
        col += fprintf(out, "%s", v);
    }
    fprintf(out, ");\n");
    if (infer_epilogue(op)) {
        const char *e = epilogue(kern, done, n_done, g, op);
        fprintf(out, "    %s(%s", e, ref(g, op->y));
        if (op->b >= 0)
            fprintf(out, ", %s", ref(g, op->b));
        if (op->x2 >= 0)
            fprintf(out, ", %s", ref(g, op->x2));
        fprintf(out, ");\n");
    }
}

enum { SEGMENT_CALLS = 64 };

static void emit_forward(FILE *out, FILE *kern, KernelSet *ks, const Graph *g, const char *P) {
    char (*done)[96] = xcalloc(g->n_ops > 0 ? g->n_ops : 1, sizeof *done);
    int n_done = 0, calls = 0, segments = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *seg = NULL;
    char *mbuf = NULL;
    size_t mlen = 0;
    FILE *main_body = open_memstream(&mbuf, &mlen);
    if (!main_body)
        fatal("out of memory");
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        if (!live(op))
            continue;
        if (!seg && !(seg = open_memstream(&buf, &len)))
            fatal("out of memory");
        emit_call(seg, ks, kern, done, &n_done, g, op);
        bool last = true;
        for (int j = i + 1; j < g->n_fwd && last; j++)
            last = !live(&g->ops[j]);
        if (++calls == SEGMENT_CALLS || last) {
            fclose(seg);
            seg = NULL;
            segments++;
            fprintf(out, "\nstatic void %s_forward_%d(const float *restrict weights, char *restrict work, float *restrict tscratch,\n"
                         "    int slots, const float *restrict images)\n{\n"
                         "    (void)weights, (void)work, (void)tscratch, (void)slots, (void)images;\n",
                    P, segments);
            fwrite(buf, 1, len, out);
            fprintf(out, "}\n");
            free(buf);
            buf = NULL;
            fprintf(main_body, "    %s_forward_%d(weights, work, tscratch, slots, images);\n", P, segments);
            calls = 0;
        }
    }
    fclose(main_body);
    fprintf(out, "\n/* The network in evaluation mode on one batch: images -> %s. */\n"
                 "static void %s_forward(const float *restrict weights, char *restrict work, float *restrict tscratch,\n"
                 "    int slots, const float *restrict images)\n{\n",
            ref(g, g->logits), P);
    fwrite(mbuf, 1, mlen, out);
    fprintf(out, "}\n");
    free(mbuf);
    free(done);
}

static void emit_load_table(FILE *out, const Graph *g, const Load *l, int n, const char *P) {
    fprintf(out, "\n/* What %s_load reads: each tensor under its torchvision name, in rnc's shape\n"
                 " * (the file holds torchvision's layout), and where it goes in the weights; a\n"
                 " * folded conv also names its batch norm's weight, bias and running statistics\n"
                 " * and where its bias goes. */\n"
                 "typedef struct {\n    const char *name;\n    int rank, shape[4];\n    size_t offset;\n"
                 "    const char *bn[4];\n    size_t bias;\n} %s_tensor;\n\n"
                 "static const %s_tensor %s_tensors[] = {\n",
            P, P, P, P);
    for (int i = 0; i < n; i++) {
        const Tensor *T = &g->tensors[l[i].tensor];
        fprintf(out, "    {\"%s\", %d, {%d, %d, %d, %d}, %zu, ", l[i].name, T->rank, T->shape[0], T->shape[1],
                T->shape[2], T->shape[3], T->offset);
        if (l[i].fold)
            fprintf(out, "{\"%s\", \"%s\", \"%s\", \"%s\"}, %zu},\n", l[i].bn[0], l[i].bn[1], l[i].bn[2], l[i].bn[3],
                    g->tensors[l[i].fold->bias].offset);
        else
            fprintf(out, "{NULL, NULL, NULL, NULL}, 0},\n");
    }
    fprintf(out, "};\nenum { %s_N_TENSORS = %d };\n", P, n);
}

static void emit_embedded(FILE *out, const float *w, size_t n, const char *P) {
    fprintf(out, "\n/* The weights, folded, in rnc's layout (--embed-weights): %zu floats. */\n"
                 "static const float %s_embedded[%zu] = {", n, P, n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        if (i % 6 == 0)
            fprintf(out, "\n   ");
        if (isnan(w[i]))
            fprintf(out, " NAN,");
        else if (isinf(w[i]))
            fprintf(out, " %sINFINITY,", w[i] < 0 ? "-" : "");
        else
            fprintf(out, " %af,", (double)w[i]);
    }
    if (!n)
        fprintf(out, "0");
    fprintf(out, "\n};\n");
}

/* The API: PREFIX_load, _predict, _free, _error. */
static void emit_api(FILE *out, const Graph *g, const Plan *p, const char *P, bool embedded) {
    const Spec *s = &g->spec;
    size_t image = (size_t)s->in_h * s->in_w * s->in_c;
    fprintf(out, "\n/* ---- the API (%s) ---- */\n\n", P);
    fprintf(out, "enum { %s_WEIGHTS = %zu, %s_IMAGE = %zu };\n#define %s_WORK_BYTES ((size_t)%zu)\n\n", P, p->weights,
            P, image, P, p->work);
    fprintf(out, "static struct {\n    float *owned;            /* loaded weights */\n"
                 "    const float *weights;\n    char *work;\n    float *tscratch;\n    int slots;\n"
                 "    float *input;            /* the last, partial batch */\n    char error[512];\n} %s_s;\n\n", P);
    fprintf(out, "static int %s_fail(const char *fmt, const char *a, const char *b) {\n"
                 "    snprintf(%s_s.error, sizeof %s_s.error, fmt, a, b);\n    return -1;\n}\n\n", P, P, P);
    fprintf(out, "const char *%s_error(void) { return %s_s.error; }\n\n", P, P);
    fprintf(out, "void %s_free(void) {\n    free(%s_s.owned);\n    free(%s_s.work);\n    free(%s_s.tscratch);\n"
                 "    free(%s_s.input);\n    memset(&%s_s, 0, sizeof %s_s);\n}\n\n", P, P, P, P, P, P, P);
    fprintf(out, "static void *%s_alloc(size_t bytes) {\n    bytes = (bytes + 63) / 64 * 64;\n"
                 "    return aligned_alloc(64, bytes ? bytes : 64);\n}\n\n", P);
    /* one tensor from the file, checked, in rnc's layout */
    fprintf(out,
            "static int %s_take(const rnc_inf_file *f, char *used, const char *path, const char *name, int rank,\n"
            "                   const int *shape, float *dst, float *tmp) {\n"
            "    const rnc_inf_tensor *t = rnc_inf_find(f, name);\n"
            "    if (!t)\n"
            "        return %s_fail(\"%%s has no tensor '%%s' (weights of another network?)\", path, name);\n"
            "    used[t - f->t] = 1;\n"
            "    int64_t want[4] = {shape[0], 0, 0, 0};\n"
            "    if (rank == 4)\n"
            "        want[0] = shape[3], want[1] = shape[2], want[2] = shape[0], want[3] = shape[1];\n"
            "    else if (rank == 2)\n"
            "        want[0] = shape[1], want[1] = shape[0];\n"
            "    int same = t->rank == rank;\n"
            "    for (int d = 0; same && d < rank; d++)\n"
            "        same = t->shape[d] == want[d];\n"
            "    if (!same)\n"
            "        return %s_fail(\"%%s: tensor '%%s' has another shape than this network's\", path, name);\n"
            "    if (rnc_inf_to_float(f, t, tmp))\n"
            "        return %s_fail(\"%%s: tensor '%%s' is not F32, F64, F16 or BF16\", path, name);\n"
            "    rnc_inf_from_torch(rank, shape, tmp, dst);\n"
            "    return 0;\n"
            "}\n\n",
            P, P, P, P);
    fprintf(out,
            "/* The weights of a safetensors file into w, batch norm folded. */\n"
            "static int %s_read(const char *path, float *w) {\n"
            "    FILE *in = fopen(path, \"rb\");\n"
            "    if (!in)\n"
            "        return %s_fail(\"%%s: cannot open%%s\", path, \"\");\n"
            "    long size = fseek(in, 0, SEEK_END) == 0 ? ftell(in) : -1;\n"
            "    uint8_t *buf = size >= 0 && fseek(in, 0, SEEK_SET) == 0 ? malloc((size_t)size + 1) : NULL;\n"
            "    int ok = buf && fread(buf, 1, (size_t)size, in) == (size_t)size;\n"
            "    fclose(in);\n"
            "    if (!ok) {\n"
            "        free(buf);\n"
            "        return %s_fail(\"%%s: cannot read it%%s\", path, \"\");\n"
            "    }\n"
            "    rnc_inf_file f;\n"
            "    char why[256];\n"
            "    if (rnc_inf_parse(buf, (size_t)size, &f, why, sizeof why)) {\n"
            "        free(buf);\n"
            "        return %s_fail(\"%%s: %%s\", path, why);\n"
            "    }\n"
            "    size_t largest = 1;\n"
            "    for (int i = 0; i < f.n; i++)\n"
            "        largest = f.t[i].count > largest ? (size_t)f.t[i].count : largest;\n"
            "    char *used = calloc((size_t)f.n + 1, 1);\n"
            "    float *tmp = malloc(sizeof(float) * largest), *bn = NULL;\n"
            "    int rc = used && tmp ? 0 : %s_fail(\"%%s: out of memory%%s\", path, \"\");\n"
            "    for (int i = 0; i < %s_N_TENSORS && !rc; i++) {\n"
            "        const %s_tensor *e = &%s_tensors[i];\n"
            "        rc = %s_take(&f, used, path, e->name, e->rank, e->shape, w + e->offset, tmp);\n"
            "        if (rc || !e->bn[0])\n"
            "            continue;\n"
            "        const int oc = e->shape[3];\n"
            "        free(bn);\n"
            "        if (!(bn = malloc(sizeof(float) * 4 * (size_t)oc))) {\n"
            "            rc = %s_fail(\"%%s: out of memory%%s\", path, \"\");\n"
            "            break;\n"
            "        }\n"
            "        for (int k = 0; k < 4 && !rc; k++)\n"
            "            rc = %s_take(&f, used, path, e->bn[k], 1, &oc, bn + (size_t)k * oc, tmp);\n"
            "        if (!rc)\n"
            "            rnc_inf_fold(w + e->offset, (size_t)e->shape[0] * e->shape[1] * e->shape[2], oc, w + e->bias, bn,\n"
            "                         bn + oc, bn + 2 * (size_t)oc, bn + 3 * (size_t)oc, BN_EPS);\n"
            "    }\n"
            "    for (int i = 0; i < f.n && !rc; i++) {\n"
            "        size_t len = strlen(f.t[i].name);\n"
            "        if (!used[i] && !(len >= 20 && !strcmp(f.t[i].name + len - 20, \".num_batches_tracked\")))\n"
            "            rc = %s_fail(\"%%s has tensor '%%s', which this network does not (another architecture?)\",\n"
            "                         path, f.t[i].name);\n"
            "    }\n"
            "    free(bn);\n    free(tmp);\n    free(used);\n    rnc_inf_free(&f);\n    free(buf);\n    return rc;\n}\n\n",
            P, P, P, P, P, P, P, P, P, P, P, P);
    fprintf(out, "int %s_load(const char *path) {\n    %s_free();\n", P, P);
    if (embedded)
        fprintf(out, "    if (!path) {\n        %s_s.weights = %s_embedded;\n    } else {\n", P, P);
    else
        fprintf(out, "    if (!path)\n        return %s_fail(\"no weights are embedded in this file%%s%%s (rnc --infer "
                     "--embed-weights FILE): give a path\", \"\", \"\");\n    {\n", P);
    fprintf(out, "        if (!(%s_s.owned = %s_alloc(sizeof(float) * %s_WEIGHTS)))\n"
                 "            return %s_fail(\"out of memory for the weights%%s%%s\", \"\", \"\");\n"
                 "        memset(%s_s.owned, 0, sizeof(float) * %s_WEIGHTS);\n"
                 "        if (%s_read(path, %s_s.owned)) {\n"
                 "            char why[sizeof %s_s.error];\n"
                 "            memcpy(why, %s_s.error, sizeof why);\n"
                 "            %s_free();\n"
                 "            memcpy(%s_s.error, why, sizeof why);\n"
                 "            return -1;\n        }\n"
                 "        %s_s.weights = %s_s.owned;\n    }\n",
            P, P, P, P, P, P, P, P, P, P, P, P, P, P);
    fprintf(out, "    %s_s.slots = omp_get_max_threads();\n"
                 "    %s_s.work = %s_alloc(%s_WORK_BYTES);\n"
                 "    %s_s.tscratch = %s_alloc(sizeof(float) * THREAD_SCRATCH_FLOATS * (size_t)%s_s.slots);\n"
                 "    %s_s.input = %s_alloc(sizeof(float) * BATCH * %s_IMAGE);\n"
                 "    if (!%s_s.work || !%s_s.tscratch || !%s_s.input) {\n"
                 "        %s_free();\n"
                 "        return %s_fail(\"out of memory for the activations%%s%%s\", \"\", \"\");\n    }\n"
                 "    %s_s.error[0] = '\\0';\n    return 0;\n}\n\n",
            P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P);
    fprintf(out, "int %s_predict(const float *images, int n, float *logits) {\n"
                 "    if (!%s_s.weights)\n"
                 "        return %s_fail(\"nothing loaded: call %%s_load first%%s\", \"%s\", \"\");\n"
                 "    for (int i = 0; i < n; i += BATCH) {\n"
                 "        const int count = n - i < BATCH ? n - i : BATCH;\n"
                 "        const float *x = images + (size_t)i * %s_IMAGE;\n"
                 "        if (count > 0 && count < BATCH) {   /* the last batch, padded with zeros */\n"
                 "            memcpy(%s_s.input, x, sizeof(float) * (size_t)count * %s_IMAGE);\n"
                 "            memset(%s_s.input + (size_t)count * %s_IMAGE, 0, sizeof(float) * (size_t)(BATCH - count) * %s_IMAGE);\n"
                 "            x = %s_s.input;\n        }\n"
                 "        %s_forward(%s_s.weights, %s_s.work, %s_s.tscratch, %s_s.slots, x);\n"
                 "        const char *work = %s_s.work;\n"
                 "        memcpy(logits + (size_t)i * %d, %s, sizeof(float) * (size_t)count * %d);\n"
                 "    }\n    return 0;\n}\n",
            P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, s->classes, ref(g, g->logits), s->classes);
}

static bool emit_views(FILE *out, const Graph *g, const Plan *p) {
    fprintf(out, "\n/* Named views: the weights (parameters and running statistics, one buffer)\n"
                 " * and the activations (net work buffer, byte offsets; they share memory once\n"
                 " * read for the last time). */\n");
    for (int t = 0; t < g->n_tensors; t++)
        if (p->is_weight[t])
            fprintf(out, "#define %s (weights + %zu)\n", ref(g, t), g->tensors[t].offset);
    for (int t = 0; t < g->n_tensors; t++)
        if (p->in_work[t])
            fprintf(out, "#define %s ((%s *)(work + %zu))\n", ref(g, t), g->tensors[t].is_int ? "int32_t" : "float",
                    g->tensors[t].offset);
    fprintf(out, "#define PARTIAL ((float *)(work + %zu))\n#define WSCRATCH ((float *)(work + %zu))\n"
                 "#define THREAD_SCRATCH_FLOATS %zu\n",
            p->partial_off, p->wscratch_off, p->thread_floats);
    return true;
}

bool emit_infer(FILE *c, FILE *h, const Graph *gin, const InferFolds *folds, const InferOptions *o) {
    Graph gc;
    copy_graph(gin, &gc);   /* the plan writes tensor offsets */
    Graph *g = &gc;
    Plan p;
    plan(g, &p);
    Load *loads;
    int n_loads = load_table(g, &p, folds, &loads);
    float *embedded = NULL;
    bool ok = true;
    if (o->embed) {
        embedded = xcalloc(p.weights > 0 ? p.weights : 1, sizeof(float));
        ok = embedded_weights(g, loads, n_loads, o->embed, embedded);
    }
    if (ok) {
        const Spec *s = &g->spec;
        const char *P = o->prefix;
        emit_header(h, g, o);
        int convs = 0;
        for (int i = 0; i < g->n_fwd; i++)
            convs += live(&g->ops[i]) && g->ops[i].kind == OP_CONV;
        fprintf(c, "/*\n * %s: inference (forward only) for network %s, generated by rnc %s from %s\n"
                   " * by `rnc --infer`.  Do not edit; see %s for the API, docs/infer.md for the rest.\n",
                s->name, s->name, RNC_VERSION, s->file, o->header);
        fprintf(c, " * Input %dx%dx%d, %d classes, batch %d. %lld parameters, %lld multiply-adds per image.\n",
                s->in_h, s->in_w, s->in_c, s->classes, g->batch, count_parameters(gin), count_multiply_adds(gin));
        if (s->overrides[0])
            fprintf(c, " * Overrides: %s.\n", s->overrides);
        fprintf(c, " * %d convolutions, %d batch norms folded into them. Schedule: %s. Work buffer: %.1f MiB.\n",
                convs, folds->n, g->reference ? "naive (reference loops)" : "default (tiled, OpenMP)",
                p.work / 1048576.0);
        if (o->embed)
            fprintf(c, " * Weights: embedded from %s (--embed-weights), folded; %s_load(NULL) uses them.\n", o->embed, P);
        else
            fprintf(c, " * Weights: %s_load(PATH) reads them from a safetensors file (torchvision's names).\n", P);
        fprintf(c, " *\n * Build: %s %s %.*s.c yours.c -lm   (no other dependency)\n */\n",
                g->target.cross_cc ? g->target.cross_cc : "cc", compile_cflags(&g->target), (int)strlen(o->header) - 2,
                o->header);
        emit_target_check(c, &g->target);
        fprintf(c, "#include \"%s\"\n\n#include <math.h>\n#include <omp.h>\n#include <stdint.h>\n#include <stdio.h>\n"
                   "#include <stdlib.h>\n#include <string.h>\n", o->header);
        ok = paste(c, "kernels.h") && paste(c, "infer.h");   /* after RNC_VL (emit_target_check) */
    }
    if (ok) {
        fprintf(c, "\n/* ==== network %s ==== */\n\n#define BATCH %d\n#define BN_EPS %g\n", g->spec.name, g->batch,
                g->spec.bn_eps);
        emit_views(c, g, &p);
        char *kbuf = NULL, *fbuf = NULL;
        size_t klen = 0, flen = 0;
        FILE *kern = open_memstream(&kbuf, &klen), *fwd = open_memstream(&fbuf, &flen);
        if (!kern || !fwd)
            fatal("out of memory");
        KernelSet *ks = kernels_new(kern);
        emit_forward(fwd, kern, ks, g, o->prefix);
        fclose(fwd);
        fclose(kern);
        fwrite(kbuf, 1, klen, c);
        fwrite(fbuf, 1, flen, c);
        kernels_free(ks);
        free(kbuf);
        free(fbuf);
        emit_load_table(c, g, loads, n_loads, o->prefix);
        if (embedded)
            emit_embedded(c, embedded, p.weights, o->prefix);
        emit_api(c, g, &p, o->prefix, embedded != NULL);
    }
    free(embedded);
    free(loads);
    free(p.is_weight);
    free(p.in_work);
    free_graph(&gc);
    return ok;
}
