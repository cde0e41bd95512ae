/* fuzz_tunedb.c - the tuning database parser on arbitrary bytes (tunedb_load
 * of an in-memory file), then what a build does with the entries: an entry
 * whose signature is one of a small network's kernels and whose schedule
 * the family calls legal must emit (emit refuses anything else with an
 * internal error, which would end the process). */
#define _GNU_SOURCE   /* memfd_create */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "rnc.h"

/* A small network with direct and Winograd convolutions, scheduled by default
 * (fuzz_seeds writes a database with entries for its kernels). */
static const char SPEC[] = "network fz\ninput 8x8x3\nclasses 10\nblock basic\nshortcut A\nstem conv 3x3 16\n"
                           "stage 16 blocks 1\nstage 32 blocks 1 stride 2\nstage 64 blocks 1 stride 2\nbatch 4\n";

static Graph *graph(void) {
    static Graph g;
    static bool done;
    if (done)
        return &g;
    done = true;
    TokenList toks;
    Spec spec;
    if (!tokenize("fz.spec", SPEC, sizeof SPEC - 1, &toks) || !parse_spec("fz.spec", &toks, &spec))
        abort();
    free(toks.toks);
    if (!build_graph(&spec, 4, &g) || !infer_shapes(&g))
        abort();
    autodiff(&g);
    fuse(&g);
    ScheduleOptions opt = {.no_tune = true};
    schedule_graph(&g, &opt);
    return &g;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    static FILE *sink;
    if (fd < 0) {
        fd = memfd_create("fuzz.db", 0);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        sink = fopen("/dev/null", "w");
        if (fd < 0 || !sink)
            abort();
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    TuneDB db;
    bool ok = tunedb_load(path, &db);
    fuzz_note(ok ? "accepted" : "refused", NULL);
    if (!ok && db.n != 0)
        abort();   /* a damaged file is ignored whole */
    Graph *g = graph();
    for (int k = 0; k < db.n; k++) {
        const TuneEntry *e = &db.e[k];
        if (!e->best.family || !e->dflt.family)
            abort();
        for (int i = 0; i < g->n_ops; i++) {
            char sig[96];
            if (!tunable_sig(g, &g->ops[i], sig, sizeof sig) || strcmp(sig, e->sig))
                continue;
            if (family_legal(e->best.family, g, &g->ops[i], e->best.p)) {
                fuzz_note("legal entry emitted", e->sig);
                kernel_emit_as(sink, g, &g->ops[i], &e->best, true, "fuzz_kernel");
            }
        }
    }
    tunedb_free(&db);
    return 0;
}
