/* pipeline.c - the compiler's stages in order, shared by main.c and the tests:
 * front (load, graph, shapes), autodiff, fusion, the schedule's defaults,
 * the tuning database, the memory plan. */
#include <stdlib.h>
#include "rnc.h"

/* Front half: spec -> graph with shapes. */
bool compile_front(const char *path, int batch, Graph *g) {
    Spec spec;
    if (!load_spec(path, &spec))
        return false;
    if (!build_graph(&spec, batch > 0 ? batch : spec.recipe.batch, g) || !infer_shapes(g) || !check_limits(g)) {
        free_graph(g);
        return false;
    }
    return true;
}

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
    if (!compile_front(path, batch, g))
        return false;
    autodiff(g);
    fuse(g);
    schedule_graph(g, opt);
    if (!check_step_memory(g)) {
        free_graph(g);
        return false;
    }
    return true;
}

bool plan_step(const Graph *front, const ScheduleOptions *opt, Graph *full) {
    copy_graph(front, full);
    autodiff(full);
    fuse(full);
    schedule_graph(full, opt);
    if (!check_step_memory(full)) {
        free_graph(full);
        return false;
    }
    return true;
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
