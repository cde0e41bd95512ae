/* fuzz_seeds.c - writes the fuzz targets' seed corpora: small valid inputs
 * made by the code that writes them for real, so the seeds follow the
 * formats as they change.
 *
 * usage: fuzz_seeds OUT_DIR SOURCE_DIR
 *   OUT_DIR/spec        every spec of SOURCE_DIR/specs and tests/specs
 *   OUT_DIR/cifar       CIFAR-10 files of 1 and 3 synthetic records
 *   OUT_DIR/checkpoint  checkpoints of fuzz_model.h's network: format 2 with
 *                       a run state inside an epoch and at an epoch's end,
 *                       format 1, weights only (each with mode bytes 0 and 1)
 *   OUT_DIR/tunedb      a tuning database with entries for fuzz_tunedb's kernels
 *   OUT_DIR/index       index caches of a made-up tree, raw and wrapped
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "../../runtime/internal.h"
#include "fuzz_model.h"
#include "rnc.h"

static const char *out;

static void die(const char *what) {
    fprintf(stderr, "fuzz_seeds: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void mkdirs(const char *sub) {
    char p[4200];
    snprintf(p, sizeof p, "%s", out);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s", out, sub);
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        die(p);
}

static void put(const char *sub, const char *name, const void *data, size_t n, int mode) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s/%s", out, sub, name);
    FILE *f = fopen(p, "wb");
    if (!f)
        die(p);
    if (mode >= 0)
        fputc(mode, f);
    if (fwrite(data, 1, n, f) != n || fclose(f) != 0)
        die(p);
}

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc(*n + 1);
    if (!b || fread(b, 1, *n, f) != *n)
        die(path);
    fclose(f);
    return b;
}

static void specs(const char *src, const char *sub) {
    char d[4200];
    snprintf(d, sizeof d, "%s/%s", src, sub);
    DIR *dp = opendir(d);
    if (!dp)
        die(d);
    for (struct dirent *e; (e = readdir(dp));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".spec"))
            continue;
        char p[8400];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        size_t n;
        void *b = slurp(p, &n);
        put("spec", e->d_name, b, n, -1);
        free(b);
    }
    closedir(dp);
}

static void cifar(void) {
    static uint8_t rec[3 * RNC_CIFAR_RECORD_BYTES];
    for (size_t i = 0; i < sizeof rec; i++)
        rec[i] = (uint8_t)(i * 7 + 3);
    for (int r = 0; r < 3; r++)
        rec[r * RNC_CIFAR_RECORD_BYTES] = (uint8_t)(r * 4);
    put("cifar", "one.bin", rec, RNC_CIFAR_RECORD_BYTES, -1);
    put("cifar", "three.bin", rec, sizeof rec, -1);
}

static void checkpoint(const char *name, const rnc_ckpt_meta *meta, int momentum) {
    rnc_net net;
    rnc_sgd sgd;
    rnc_err err;
    if (rnc_net_alloc(&net, &fuzz_model, &err) || rnc_sgd_init(&sgd, fuzz_model.param_count, 0.9, 0, &err))
        die(err.msg);
    rnc_net_init(&net, 3);
    for (size_t i = 0; i < sgd.n; i++)
        sgd.velocity[i] = (float)i / 8;
    char p[4400], tmp[4400];
    snprintf(p, sizeof p, "%s/checkpoint/.%s", out, name);
    if (rnc_checkpoint_save(p, &net, momentum ? &sgd : NULL, meta, &err))
        die(err.msg);
    size_t n;
    void *b = slurp(p, &n);
    remove(p);
    snprintf(tmp, sizeof tmp, "%s.raw", name);
    put("checkpoint", tmp, b, n, 0);
    snprintf(tmp, sizeof tmp, "%s.fixed", name);
    put("checkpoint", tmp, b, n, 1);
    free(b);
    rnc_net_free(&net);
    rnc_sgd_free(&sgd);
}

/* The order and augmentation checks of a run at `step` (4 iterations per epoch). */
static void position(rnc_run_state *s, uint64_t seed, int64_t step) {
    int32_t perm[16];
    rnc_shuffle(perm, 16, seed, step / 4);
    s->order_id = rnc_order_id(perm, 16);
    s->rng_check = rnc_rng_check(seed, step / 4, step % 4);
}

static void checkpoints(void) {
    rnc_ckpt_meta meta = {.epoch = 0, .step = 3, .seed = 1, .iters_per_epoch = 4};
    rnc_dataset ds = fuzz_images();
    rnc_source train = {&ds, NULL, NULL, ds.n, 10};
    rnc_run_identity(&meta.run, &fuzz_model, &fuzz_model.recipe, 8, 16, rnc_source_id(&train));
    position(&meta.run, 1, 3);
    meta.run.recipe.n_lr_steps = 2;
    meta.run.recipe.lr_steps[0] = 1, meta.run.recipe.lr_steps[1] = 2;
    meta.run.epoch_loss_sum = 6.5;
    meta.run.epoch_correct = 3;
    meta.run.epoch_seen = 12;
    checkpoint("inside_epoch", &meta, 1);
    meta.step = 4;
    meta.epoch = 1;
    meta.run.epoch_loss_sum = 0;
    meta.run.epoch_correct = meta.run.epoch_seen = 0;
    position(&meta.run, 1, 4);
    snprintf(meta.run.row, sizeof meta.run.row, "1,4,0.1,2.30258512,0.9,2.3,0.9");
    checkpoint("epoch_end", &meta, 1);
    meta.run.present = 0;
    checkpoint("format1", &meta, 1);
    checkpoint("weights_only", &meta, 0);
}

/* fuzz_tunedb.c's network, its tunable kernels as entries (default and one off it). */
static void tunedb(void) {
    static const char SPEC[] = "network fz\ninput 8x8x3\nclasses 10\nblock basic\nshortcut A\nstem conv 3x3 16\n"
                               "stage 16 blocks 1\nstage 32 blocks 1 stride 2\nstage 64 blocks 1 stride 2\nbatch 4\n";
    TokenList toks;
    Spec spec;
    Graph g;
    if (!tokenize("fz.spec", SPEC, sizeof SPEC - 1, &toks) || !parse_spec("fz.spec", &toks, &spec))
        die("spec");
    free(toks.toks);
    if (!build_graph(&spec, 4, &g) || !infer_shapes(&g))
        die("graph");
    autodiff(&g);
    fuse(&g);
    ScheduleOptions opt = {.no_tune = true};
    schedule_graph(&g, &opt);
    TuneDB db = {0};
    for (int i = 0; i < g.n_ops; i++) {
        TuneEntry e = {0};
        if (!tunable_sig(&g, &g.ops[i], e.sig, sizeof e.sig))
            continue;
        e.key = tune_key(e.sig, tune_context(target_host()));
        e.best = e.dflt = g.sched[i];
        e.best.p[0] += i % 2;
        e.speedup = 1.25;
        tunedb_put(&db, &e);
    }
    char p[4400];
    snprintf(p, sizeof p, "%s/tunedb/tune.db", out);
    remove(p);
    if (!tunedb_save(p, &db))
        die(p);
    snprintf(p, sizeof p, "%s/tunedb/tune.db.lock", out);
    remove(p);
    tunedb_free(&db);
    free_graph(&g);
    char empty[128], head[32];
    snprintf(head, sizeof head, "rnc-tune-db %d\n", TUNE_DB_VERSION);
    snprintf(empty, sizeof empty, "%send 0 %016llx\n", head, (unsigned long long)XXH3_64bits(head, strlen(head)));
    put("tunedb", "empty.db", empty, strlen(empty), -1);
}

static void u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void str(FILE *f, const char *s) {
    u32(f, (uint32_t)strlen(s));
    fputs(s, f);
}

/* fuzz_index.c's made-up tree: 2 classes, 3 images, 1 skipped file. */
static void index_files(void) {
    char *body = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&body, &n);
    u32(f, 2);
    str(f, "cat");
    str(f, "dog");
    u32(f, 3);
    const char *names[3] = {"cat/a.jpg", "cat/b.jpg", "dog/c.jpg"};
    for (int i = 0; i < 3; i++) {
        u32(f, i < 2 ? 0 : 1);
        u32(f, 32 + i);
        u32(f, 24);
        str(f, names[i]);
    }
    u32(f, 1);
    str(f, "/fuzz/tree/readme.txt: not in a class folder");
    fclose(f);
    put("index", "wrapped.idx", body, n, 1);
    /* the same as a whole cache file */
    char *file = NULL;
    size_t len = 0;
    f = open_memstream(&file, &len);
    uint64_t sig = 0x5eed5eed5eed5eedULL;
    fwrite("RNCIDX02", 1, 8, f);
    fwrite(&sig, 8, 1, f);
    str(f, "/fuzz/tree");
    fwrite(body, 1, n, f);
    fflush(f);
    uint64_t sum = XXH3_64bits(file, len);
    fwrite(&sum, 8, 1, f);
    fclose(f);
    put("index", "raw.idx", file, len, 0);
    free(body);
    free(file);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: fuzz_seeds OUT_DIR SOURCE_DIR\n");
        return 2;
    }
    out = argv[1];
    const char *subs[] = {"spec", "cifar", "checkpoint", "tunedb", "index"};
    for (int i = 0; i < 5; i++)
        mkdirs(subs[i]);
    specs(argv[2], "specs");
    specs(argv[2], "tests/specs");
    cifar();
    checkpoints();
    tunedb();
    index_files();
    printf("fuzz_seeds: corpora in %s\n", out);
    return 0;
}
