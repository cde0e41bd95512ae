/* pipeline.c - the compiler's stages in order, shared by main.c and the tests. */
#include "rnc.h"

/* Front half: spec -> graph with shapes. */
bool compile_front(const char *path, int batch, Graph *g) {
    Spec spec;
    if (!load_spec(path, &spec))
        return false;
    if (!build_graph(&spec, batch > 0 ? batch : spec.recipe.batch, g) || !infer_shapes(g)) {
        free_graph(g);
        return false;
    }
    return true;
}

bool compile_spec(const char *path, int batch, const ScheduleOptions *opt, Graph *g) {
    if (!compile_front(path, batch, g))
        return false;
    autodiff(g);
    fuse(g);
    schedule(g, opt);
    return true;
}
