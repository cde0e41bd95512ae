/* pipeline.c - the compiler's stages in order, shared by main.c and the tests:
 * front (load, graph, shapes), autodiff, fusion, the schedule's defaults,
 * the tuning database, the memory plan. */
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

void apply_overrides(Spec *s, const SpecOverrides *ov) {
    s->overrides[0] = '\0';
    if (!ov)
        return;
    size_t n = 0;
    if (ov->classes > 0 && ov->classes != s->classes) {
        n += (size_t)snprintf(s->overrides + n, sizeof s->overrides - n, "classes %d (spec: %d)", ov->classes,
                              s->classes);
        s->classes = ov->classes;
    }
    if (ov->in_h > 0 && (ov->in_h != s->in_h || ov->in_w != s->in_w || ov->in_c != s->in_c) &&
        n < sizeof s->overrides) {
        snprintf(s->overrides + n, sizeof s->overrides - n, "%sinput %dx%dx%d (spec: %dx%dx%d)", n ? ", " : "",
                 ov->in_h, ov->in_w, ov->in_c, s->in_h, s->in_w, s->in_c);
        s->in_h = ov->in_h, s->in_w = ov->in_w, s->in_c = ov->in_c;
    }
}

/* Front half: spec -> graph with shapes. */
bool compile_front_with(const char *path, int batch, const SpecOverrides *ov, Graph *g) {
    Spec spec;
    if (!load_spec(path, &spec))
        return false;
    apply_overrides(&spec, ov);
    const int global = batch > 0 ? batch : spec.recipe.batch, ranks = ov && ov->ranks > 1 ? ov->ranks : 1;
    if (global % ranks) {
        fprintf(stderr, "rnc: error: a batch of %d does not split evenly over %d processes: give a global batch "
                        "(-b) that %d divides\n", global, ranks, ranks);
        return false;
    }
    if (!build_graph(&spec, global / ranks, g) || !infer_shapes(g) || !check_limits(g)) {
        /* the shape errors point at the spec's lines; say what changed them */
        if (spec.overrides[0])
            fprintf(stderr, "%s: note: with the command line's %s\n", path, spec.overrides);
        free_graph(g);
        return false;
    }
    g->ranks = ranks;
    g->global_batch = global;
    return true;
}

bool compile_front(const char *path, int batch, Graph *g) { return compile_front_with(path, batch, NULL, g); }

void schedule_graph(Graph *g, const ScheduleOptions *opt) {
    schedule_defaults(g, opt);
    if (opt->reference)
        g->tuned.status = TUNED_REFERENCE;
    else if (opt->no_tune)
        g->tuned.status = TUNED_OFF;
    else
        tunedb_apply(g, tune_db_path(opt->tune_db));
    plan_memory(g);
}

bool compile_spec(const char *path, int batch, const ScheduleOptions *opt, Graph *g) {
    return compile_spec_with(path, batch, NULL, opt, g);
}

/* The back half of the pipeline, on a graph past the front end: the
 * backward pass, fusion, precision, schedule and memory plan. */
static bool compile_back(Graph *g, const ScheduleOptions *opt) {
    autodiff(g);
    fuse(g);
    Precision p = g->spec.precision;
    if (opt->precision && !parse_precision(opt->precision, &p)) {
        free_graph(g);
        return false;
    }
    assign_precision(g, p);
    schedule_graph(g, opt);
    if (!check_step_memory(g)) {
        free_graph(g);
        return false;
    }
    return true;
}

bool compile_spec_with(const char *path, int batch, const SpecOverrides *ov, const ScheduleOptions *opt,
                       Graph *g) {
    return compile_front_with(path, batch, ov, g) && compile_back(g, opt);
}

bool plan_step(const Graph *front, const ScheduleOptions *opt, Graph *full) {
    copy_graph(front, full);
    return compile_back(full, opt);
}

bool parse_batch(const char *text, int *batch) {
    char *end;
    long b = strtol(text, &end, 10);
    if (end == text || *end || b < 1 || b > 65536) {
        fprintf(stderr, "rnc: error: -b wants a batch size from 1 to 65536, got '%s'\n", text);
        return false;
    }
    *batch = (int)b;
    return true;
}

bool parse_ranks(const char *text, int *ranks) {
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end || v < 1 || v > 65536) {
        fprintf(stderr, "rnc: error: --ranks wants a number of processes from 1 to 65536, got '%s'\n", text);
        return false;
    }
    *ranks = (int)v;
    return true;
}

/* The limits are the spec statements' (docs/spec.md). */
bool parse_classes(const char *text, int *classes) {
    char *end;
    long v = strtol(text, &end, 10);
    if (!strcmp(text, "auto")) {
        fprintf(stderr, "rnc: error: --classes auto counts the classes of the data: use it with "
                        "rnc train|eval SPEC --data PATH\n");
        return false;
    }
    if (end == text || *end || v < 2 || v > 1000000) {
        fprintf(stderr, "rnc: error: --classes wants a number of classes from 2 to 1000000, got '%s'\n", text);
        return false;
    }
    *classes = (int)v;
    return true;
}

bool parse_input_size(const char *text, SpecOverrides *ov) {
    int d[3], n = 0;
    const char *s = text;
    for (; n < 3; n++) {
        char *end;
        if (*s < '0' || *s > '9')
            break;
        long v = strtol(s, &end, 10);
        if (v < 1 || v > 4096)
            break;
        d[n] = (int)v;
        s = end;
        if (n < 2 && *s++ != 'x')
            break;
    }
    if (n != 3 || *s) {
        fprintf(stderr, "rnc: error: --input wants a size HxWxC, each from 1 to 4096 (as 224x224x3), got '%s'\n",
                text);
        return false;
    }
    ov->in_h = d[0], ov->in_w = d[1], ov->in_c = d[2];
    return true;
}
