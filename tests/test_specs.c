/* test_specs.c - the shipped networks in specs/ are the papers' networks.
 *
 * For every spec: the front end (load_spec, build_graph, infer_shapes) accepts
 * it; its parameter and multiply-add totals are pinned exactly (so a change in
 * the compiler or a spec is caught), and where a paper publishes a figure the
 * totals are within 1% of it; its depth, shapes and recipe are the paper's;
 * and the family's relations hold (a plain net has its residual twin's
 * parameters under option A; options A < B < C).  specs/ must hold exactly the
 * networks listed here, so no spec goes untested.
 *
 * He et al. 2016a: "Deep Residual Learning for Image Recognition" (CVPR).
 * He et al. 2016b: "Identity Mappings in Deep Residual Networks" (ECCV).
 *
 * The exact totals were checked against an independent count (a short script
 * summing k*k*cin*cout*oh*ow per conv, 2c per BN and the FC), and the ImageNet
 * parameter counts equal torchvision's resnet18/34/50/101/152 exactly. */
#define _GNU_SOURCE  /* testutil.h: mkdtemp, nftw */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rnc.h"
#include "testutil.h"

#ifndef SOURCE_DIR
#error "compile with -DSOURCE_DIR=\"/path/to/the/source\""
#endif

enum { CIFAR, IMAGENET, CIFAR_RN18 };   /* data set and recipe family */

typedef struct {
    const char *name;             /* specs/<name>.spec, and its `network` name */
    int family;
    int depth;                    /* weighted layers on the main path: convs + fc */
    BlockKind block;
    ShortcutKind shortcut;
    OrderKind order;
    long long params, macs;       /* exact totals (macs per image) */
    int warmup;                   /* 400: the warm-up of lr 0.01 for 400 iterations */
} Net;

#define B BLOCK_BASIC
#define BN BLOCK_BOTTLENECK
#define POST ORDER_POST
#define PRE ORDER_PRE

static const Net nets[] = {
    /* CIFAR-10, He et al. 2016a section 4.2: 6n+2 layers, option A. */
    {"resnet20", CIFAR, 20, B, SHORTCUT_A, POST, 269722, 40551040, 0},
    {"resnet32", CIFAR, 32, B, SHORTCUT_A, POST, 464154, 68862592, 0},
    {"resnet44", CIFAR, 44, B, SHORTCUT_A, POST, 658586, 97174144, 0},
    {"resnet56", CIFAR, 56, B, SHORTCUT_A, POST, 853018, 125485696, 0},
    {"resnet110", CIFAR, 110, B, SHORTCUT_A, POST, 1727962, 252887680, 400},
    {"resnet1202", CIFAR, 1202, B, SHORTCUT_A, POST, 19421274, 2829238912LL, 0},
    {"plain20", CIFAR, 20, B, SHORTCUT_NONE, POST, 269722, 40551040, 0},
    {"plain32", CIFAR, 32, B, SHORTCUT_NONE, POST, 464154, 68862592, 0},
    {"plain44", CIFAR, 44, B, SHORTCUT_NONE, POST, 658586, 97174144, 0},
    {"plain56", CIFAR, 56, B, SHORTCUT_NONE, POST, 853018, 125485696, 0},
    {"plain110", CIFAR, 110, B, SHORTCUT_NONE, POST, 1727962, 252887680, 400},
    /* ImageNet, He et al. 2016a table 1, option B unless named. */
    {"resnet18", IMAGENET, 18, B, SHORTCUT_B, POST, 11689512, 1814073344LL, 0},
    {"resnet34", IMAGENET, 34, B, SHORTCUT_B, POST, 21797672, 3663761408LL, 0},
    {"resnet50", IMAGENET, 50, BN, SHORTCUT_B, POST, 25557032, 3857973248LL, 0},
    /* torchvision's ResNet-50: the stride on the 3x3 ("v1.5"); same parameters */
    {"resnet50-torchvision", IMAGENET, 50, BN, SHORTCUT_B, POST, 25557032, 4089184256LL, 0},
    {"resnet101", IMAGENET, 101, BN, SHORTCUT_B, POST, 44549160, 7570194432LL, 0},
    {"resnet152", IMAGENET, 152, BN, SHORTCUT_B, POST, 60192808, 11282415616LL, 0},
    {"plain18", IMAGENET, 18, B, SHORTCUT_NONE, POST, 11515688, 1794805760LL, 0},
    {"plain34", IMAGENET, 34, B, SHORTCUT_NONE, POST, 21623848, 3644493824LL, 0},
    {"resnet34-optA", IMAGENET, 34, B, SHORTCUT_A, POST, 21623848, 3644493824LL, 0},
    {"resnet34-optC", IMAGENET, 34, B, SHORTCUT_C, POST, 22716840, 3830747136LL, 0},
    /* Pre-activation, He et al. 2016b: 6n+2 basic, 9n+2 bottleneck, option B. */
    {"preact-resnet110", CIFAR, 110, B, SHORTCUT_B, PRE, 1730522, 253149824, 400},
    {"preact-resnet164", CIFAR, 164, BN, SHORTCUT_B, PRE, 1703258, 244500992, 400},
    {"preact-resnet1001", CIFAR, 1001, BN, SHORTCUT_B, PRE, 10327706, 1487849984LL, 400},
    /* The CIFAR "ResNet-18" of reimplementations (not in the papers). */
    {"resnet18-cifar", CIFAR_RN18, 18, B, SHORTCUT_B, POST, 11173962, 555422720, 0},
};
enum { N_NETS = sizeof nets / sizeof nets[0] };

/* Published figures, rounded as printed.  `tol` is the allowed relative
 * deviation: 1%, except where the paper's figure is a truncation of the
 * exact count to two digits (the counts agree with an independent count and
 * with torchvision's; see docs/networks.md):
 *   resnet110 parameters: 1.728M printed as 1.7M (+1.6%);
 *   resnet34 multiply-adds: 3.664G printed as 3.6G (+1.8%; torchvision 3.66G);
 *   resnet50 multiply-adds: 3.858G printed as 3.8G (+1.5%; stride on the 1x1,
 *     as in the paper; with the stride on the 3x3, "v1.5", it is 4.09G);
 *   preact-resnet1001 parameters: 10.33M printed as 10.2M (+1.3%; the conv and
 *     fc weights alone are 10.18M, so the paper seems to leave out BN's 149K). */
typedef struct {
    const char *name;
    double params_m;      /* millions, 0 if not published */
    double params_tol;
    double macs_g;        /* billions per image (the paper's "FLOPs"), 0 if not published */
    double macs_tol;
    const char *source;
} Published;

static const Published published[] = {
    {"resnet20", 0.27, 0.01, 0, 0, "He et al. 2016a table 6"},
    {"resnet32", 0.46, 0.01, 0, 0, "He et al. 2016a table 6"},
    {"resnet44", 0.66, 0.01, 0, 0, "He et al. 2016a table 6"},
    {"resnet56", 0.85, 0.01, 0, 0, "He et al. 2016a table 6"},
    {"resnet110", 1.7, 0.02, 0, 0, "He et al. 2016a table 6 (truncated)"},
    {"resnet1202", 19.4, 0.01, 0, 0, "He et al. 2016a table 6"},
    {"resnet18", 11.7, 0.01, 1.8, 0.01, "torchvision; He et al. 2016a table 1"},
    {"resnet34", 21.8, 0.01, 3.6, 0.02, "torchvision; He et al. 2016a table 1 (truncated)"},
    {"resnet50", 25.6, 0.01, 3.8, 0.02, "torchvision; He et al. 2016a table 1 (truncated)"},
    {"resnet50-torchvision", 25.6, 0.01, 4.09, 0.01, "torchvision's model table: 4.09 GFLOPS"},
    {"resnet101", 44.5, 0.01, 7.6, 0.01, "torchvision; He et al. 2016a table 1"},
    {"resnet152", 60.2, 0.01, 11.3, 0.01, "torchvision; He et al. 2016a table 1"},
    {"preact-resnet164", 1.7, 0.01, 0, 0, "He et al. 2016b table 4"},
    {"preact-resnet1001", 10.2, 0.015, 0, 0, "He et al. 2016b table 4 (no BN parameters)"},
};
enum { N_PUBLISHED = sizeof published / sizeof published[0] };

static const Net *find_net(const char *name) {
    for (int i = 0; i < N_NETS; i++)
        if (!strcmp(nets[i].name, name))
            return &nets[i];
    ck_abort_msg("no network %s in the table", name);
    return NULL;
}

/* The front end on specs/<name>.spec at the spec's own batch. */
static void front(const char *name, Graph *g) {
    char path[4096];
    snprintf(path, sizeof path, "%s/specs/%s.spec", SOURCE_DIR, name);
    Spec spec;
    ck_assert_msg(load_spec(path, &spec), "%s does not parse", path);
    ck_assert_msg(build_graph(&spec, spec.recipe.batch, g), "%s: build_graph failed", name);
    ck_assert_msg(infer_shapes(g), "%s: infer_shapes failed", name);
}

static int depth_of(const Graph *g) {
    int d = 0;
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        if ((op->kind == OP_CONV && !strstr(op->name, ".shortcut")) || op->kind == OP_FC)
            d++;
    }
    return d;
}

static const Tensor *gap_input(const Graph *g) {
    for (int i = 0; i < g->n_fwd; i++)
        if (g->ops[i].kind == OP_GAP)
            return &g->tensors[g->ops[i].x];
    ck_abort_msg("%s has no average pool", g->spec.name);
    return NULL;
}

/* ---- every network: structure and exact totals --------------------------- */

START_TEST(test_network) {
    const Net *n = &nets[_i];
    Graph g;
    front(n->name, &g);
    const Spec *s = &g.spec;
    ck_assert_str_eq(s->name, n->name);
    ck_assert_int_eq(s->block, n->block);
    ck_assert_int_eq(s->shortcut, n->shortcut);
    ck_assert_int_eq(s->order, n->order);
    if (n->block == BLOCK_BOTTLENECK) {
        ck_assert_int_eq(s->expansion, 4);
        /* the paper puts the stride on the first 1x1, torchvision on the 3x3 */
        ck_assert_msg(s->stride_on_3x3 == (strstr(n->name, "-torchvision") != NULL), "%s: stride on the %s", n->name,
                      s->stride_on_3x3 ? "3x3" : "first 1x1");
    }
    ck_assert_msg(depth_of(&g) == n->depth, "%s: %d weighted layers, expected %d", n->name, depth_of(&g),
                  n->depth);

    const Tensor *last = gap_input(&g);
    const Tensor *logits = &g.tensors[g.logits];
    if (n->family == IMAGENET) {
        ck_assert(s->in_h == 224 && s->in_w == 224 && s->in_c == 3);
        ck_assert_int_eq(s->classes, 1000);
        ck_assert(s->stem_k == 7 && s->stem_channels == 64 && s->stem_stride == 2);
        ck_assert(s->has_pool && s->pool_k == 3 && s->pool_stride == 2);
        ck_assert_int_eq(s->n_stages, 4);
        ck_assert_msg(last->h == 7 && last->w == 7, "%s: final maps %dx%d, expected 7x7", n->name, last->h,
                      last->w);
        ck_assert_int_eq(last->c, n->block == BLOCK_BOTTLENECK ? 2048 : 512);
    } else {
        ck_assert(s->in_h == 32 && s->in_w == 32 && s->in_c == 3);
        ck_assert_int_eq(s->classes, 10);
        ck_assert(s->stem_k == 3 && s->stem_stride == 1 && !s->has_pool);
        if (n->family == CIFAR_RN18) {
            ck_assert_int_eq(s->stem_channels, 64);
            ck_assert_int_eq(s->n_stages, 4);
            ck_assert(last->h == 4 && last->c == 512);
        } else {
            ck_assert_int_eq(s->stem_channels, 16);
            ck_assert_int_eq(s->n_stages, 3);
            ck_assert_msg(last->h == 8 && last->w == 8, "%s: final maps %dx%d, expected 8x8", n->name, last->h,
                          last->w);
            ck_assert_int_eq(last->c, n->block == BLOCK_BOTTLENECK ? 256 : 64);
        }
    }
    ck_assert_int_eq(logits->c, s->classes);

    long long p = count_parameters(&g), m = count_multiply_adds(&g);
    ck_assert_msg(p == n->params, "%s: %lld parameters, expected %lld", n->name, p, n->params);
    ck_assert_msg(m == n->macs, "%s: %lld multiply-adds, expected %lld", n->name, m, n->macs);
    free_graph(&g);
}
END_TEST

/* ---- the published figures --------------------------------------------- */

START_TEST(test_published) {
    const Published *pub = &published[_i];
    Graph g;
    front(pub->name, &g);
    long long p = count_parameters(&g), m = count_multiply_adds(&g);
    if (pub->params_m > 0) {
        double got = p / 1e6, dev = fabs(got - pub->params_m) / pub->params_m;
        ck_assert_msg(dev <= pub->params_tol, "%s: %.3fM parameters, published %.4gM (%s): off by %.2f%%",
                      pub->name, got, pub->params_m, pub->source, 100 * dev);
    }
    if (pub->macs_g > 0) {
        double got = m / 1e9, dev = fabs(got - pub->macs_g) / pub->macs_g;
        ck_assert_msg(dev <= pub->macs_tol, "%s: %.3fG multiply-adds, published %.4gG (%s): off by %.2f%%",
                      pub->name, got, pub->macs_g, pub->source, 100 * dev);
    }
    free_graph(&g);
}
END_TEST

/* ---- relations within the family --------------------------------------- */

static void totals(const char *name, long long *p, long long *m) {
    Graph g;
    front(name, &g);
    *p = count_parameters(&g);
    *m = count_multiply_adds(&g);
    free_graph(&g);
}

START_TEST(test_relations) {
    long long p1, m1, p2, m2;
    /* Option A shortcuts are parameter-free: a plain net and its residual twin
     * have the same parameters and multiply-adds. */
    static const char *const twins[][2] = {
        {"plain20", "resnet20"}, {"plain32", "resnet32"},   {"plain44", "resnet44"},
        {"plain56", "resnet56"}, {"plain110", "resnet110"}, {"plain34", "resnet34-optA"},
    };
    for (size_t i = 0; i < sizeof twins / sizeof twins[0]; i++) {
        totals(twins[i][0], &p1, &m1);
        totals(twins[i][1], &p2, &m2);
        ck_assert_msg(p1 == p2 && m1 == m2, "%s and %s differ: %lld/%lld parameters", twins[i][0], twins[i][1],
                      p1, p2);
    }
    /* Option B adds projections where the shape changes; C everywhere. */
    long long pa, ma, pb, mb, pc, mc;
    totals("resnet34-optA", &pa, &ma);
    totals("resnet34", &pb, &mb);
    totals("resnet34-optC", &pc, &mc);
    ck_assert_msg(pc > pb && pb > pa, "parameters: C %lld, B %lld, A %lld", pc, pb, pa);
    ck_assert_msg(mc > mb && mb > ma, "multiply-adds: C %lld, B %lld, A %lld", mc, mb, ma);
    /* B's extra parameters are exactly its three projections and their BN. */
    ck_assert_int_eq(pb - pa, 64 * 128 + 2 * 128 + 128 * 256 + 2 * 256 + 256 * 512 + 2 * 512);
    /* Plain-18 has ResNet-18's layers without the projections. */
    totals("plain18", &p1, &m1);
    totals("resnet18", &p2, &m2);
    ck_assert_int_eq(p2 - p1, 64 * 128 + 2 * 128 + 128 * 256 + 2 * 256 + 256 * 512 + 2 * 512);
    /* Each step of n adds one basic block (two 3x3 convs, two BNs) per stage. */
    totals("resnet20", &p1, &m1);
    totals("resnet32", &p2, &m2);
    long long per_n = (2 * 9 * 16 * 16 + 4 * 16) + (2 * 9 * 32 * 32 + 4 * 32) + (2 * 9 * 64 * 64 + 4 * 64);
    ck_assert_int_eq(p2 - p1, 2 * per_n);
}
END_TEST

/* ---- the recipes --------------------------------------------------------- */

START_TEST(test_recipe) {
    const Net *n = &nets[_i];
    char path[4096];
    snprintf(path, sizeof path, "%s/specs/%s.spec", SOURCE_DIR, n->name);
    Spec spec;
    ck_assert(load_spec(path, &spec));
    const rnc_recipe *r = &spec.recipe;
    ck_assert_double_eq_tol(r->lr, 0.1, 1e-12);
    ck_assert_double_eq_tol(r->momentum, 0.9, 1e-12);
    ck_assert_double_eq_tol(r->lr_decay, 0.1, 1e-12);
    ck_assert_int_eq(r->n_lr_steps, 2);
    switch (n->family) {
    case CIFAR:   /* batch 128, 64k iterations, lr / 10 at 32k and 48k */
        ck_assert_int_eq(r->batch, 128);
        ck_assert_double_eq_tol(r->weight_decay, 1e-4, 1e-15);
        ck_assert_int_eq(r->iterations, 64000);
        ck_assert_int_eq(r->epochs, 0);
        ck_assert(r->lr_steps_in_iterations);
        ck_assert(r->lr_steps[0] == 32000 && r->lr_steps[1] == 48000);
        break;
    case IMAGENET:   /* batch 256, lr / 10 at epochs 30 and 60 of 90 */
        ck_assert_int_eq(r->batch, 256);
        ck_assert_double_eq_tol(r->weight_decay, 1e-4, 1e-15);
        ck_assert_int_eq(r->epochs, 90);
        ck_assert_int_eq(r->iterations, 0);
        ck_assert(!r->lr_steps_in_iterations);
        ck_assert(r->lr_steps[0] == 30 && r->lr_steps[1] == 60);
        break;
    case CIFAR_RN18:   /* batch 128, wd 5e-4, 200 epochs, lr / 10 at 100 and 150 */
        ck_assert_int_eq(r->batch, 128);
        ck_assert_double_eq_tol(r->weight_decay, 5e-4, 1e-15);
        ck_assert_int_eq(r->epochs, 200);
        ck_assert(!r->lr_steps_in_iterations);
        ck_assert(r->lr_steps[0] == 100 && r->lr_steps[1] == 150);
        break;
    }
    ck_assert_int_eq(r->warmup_iterations, n->warmup);
    if (n->warmup)
        ck_assert_double_eq_tol(r->warmup_lr, 0.01, 1e-12);
}
END_TEST

/* ---- specs/ holds exactly these networks -------------------------------- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

START_TEST(test_spec_dir) {
    DIR *d = opendir(SOURCE_DIR "/specs");
    ck_assert_msg(d != NULL, "cannot open %s/specs", SOURCE_DIR);
    char *found[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 5 && !strcmp(e->d_name + len - 5, ".spec")) {
            ck_assert(n < 256);
            found[n] = strndup(e->d_name, len - 5);
            n++;
        }
    }
    closedir(d);
    qsort(found, n, sizeof found[0], cmp_str);
    for (int i = 0; i < n; i++) {
        int known = 0;
        for (int j = 0; j < N_NETS; j++)
            known |= !strcmp(found[i], nets[j].name);
        ck_assert_msg(known, "specs/%s.spec is not tested (add it to tests/test_specs.c)", found[i]);
    }
    for (int j = 0; j < N_NETS; j++) {
        int present = 0;
        for (int i = 0; i < n; i++)
            present |= !strcmp(found[i], nets[j].name);
        ck_assert_msg(present, "specs/%s.spec is missing", nets[j].name);
    }
    ck_assert_int_eq(n, N_NETS);
    for (int i = 0; i < n; i++)
        free(found[i]);
    /* Every published figure names a network in the table. */
    for (int i = 0; i < N_PUBLISHED; i++)
        ck_assert(find_net(published[i].name) != NULL);
}
END_TEST

static Suite *specs_suite(void) {
    Suite *s = suite_create("specs");
    TCase *tc = tcase_create("networks");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_spec_dir);
    tcase_add_loop_test(tc, test_network, 0, N_NETS);
    tcase_add_loop_test(tc, test_published, 0, N_PUBLISHED);
    tcase_add_loop_test(tc, test_recipe, 0, N_NETS);
    tcase_add_test(tc, test_relations);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return run_suite(specs_suite());
}
