/* fuzz_spec.c - the spec front end on arbitrary bytes: tokenize, parse,
 * graph (up to 2,000 blocks), shapes and limits, the summary and the graph dump; and for
 * whatever is accepted (up to 64 blocks, so one input stays fast), autodiff,
 * fusion, a schedule (the default or the reference one, by the input's
 * size), the memory plan and the emitted C.
 *
 * What must hold: no crash, no sanitizer report, no leak, and a rejected
 * spec says why in one diagnostic (error_at) - which the target cannot see,
 * so it only checks that accepted specs make sense. */
#define _GNU_SOURCE   /* fmemopen, open_memstream */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rnc.h"

enum { MAX_EMITTED_BLOCKS = 64, MAX_GRAPH_BLOCKS = 2000 };

static FILE *sink(void) {
    static FILE *f;
    if (!f)
        f = fopen("/dev/null", "w");
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > RNC_MAX_TEXT_FILE)
        return 0;
    char *src = malloc(size + 1);
    if (!src)
        return 0;
    memcpy(src, data, size);
    src[size] = 0;
    TokenList toks;
    Spec spec;
    bool ok = tokenize("fuzz.spec", src, size, &toks);
    if (ok) {
        ok = parse_spec("fuzz.spec", &toks, &spec);
        free(toks.toks);
    }
    free(src);
    if (!ok)
        return 0;
    long blocks = 0;
    for (int s = 0; s < spec.n_stages; s++)
        blocks += spec.stages[s].blocks;
    if (blocks < 1 || blocks > MAX_BLOCKS)
        abort();   /* the parser's own limits */
    if (blocks > MAX_GRAPH_BLOCKS)
        return 0;  /* 100,000 blocks take seconds here under the sanitizers: tests/rnc_cli.sh runs those */
    Graph g;
    /* the spec's batch is up to 65536: keep plans small, the sizes are still checked */
    int batch = 1 + (int)(size % 4);
    fuzz_note("parsed", spec.name);
    if (!build_graph(&spec, batch, &g) || !infer_shapes(&g) || !check_limits(&g)) {
        free_graph(&g);
        return 0;
    }
    if (count_parameters(&g) <= 0 || count_multiply_adds(&g) < 0)
        abort();
    print_summary(sink(), &g);
    emit_graph_dump(sink(), &g);
    if (blocks <= MAX_EMITTED_BLOCKS) {
        Graph full;
        ScheduleOptions opt = {.reference = size % 2, .no_tune = true};
        if (plan_step(&g, &opt, &full)) {
            if (full.param_count != (size_t)count_parameters(&g) || full.work_bytes == 0)
                abort();
            print_step_memory(sink(), &full, 2);
            emit_c(sink(), &full);
            free_graph(&full);
        }
    }
    free_graph(&g);
    return 0;
}
