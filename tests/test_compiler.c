/* test_compiler.c - Check tests for the compiler (librnccore).
 *
 * The front end runs in-process (load_spec, build_graph, infer_shapes) on spec
 * text written to temp files; its diagnostics are captured by pointing fd 2 at
 * a temp file.  Every error path of tokenize.c, parse.c and shape.c is driven
 * from a table that gives the exact line and column the message must carry.
 * Then: parameter and multiply-add counts against the paper, the full pipeline
 * (autodiff, fusion, schedule, emitted C), and a deterministic mutation fuzzer.
 */
#define _GNU_SOURCE   /* open_memstream, mkdtemp */
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rnc.h"
#include "testutil.h"

#ifndef SOURCE_DIR
#error "compile with -DSOURCE_DIR=\"/path/to/rnc\""
#endif

#define RESNET20 SOURCE_DIR "/specs/resnet20.spec"
#define PLAIN20 SOURCE_DIR "/specs/plain20.spec"

/* ---- helpers ------------------------------------------------------------ */

/* Writes `len` bytes to a fresh temp file; returns its path (malloc'd). */
static char *write_temp(const char *text, size_t len) {
    char *path = strdup("/tmp/rnc_test_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        ck_assert_int_gt(n, 0);
        done += (size_t)n;
    }
    close(fd);
    return path;
}

/* Redirects stderr into a temp file until capture_end(), which returns what
 * was written (malloc'd, NUL-terminated). */
typedef struct {
    int saved_fd, file_fd;
} Capture;

static Capture capture_begin(void) {
    Capture c;
    fflush(stderr);
    c.file_fd = memfd_create("rnc_stderr", 0);   /* in memory: no disk writes */
    ck_assert_int_ge(c.file_fd, 0);
    c.saved_fd = dup(2);
    dup2(c.file_fd, 2);
    return c;
}

/* Within a capture: forget what was written so far / read it back. */
static void capture_reset(Capture c) {
    fflush(stderr);
    if (ftruncate(c.file_fd, 0) != 0 || lseek(c.file_fd, 0, SEEK_SET) != 0)
        ck_abort_msg("cannot reset the stderr capture");
}

static char *capture_read(Capture c) {
    fflush(stderr);
    off_t size = lseek(c.file_fd, 0, SEEK_END);
    char *buf = malloc((size_t)size + 1);
    if (!buf || pread(c.file_fd, buf, (size_t)size, 0) != size)
        ck_abort_msg("cannot read the stderr capture");
    buf[size] = '\0';
    return buf;
}

static char *capture_end(Capture c) {
    fflush(stderr);
    dup2(c.saved_fd, 2);
    close(c.saved_fd);
    off_t size = lseek(c.file_fd, 0, SEEK_END);
    char *buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    ssize_t got = pread(c.file_fd, buf, (size_t)size, 0);
    ck_assert_int_eq(got, size);
    buf[size] = '\0';
    close(c.file_fd);
    return buf;
}

/* The front end on a file, as main.c runs it.  On success the graph is kept
 * in *g (if g) or freed. */
static bool front_file(const char *path, char **err, Graph *g) {
    Capture c = capture_begin();
    Graph local;
    Graph *gg = g ? g : &local;
    bool ok = compile_front(path, 0, gg);
    if (ok && !g)
        free_graph(gg);
    *err = capture_end(c);
    return ok;
}

typedef struct {
    bool ok;
    char *path;   /* the temp file's name (already removed) */
    char *err;    /* everything written to stderr */
} Result;

static Result front_text(const char *text, size_t len, Graph *g) {
    Result r;
    r.path = write_temp(text, len);
    r.ok = front_file(r.path, &r.err, g);
    unlink(r.path);
    return r;
}

static void free_result(Result *r) {
    free(r->path);
    free(r->err);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Asserts that `err` is exactly one diagnostic line that starts with
 * "path:line:col: error: " (or "path: error: " when line == 0) and contains
 * `phrase`. */
static void assert_diag(const char *what, const char *path, const char *err, int line, int col,
                        const char *phrase) {
    char prefix[512];
    if (line > 0)
        snprintf(prefix, sizeof prefix, "%s:%d:%d: error: ", path, line, col);
    else
        snprintf(prefix, sizeof prefix, "%s: error: ", path);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "%s: expected a message starting '%s', got '%s'",
                  what, prefix, err);
    ck_assert_msg(strstr(err, phrase) != NULL, "%s: expected '%s' in '%s'", what, phrase, err);
    ck_assert_msg(count_lines(err) == 1 && err[strlen(err) - 1] == '\n', "%s: expected one line, got '%s'",
                  what, err);
}

static const Op *find_op(const Graph *g, const char *name, OpKind kind) {
    for (int i = 0; i < g->n_fwd; i++)
        if (g->ops[i].kind == kind && strcmp(g->ops[i].name, name) == 0)
            return &g->ops[i];
    return NULL;
}

static int count_ops(const Graph *g, OpKind kind) {
    int n = 0;
    for (int i = 0; i < g->n_fwd; i++)
        n += g->ops[i].kind == kind;
    return n;
}

static void load_ok(const char *path, Spec *spec) {
    Capture c = capture_begin();
    bool ok = load_spec(path, spec);
    char *err = capture_end(c);
    ck_assert_msg(ok, "%s: %s", path, err);
    ck_assert_str_eq(err, "");
    free(err);
}

static void front_ok(const char *path, Graph *g) {
    char *err;
    bool ok = front_file(path, &err, g);
    ck_assert_msg(ok, "%s: %s", path, err);
    ck_assert_str_eq(err, "");
    free(err);
}

/* ---- good specs --------------------------------------------------------- */

START_TEST(test_parse_resnet20) {
    Spec s;
    load_ok(RESNET20, &s);
    ck_assert_str_eq(s.name, "resnet20");
    ck_assert_str_eq(s.file, RESNET20);
    ck_assert_int_eq(s.in_h, 32);
    ck_assert_int_eq(s.in_w, 32);
    ck_assert_int_eq(s.in_c, 3);
    ck_assert_int_eq(s.classes, 10);
    ck_assert_int_eq(s.block, BLOCK_BASIC);
    ck_assert_int_eq(s.shortcut, SHORTCUT_A);
    ck_assert_int_eq(s.order, ORDER_POST);
    ck_assert_int_eq(s.stem_k, 3);
    ck_assert_int_eq(s.stem_channels, 16);
    ck_assert_int_eq(s.stem_stride, 1);
    ck_assert_int_eq(s.stem_loc.line, 10);
    ck_assert(!s.has_pool);
    ck_assert_int_eq(s.n_stages, 3);
    const int width[] = {16, 32, 64}, stride[] = {1, 2, 2};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(s.stages[i].width, width[i]);
        ck_assert_int_eq(s.stages[i].blocks, 3);
        ck_assert_int_eq(s.stages[i].stride, stride[i]);
        ck_assert_int_eq(s.stages[i].loc.line, 11 + i);
        ck_assert_int_eq(s.stages[i].loc.col, 1);
    }
    const rnc_recipe *r = &s.recipe;
    ck_assert_int_eq(r->batch, 128);
    ck_assert_double_eq_tol(r->lr, 0.1, 1e-15);
    ck_assert_double_eq_tol(r->momentum, 0.9, 1e-15);
    ck_assert_double_eq_tol(r->weight_decay, 1e-4, 1e-18);
    ck_assert_int_eq(r->iterations, 64000);
    ck_assert_int_eq(r->epochs, 0);
    ck_assert_int_eq(r->n_lr_steps, 2);
    ck_assert_int_eq(r->lr_steps[0], 32000);
    ck_assert_int_eq(r->lr_steps[1], 48000);
    ck_assert_int_eq(r->lr_steps_in_iterations, 1);
    ck_assert_double_eq_tol(r->lr_decay, 0.1, 1e-15);   /* default */
    ck_assert_int_eq(r->warmup_iterations, 0);
    ck_assert_double_eq_tol(s.bn_momentum, 0.1, 1e-15);
    ck_assert_double_eq_tol(s.bn_eps, 1e-5, 1e-18);
}
END_TEST

START_TEST(test_parse_plain20) {
    Spec s, r;
    load_ok(PLAIN20, &s);
    load_ok(RESNET20, &r);
    ck_assert_str_eq(s.name, "plain20");
    ck_assert_int_eq(s.shortcut, SHORTCUT_NONE);
    /* everything else is ResNet-20 */
    ck_assert_int_eq(s.block, r.block);
    ck_assert_int_eq(s.n_stages, r.n_stages);
    for (int i = 0; i < s.n_stages; i++) {
        ck_assert_int_eq(s.stages[i].width, r.stages[i].width);
        ck_assert_int_eq(s.stages[i].blocks, r.stages[i].blocks);
        ck_assert_int_eq(s.stages[i].stride, r.stages[i].stride);
    }
    ck_assert_int_eq(s.recipe.iterations, 64000);
    ck_assert_int_eq(s.recipe.n_lr_steps, 2);
}
END_TEST

/* Every statement and option at a non-default value. */
static const char full_spec[] =
    "# every statement\n"
    "network big-net_2   # a trailing comment\n"
    "input 64x48x3\n"
    "classes 100\n"
    "block bottleneck expansion 2 stride-at 3x3\n"
    "shortcut C\n"
    "order pre\n"
    "stem conv 7x7 32 stride 2\n"
    "pool max 3x3 stride 2\n"
    "stage 16 blocks 2\n"
    "stage 32 blocks 1 stride 2\n"
    "head avgpool fc\n"
    "batch 64\n"
    "epochs 90\n"
    "lr 0.05\n"
    "momentum 0.8\n"
    "weight-decay 5e-4\n"
    "lr-steps 30 60 80\n"
    "lr-decay 0.2\n"
    "warmup 500 lr 0.01\n"
    "bn-momentum 0.05\n"
    "bn-eps 1e-3\n";

START_TEST(test_parse_full) {
    Graph g;
    Result r = front_text(full_spec, strlen(full_spec), &g);
    ck_assert_msg(r.ok, "%s", r.err);
    const Spec *s = &g.spec;
    ck_assert_str_eq(s->name, "big-net_2");
    ck_assert_int_eq(s->in_h, 64);
    ck_assert_int_eq(s->in_w, 48);
    ck_assert_int_eq(s->classes, 100);
    ck_assert_int_eq(s->block, BLOCK_BOTTLENECK);
    ck_assert_int_eq(s->expansion, 2);
    ck_assert(s->stride_on_3x3);
    ck_assert_int_eq(s->shortcut, SHORTCUT_C);
    ck_assert_int_eq(s->order, ORDER_PRE);
    ck_assert_int_eq(s->stem_k, 7);
    ck_assert_int_eq(s->stem_channels, 32);
    ck_assert_int_eq(s->stem_stride, 2);
    ck_assert(s->has_pool);
    ck_assert_int_eq(s->pool_k, 3);
    ck_assert_int_eq(s->pool_stride, 2);
    ck_assert_int_eq(s->pool_loc.line, 9);
    ck_assert_int_eq(s->n_stages, 2);
    ck_assert_int_eq(s->recipe.batch, 64);
    ck_assert_int_eq(g.batch, 64);
    ck_assert_int_eq(s->recipe.epochs, 90);
    ck_assert_int_eq(s->recipe.iterations, 0);
    ck_assert_double_eq_tol(s->recipe.lr, 0.05, 1e-15);
    ck_assert_double_eq_tol(s->recipe.momentum, 0.8, 1e-15);
    ck_assert_double_eq_tol(s->recipe.weight_decay, 5e-4, 1e-18);
    ck_assert_int_eq(s->recipe.n_lr_steps, 3);
    ck_assert_int_eq(s->recipe.lr_steps[2], 80);
    ck_assert_int_eq(s->recipe.lr_steps_in_iterations, 0);   /* default unit: epochs */
    ck_assert_double_eq_tol(s->recipe.lr_decay, 0.2, 1e-15);
    ck_assert_int_eq(s->recipe.warmup_iterations, 500);
    ck_assert_double_eq_tol(s->recipe.warmup_lr, 0.01, 1e-15);
    ck_assert_double_eq_tol(s->bn_momentum, 0.05, 1e-15);
    ck_assert_double_eq_tol(s->bn_eps, 1e-3, 1e-15);

    /* 64x48 -> stem /2 -> 32x24 -> pool /2 -> 16x12 -> stage2 /2 -> 8x6 */
    const Op *pool = find_op(&g, "stem.pool", OP_MAXPOOL);
    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(g.tensors[pool->y].h, 16);
    ck_assert_int_eq(g.tensors[pool->y].w, 12);
    ck_assert_int_eq(g.tensors[pool->y].c, 32);
    /* bottleneck, stride on the 3x3: conv1 keeps the size, conv2 halves it */
    const Op *c1 = find_op(&g, "stage2.block1.conv1", OP_CONV);
    const Op *c2 = find_op(&g, "stage2.block1.conv2", OP_CONV);
    const Op *c3 = find_op(&g, "stage2.block1.conv3", OP_CONV);
    ck_assert(c1 && c2 && c3);
    ck_assert_int_eq(c1->k, 1);
    ck_assert_int_eq(c1->stride, 1);
    ck_assert_int_eq(c2->k, 3);
    ck_assert_int_eq(c2->stride, 2);
    ck_assert_int_eq(g.tensors[c3->y].h, 8);
    ck_assert_int_eq(g.tensors[c3->y].w, 6);
    ck_assert_int_eq(g.tensors[c3->y].c, 64);   /* width 32 * expansion 2 */
    /* pre-activation: BN-ReLU before each conv, a final BN-ReLU, no stem BN;
     * option C: a projection in every block, without BN in pre-act nets */
    ck_assert_ptr_nonnull(find_op(&g, "stage1.block1.bn1", OP_BN));
    ck_assert_ptr_nonnull(find_op(&g, "head.bn", OP_BN));
    ck_assert_ptr_nonnull(find_op(&g, "head.relu", OP_RELU));
    ck_assert_ptr_null(find_op(&g, "stem.bn", OP_BN));
    ck_assert_ptr_nonnull(find_op(&g, "stage1.block2.shortcut.conv", OP_CONV));
    ck_assert_ptr_null(find_op(&g, "stage1.block2.shortcut.bn", OP_BN));
    ck_assert_int_eq(count_ops(&g, OP_ADD), 3);
    /* parameters, by hand: stem 4704; stage1 blocks 2 x 4480; stage2 block 14528;
     * head BN 128; fc 6500 */
    ck_assert_int_eq(count_parameters(&g), 34820);
    ck_assert_int_eq(g.tensors[g.logits].c, 100);
    free_graph(&g);
    free_result(&r);
}
END_TEST

/* Defaults: everything the parser fills in when a statement is left out. */
START_TEST(test_parse_defaults) {
    static const char text[] = "network t\ninput 8x8x3\nclasses 2\nblock bottleneck\nshortcut B\n"
                               "stem conv 3x3 8\nstage 4 blocks 1";   /* no final newline */
    Graph g;
    Result r = front_text(text, strlen(text), &g);
    ck_assert_msg(r.ok, "%s", r.err);
    const Spec *s = &g.spec;
    ck_assert_int_eq(s->expansion, 4);
    ck_assert(!s->stride_on_3x3);
    ck_assert_int_eq(s->order, ORDER_POST);
    ck_assert_int_eq(s->stem_stride, 1);
    ck_assert_int_eq(s->stages[0].stride, 1);
    ck_assert(!s->has_pool);
    ck_assert_int_eq(s->recipe.batch, 128);
    ck_assert_int_eq(s->recipe.epochs, 1);   /* neither epochs nor iterations */
    ck_assert_int_eq(s->recipe.iterations, 0);
    ck_assert_double_eq_tol(s->recipe.lr, 0.1, 1e-15);
    ck_assert_double_eq_tol(s->recipe.momentum, 0.9, 1e-15);
    ck_assert_double_eq_tol(s->recipe.weight_decay, 1e-4, 1e-18);
    ck_assert_double_eq_tol(s->recipe.lr_decay, 0.1, 1e-15);
    ck_assert_int_eq(s->recipe.n_lr_steps, 0);
    ck_assert_double_eq_tol(s->bn_momentum, 0.1, 1e-15);
    ck_assert_double_eq_tol(s->bn_eps, 1e-5, 1e-18);
    /* 8 -> 16 channels: option B projects (1x1 conv + BN) */
    const Op *p = find_op(&g, "stage1.block1.shortcut.conv", OP_CONV);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->k, 1);
    ck_assert_ptr_nonnull(find_op(&g, "stage1.block1.shortcut.bn", OP_BN));
    ck_assert_int_eq(g.tensors[g.logits].c, 2);
    free_graph(&g);
    free_result(&r);
}
END_TEST

/* Comments may hold UTF-8; CRLF line ends and tabs are whitespace. */
START_TEST(test_parse_text_forms) {
    static const char text[] = "# r\xc3\xa9seau r\xc3\xa9siduel\r\n"
                               "network\tt   # \xe2\x80\x94 comment\r\n"
                               "input 8x8x3\r\nclasses 2\r\nblock basic\r\nshortcut none\r\n"
                               "stem conv 3x3 8\r\n\r\n   \t\r\nstage 8 blocks 2 stride 2\r\n";
    Graph g;
    Result r = front_text(text, strlen(text), &g);
    ck_assert_msg(r.ok, "%s", r.err);
    ck_assert_str_eq(r.err, "");
    ck_assert_str_eq(g.spec.name, "t");
    ck_assert_int_eq(g.spec.shortcut, SHORTCUT_NONE);
    ck_assert_int_eq(g.spec.stages[0].loc.line, 10);
    ck_assert_int_eq(count_ops(&g, OP_ADD), 0);
    ck_assert_int_eq(count_ops(&g, OP_SHORTCUT_A), 0);
    free_graph(&g);
    free_result(&r);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

/* A valid spec in two parts: lines 1-5 and lines 6-8.  Line 9 is free. */
#define HEAD "network t\ninput 32x32x3\nclasses 10\nblock basic\nshortcut A\n"
#define BODY "stem conv 3x3 16\nstage 16 blocks 1\nstage 32 blocks 1 stride 2\n"
#define SPEC HEAD BODY

typedef struct {
    const char *what;
    const char *text;
    size_t len;        /* 0: strlen(text) (set for texts with NUL bytes) */
    int line, col;
    const char *phrase;
} ErrorCase;

static const ErrorCase error_cases[] = {
    /* tokenize.c */
    {"NUL byte", "network t\ninput 32x32x3\0\n" BODY, 25, 2, 14, "file is not text (byte 0x00)"},
    {"NUL in a comment", "# hello\0world\n" SPEC, 14 + sizeof SPEC - 1, 1, 8, "file is not text (byte 0x00)"},
    {"control byte", "network t\x01\n", 0, 1, 10, "file is not text (byte 0x01)"},
    {"DEL byte", SPEC "lr 0.1\x7f\n", 0, 9, 7, "file is not text (byte 0x7f)"},
    {"ELF header", "\x7f" "ELF\x02\x01\x01", 0, 1, 1, "file is not text (byte 0x7f)"},
    {"non-ASCII outside a comment", "network r\xc3\xa9seau\n", 0, 1, 10,
     "unexpected non-ASCII character (only comments may hold one)"},
    {"bad character", "network t\ninput 32x32x3\nclasses = 10\n", 0, 3, 9, "unexpected character '='"},
    {"bad character in a size", "network t\ninput 32*32*3\n", 0, 2, 9, "unexpected character '*'"},

    /* statements */
    {"unknown statement", SPEC "layers 20\n", 0, 9, 1,
     "unknown statement 'layers' (see docs/spec.md for the statements)"},
    {"number as a statement", SPEC "20 layers\n", 0, 9, 1, "unknown statement '20'"},
    {"plural statement", SPEC "stages 64 blocks 1\n", 0, 9, 1, "unknown statement 'stages'"},
    {"capitalised statement", "Network t\n", 0, 1, 1, "unknown statement 'Network'"},
    {"duplicate classes", SPEC "classes 100\n", 0, 9, 1, "'classes' given twice (first on line 3)"},
    {"duplicate network", SPEC "network u\n", 0, 9, 1, "'network' given twice (first on line 1)"},
    {"duplicate stem", SPEC "stem conv 3x3 16\n", 0, 9, 1, "'stem' given twice (first on line 6)"},
    {"duplicate lr", SPEC "lr 0.1\nlr 0.2\n", 0, 10, 1, "'lr' given twice (first on line 9)"},
    {"pool before stem", HEAD "pool max 3x3 stride 2\n" BODY, 0, 6, 1, "'pool' must follow the 'stem' statement"},
    {"stem after stage", HEAD "stage 16 blocks 1\nstem conv 3x3 16\n", 0, 7, 1,
     "'stem' must come before the first 'stage'"},
    {"trailing junk", "network t\ninput 32x32x3\nclasses 10 20\n", 0, 3, 12,
     "unexpected '20' at the end of the statement"},
    {"trailing junk after head", SPEC "head avgpool fc softmax\n", 0, 9, 17, "unexpected 'softmax' at the end"},
    {"trailing junk after shortcut", "network t\ninput 32x32x3\nclasses 10\nblock basic\nshortcut A B\n", 0, 5,
     12, "unexpected 'B' at the end of the statement"},
    {"too many stages",
     HEAD "stem conv 3x3 16\nstage 16 blocks 1\nstage 16 blocks 1\nstage 16 blocks 1\nstage 16 blocks 1\n"
          "stage 16 blocks 1\nstage 16 blocks 1\nstage 16 blocks 1\nstage 16 blocks 1\nstage 16 blocks 1\n",
     0, 15, 1, "at most 8 stages"},
    {"epochs and iterations", SPEC "epochs 10\niterations 100\n", 0, 10, 1,
     "give 'epochs' or 'iterations', not both"},

    /* missing statements: reported at the end of the file */
    {"missing network", "input 32x32x3\nclasses 10\nblock basic\nshortcut A\n" BODY, 0, 8, 1,
     "missing 'network' statement"},
    {"missing input", "network t\nclasses 10\nblock basic\nshortcut A\n" BODY, 0, 8, 1, "missing 'input' statement"},
    {"missing classes", "network t\ninput 32x32x3\nblock basic\nshortcut A\n" BODY, 0, 8, 1,
     "missing 'classes' statement"},
    {"missing block", "network t\ninput 32x32x3\nclasses 10\nshortcut A\n" BODY, 0, 8, 1,
     "missing 'block' statement"},
    {"missing shortcut", "network t\ninput 32x32x3\nclasses 10\nblock basic\n" BODY, 0, 8, 1,
     "missing 'shortcut' statement"},
    {"missing stem", HEAD "stage 16 blocks 1\n", 0, 7, 1, "missing 'stem' statement"},
    {"missing stage", HEAD "stem conv 3x3 16\n# no stages\n", 0, 8, 1, "missing 'stage' statement"},
    {"missing stage, no final newline", HEAD "stem conv 3x3 16", 0, 6, 17, "missing 'stage' statement"},
    {"empty file", "", 0, 1, 1, "missing 'network' statement"},
    {"only comments", "# nothing\n\n# here\n", 0, 4, 1, "missing 'network' statement"},

    /* network */
    {"name starts with a digit", "network 3net\n", 0, 1, 9, "expected a network name (letters, digits, '-', '_', at most 63)"},
    {"name with a dot", "network res.net\n", 0, 1, 9, "a network name may hold letters, digits, '-' and '_', got 'res.net'"},
    {"name with a plus", "network res+net\n", 0, 1, 9, "a network name may hold letters"},
    {"name too long", "network abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij\n", 0, 1, 9,
     "at most 63"},
    {"no name", "network\n", 0, 1, 8, "expected a network name"},
    {"no name at end of file", "network", 0, 1, 8, "expected a network name"},

    /* input */
    {"input with two sizes", "network t\ninput 32x32\n", 0, 2, 7, "expected an input size HxWxC, got '32x32'"},
    {"input with four sizes", "network t\ninput 32x32x3x1\n", 0, 2, 7, "expected an input size HxWxC, got '32x32x3x1'"},
    {"input as a word", "network t\ninput x32x3\n", 0, 2, 7, "expected an input size HxWxC, got 'x32x3'"},
    {"input with a dot", "network t\ninput 32.5x32x3\n", 0, 2, 7, "expected an input size HxWxC"},
    {"input zero", "network t\ninput 0x32x3\n", 0, 2, 7,
     "each size in an input size HxWxC must be between 1 and 4096, got 0"},
    {"input too large", "network t\ninput 32x8192x3\n", 0, 2, 7, "must be between 1 and 4096, got 8192"},
    {"input huge", "network t\ninput 99999999999x1x1\n", 0, 2, 7, "expected an input size HxWxC"},
    {"input missing", "network t\ninput\n", 0, 2, 6, "expected an input size HxWxC"},

    /* classes: whole numbers and their range */
    {"classes abc", "network t\ninput 32x32x3\nclasses abc\n", 0, 3, 9,
     "expected the number of classes (a whole number), got 'abc'"},
    {"classes 1.5", "network t\ninput 32x32x3\nclasses 1.5\n", 0, 3, 9,
     "expected the number of classes (a whole number), got '1.5'"},
    {"classes 10x", "network t\ninput 32x32x3\nclasses 10x\n", 0, 3, 9, "(a whole number), got '10x'"},
    {"classes 3y3", "network t\ninput 32x32x3\nclasses 3y3\n", 0, 3, 9, "(a whole number), got '3y3'"},
    {"classes overflow", "network t\ninput 32x32x3\nclasses 99999999999999999999\n", 0, 3, 9, "(a whole number)"},
    {"classes very long",
     "network t\ninput 32x32x3\nclasses "
     "0000000000000000000000000000000000000000000000000000000000000000000000000010\n",
     0, 3, 9, "(a whole number)"},
    {"classes 1", "network t\ninput 32x32x3\nclasses 1\n", 0, 3, 9,
     "the number of classes must be between 2 and 1000000, got 1"},
    {"classes negative", "network t\ninput 32x32x3\nclasses -10\n", 0, 3, 9, "between 2 and 1000000, got -10"},
    {"classes missing", "network t\ninput 32x32x3\nclasses\n", 0, 3, 8, "expected the number of classes"},

    /* block */
    {"block kind", "network t\ninput 32x32x3\nclasses 10\nblock residual\n", 0, 4, 7,
     "expected a block kind (one of basic, bottleneck), got 'residual'"},
    {"block option on basic", "network t\ninput 32x32x3\nclasses 10\nblock basic expansion 4\n", 0, 4, 13,
     "'expansion' only applies to bottleneck blocks"},
    {"block unknown option", "network t\ninput 32x32x3\nclasses 10\nblock bottleneck width 4\n", 0, 4, 18,
     "expected 'expansion' or 'stride-at', got 'width'"},
    {"block expansion 0", "network t\ninput 32x32x3\nclasses 10\nblock bottleneck expansion 0\n", 0, 4, 28,
     "the expansion must be between 1 and 64, got 0"},
    {"block expansion missing", "network t\ninput 32x32x3\nclasses 10\nblock bottleneck expansion\n", 0, 4, 27,
     "expected the expansion"},
    {"block stride-at", "network t\ninput 32x32x3\nclasses 10\nblock bottleneck stride-at 5x5\n", 0, 4, 28,
     "expected where the stride goes (one of 1x1, 3x3), got '5x5'"},

    /* shortcut, order */
    {"shortcut D", "network t\ninput 32x32x3\nclasses 10\nblock basic\nshortcut D\n", 0, 5, 10,
     "expected a shortcut option (one of none, A, B, C), got 'D'"},
    {"shortcut lowercase", "network t\ninput 32x32x3\nclasses 10\nblock basic\nshortcut a\n", 0, 5, 10,
     "got 'a'"},
    {"shortcut missing", "network t\ninput 32x32x3\nclasses 10\nblock basic\nshortcut\n", 0, 5, 9,
     "expected a shortcut option"},
    {"order", SPEC "order mid\n", 0, 9, 7, "expected a block order (one of post, pre), got 'mid'"},

    /* stem */
    {"stem 3y3", HEAD "stem conv 3y3 16\n", 0, 6, 11, "expected a kernel size KxK, got '3y3'"},
    {"stem not square", HEAD "stem conv 3x5 16\n", 0, 6, 11, "a kernel size KxK must be square, got 3x5"},
    {"stem kernel too large", HEAD "stem conv 17x17 16\n", 0, 6, 11,
     "each size in a kernel size KxK must be between 1 and 15, got 17"},
    {"stem kernel zero", HEAD "stem conv 0x0 16\n", 0, 6, 11, "between 1 and 15, got 0"},
    {"stem channels 0", HEAD "stem conv 3x3 0\n", 0, 6, 15, "the stem's channels must be between 1 and 65536, got 0"},
    {"stem channels 1.5", HEAD "stem conv 3x3 1.5\n", 0, 6, 15, "expected the stem's channels (a whole number)"},
    {"stem without conv", HEAD "stem 3x3 16\n", 0, 6, 6, "expected 'conv', got '3x3'"},
    {"stem without kernel", HEAD "stem conv\n", 0, 6, 10, "expected a kernel size KxK"},
    {"stem stride 0", HEAD "stem conv 3x3 16 stride 0\n", 0, 6, 25, "stride must be between 1 and 8, got 0"},
    {"stem stride missing", HEAD "stem conv 3x3 16 stride\n", 0, 6, 24, "expected stride"},
    {"stem step", HEAD "stem conv 3x3 16 step 2\n", 0, 6, 18, "expected 'stride', got 'step'"},

    /* pool */
    {"pool avg", HEAD "stem conv 3x3 16\npool avg 3x3\n", 0, 7, 6, "expected 'max', got 'avg'"},
    {"pool not square", HEAD "stem conv 3x3 16\npool max 2x3\n", 0, 7, 10, "a window size KxK must be square"},
    {"pool stride 9", HEAD "stem conv 3x3 16\npool max 3x3 stride 9\n", 0, 7, 21,
     "stride must be between 1 and 8, got 9"},
    {"duplicate pool", HEAD "stem conv 3x3 16\npool max 3x3\npool max 3x3\n", 0, 8, 1,
     "'pool' given twice (first on line 7)"},

    /* stage */
    {"stage width 0", HEAD "stem conv 3x3 16\nstage 0 blocks 1\n", 0, 7, 7,
     "the stage's width must be between 1 and 65536, got 0"},
    {"stage width word", HEAD "stem conv 3x3 16\nstage wide blocks 1\n", 0, 7, 7,
     "expected the stage's width (a whole number), got 'wide'"},
    {"stage without blocks", HEAD "stem conv 3x3 16\nstage 16 3\n", 0, 7, 10, "expected 'blocks', got '3'"},
    {"stage blocks 0", HEAD "stem conv 3x3 16\nstage 16 blocks 0\n", 0, 7, 17,
     "the number of blocks must be between 1 and 100000, got 0"},
    {"stage step", HEAD "stem conv 3x3 16\nstage 16 blocks 1 step 2\n", 0, 7, 19, "expected 'stride', got 'step'"},
    {"stage stride 9", HEAD "stem conv 3x3 16\nstage 16 blocks 1 stride 9\n", 0, 7, 26,
     "stride must be between 1 and 8, got 9"},

    /* head */
    {"head maxpool", SPEC "head maxpool fc\n", 0, 9, 6, "expected 'avgpool', got 'maxpool'"},
    {"head without fc", SPEC "head avgpool\n", 0, 9, 13, "expected fc"},

    /* recipe */
    {"batch 0", SPEC "batch 0\n", 0, 9, 7, "the batch size must be between 1 and 65536, got 0"},
    {"batch 1.5", SPEC "batch 1.5\n", 0, 9, 7, "expected the batch size (a whole number), got '1.5'"},
    {"epochs 0", SPEC "epochs 0\n", 0, 9, 8, "the number of epochs must be between 1 and 100000, got 0"},
    {"iterations negative", SPEC "iterations -5\n", 0, 9, 12,
     "the number of iterations must be between 1 and 100000000, got -5"},
    {"lr abc", SPEC "lr abc\n", 0, 9, 4, "expected the learning rate (a number), got 'abc'"},
    {"lr nan", SPEC "lr nan\n", 0, 9, 4, "expected the learning rate (a number), got 'nan'"},
    {"lr overflow", SPEC "lr 1e999\n", 0, 9, 4, "expected the learning rate (a number), got '1e999'"},
    {"lr 0.1.2", SPEC "lr 0.1.2\n", 0, 9, 4, "expected the learning rate (a number), got '0.1.2'"},
    {"lr 0", SPEC "lr 0\n", 0, 9, 4, "the learning rate must be between 1e-12 and 100, got 0"},
    {"lr missing", SPEC "lr\n", 0, 9, 3, "expected the learning rate"},
    {"momentum 1", SPEC "momentum 1\n", 0, 9, 10, "the momentum must be between 0 and 0.999999, got 1"},
    {"weight decay negative", SPEC "weight-decay -0.1\n", 0, 9, 14,
     "the weight decay must be between 0 and 1, got -0.1"},
    {"lr-decay 2", SPEC "lr-decay 2\n", 0, 9, 10, "the lr decay factor must be between 1e-09 and 1, got 2"},
    {"bn-eps 0", SPEC "bn-eps 0\n", 0, 9, 8, "the BN epsilon must be between 1e-12 and 1, got 0"},
    {"bn-momentum 1.5", SPEC "bn-momentum 1.5\n", 0, 9, 13, "the BN momentum must be between 0 and 1, got 1.5"},
    {"warmup without lr", SPEC "warmup 100 0.01\n", 0, 9, 12, "expected 'lr', got '0.01'"},
    {"warmup without rate", SPEC "warmup 100 lr\n", 0, 9, 14, "expected the warm-up learning rate"},
    {"warmup 0", SPEC "warmup 0 lr 0.01\n", 0, 9, 8, "the warm-up iterations must be between 1 and 100000000, got 0"},
    {"lr-steps decreasing", SPEC "lr-steps 100 50\n", 0, 9, 14, "lr-steps must increase"},
    {"lr-steps repeated", SPEC "lr-steps 100 200 200\n", 0, 9, 18, "lr-steps must increase"},
    {"lr-steps none", SPEC "lr-steps epochs\n", 0, 9, 10, "expected at least one lr step"},
    {"lr-steps empty", SPEC "lr-steps\n", 0, 9, 9, "expected at least one lr step"},
    {"lr-steps unit", SPEC "lr-steps 10 20 days\n", 0, 9, 16,
     "expected the unit of lr-steps (one of epochs, iterations), got 'days'"},
    {"lr-steps nine", SPEC "lr-steps 1 2 3 4 5 6 7 8 9\n", 0, 9, 26, "at most 8 lr-steps"},
    {"lr-steps 1.5", SPEC "lr-steps 1.5\n", 0, 9, 10, "expected an lr step (a whole number), got '1.5'"},
    {"lr-steps 0", SPEC "lr-steps 0 10\n", 0, 9, 10, "an lr step must be between 1 and 100000000, got 0"},
    {"lr-steps junk after unit", SPEC "lr-steps 10 epochs 20\n", 0, 9, 20, "unexpected '20' at the end"},
    /* reals are decimal: strtod would read hexadecimal */
    {"lr hexadecimal", SPEC "lr 0x10\n", 0, 9, 4, "expected the learning rate (a number), got '0x10'"},
    {"momentum hexadecimal float", SPEC "momentum 0x1p-1\n", 0, 9, 10,
     "expected the momentum (a number), got '0x1p-1'"},
    {"weight decay with a hex exponent", SPEC "weight-decay 0X1P-4\n", 0, 9, 14, "(a number), got '0X1P-4'"},

    /* sizes: the spec as a whole, and sizes no machine could hold */
    {"blocks in all stages", HEAD "stem conv 3x3 16\nstage 16 blocks 60000\nstage 32 blocks 50000 stride 2\n", 0, 8,
     17, "at most 100000 blocks in all stages together, this stage makes 110000"},
    {"a billion channels", HEAD "stem conv 3x3 16\nstage 1000000000 blocks 1\n", 0, 7, 7,
     "the stage's width must be between 1 and 65536, got 1000000000"},
    {"absurd input", "network t\ninput 4096x4096x4096\nclasses 1000000\nblock basic\nshortcut A\n"
     "stem conv 3x3 16\nstage 16 blocks 1\nbatch 8192\n", 0, 0, 0,
     "training this network at batch 8192 would need at least 2.1 PiB (its forward activations and weights alone), "
     "more than a 64-bit process can address (128.0 TiB)"},
    {"multiply-adds beyond 2^62", "network t\ninput 4096x4096x3\nclasses 10\nblock basic\nshortcut A\n"
     "stem conv 15x15 65536\nstage 65536 blocks 4\n", 0, 7, 1,
     "stage1.block4.conv2 brings the network to 5.19e+18 multiply-adds per image, more than rnc counts (2^62)"},

    /* shape.c: checks on the whole network, at the line that made the layer */
    {"stride does not divide",
     "network t\ninput 30x30x3\nclasses 10\nblock basic\nshortcut A\nstem conv 3x3 16\nstage 16 blocks 1\n"
     "stage 32 blocks 1 stride 2\nstage 64 blocks 1 stride 2\n",
     0, 9, 26, "stride 2 does not divide the 15x15 input of stage3.block1.conv1"},
    {"stem stride does not divide",
     "network t\ninput 31x32x3\nclasses 10\nblock basic\nshortcut A\nstem conv 3x3 16 stride 2\n"
     "stage 16 blocks 1\n",
     0, 6, 25, "stride 2 does not divide the 31x32 input of stem.conv"},
    {"pool stride does not divide",
     "network t\ninput 30x30x3\nclasses 10\nblock basic\nshortcut A\nstem conv 3x3 16 stride 2\n"
     "pool max 3x3 stride 2\nstage 16 blocks 1\n",
     0, 7, 21, "stride 2 does not divide the 15x15 input of stem.pool"},
    {"stride 3 on 32x32", HEAD "stem conv 3x3 16\nstage 16 blocks 1 stride 3\n", 0, 7, 26,
     "stride 3 does not divide the 32x32 input of stage1.block1.conv1"},
    {"bottleneck stride on the 1x1 does not divide",
     "network t\ninput 6x6x3\nclasses 10\nblock bottleneck\nshortcut B\nstem conv 3x3 16\nstage 4 blocks 1 stride 4\n",
     0, 7, 25, "stride 4 does not divide the 6x6 input of stage1.block1.conv1"},
    {"bottleneck stride on the 3x3 does not divide",
     "network t\ninput 6x6x3\nclasses 10\nblock bottleneck stride-at 3x3\nshortcut B\nstem conv 3x3 16\n"
     "stage 4 blocks 1 stride 4\n",
     0, 7, 25, "stride 4 does not divide the 6x6 input of stage1.block1.conv2"},
    {"kernel larger than input",
     "network t\ninput 1x1x3\nclasses 10\nblock basic\nshortcut A\nstem conv 4x4 16\nstage 16 blocks 1\n", 0, 6, 1,
     "impossible shape: stem.conv has a 4x4 window but its input is 1x1"},
    {"pool window larger than input",
     "network t\ninput 2x2x3\nclasses 10\nblock basic\nshortcut A\nstem conv 3x3 16 stride 2\npool max 4x4\n"
     "stage 16 blocks 1\n",
     0, 7, 1, "impossible shape: stem.pool has a 4x4 window but its input is 1x1"},
    {"option A shrinks channels", HEAD "stem conv 3x3 16\nstage 32 blocks 1\nstage 16 blocks 1 stride 2\n", 0, 8, 1,
     "option A cannot shrink channels (32 to 16) in stage2.block1.shortcut"},
    {"option A shrinks the stem's channels", HEAD "stem conv 3x3 64\nstage 16 blocks 2\n", 0, 7, 1,
     "option A cannot shrink channels (64 to 16) in stage1.block1.shortcut"},
};

START_TEST(test_error) {
    const ErrorCase *e = &error_cases[_i];
    size_t len = e->len ? e->len : strlen(e->text);
    Result r = front_text(e->text, len, NULL);
    ck_assert_msg(!r.ok, "%s: accepted", e->what);
    assert_diag(e->what, r.path, r.err, e->line, e->col, e->phrase);
    free_result(&r);
}
END_TEST

START_TEST(test_error_no_file) {
    char *err;
    const char *path = "/nonexistent-rnc-dir/no.spec";
    ck_assert(!front_file(path, &err, NULL));
    assert_diag("no file", path, err, 0, 0, "cannot open: No such file or directory");
    free(err);
}
END_TEST

START_TEST(test_error_directory) {
    char dir[] = "/tmp/rnc_dir_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *err;
    bool ok = front_file(dir, &err, NULL);
    rmdir(dir);
    ck_assert(!ok);
    /* fopen() of a directory may fail or its read may: either way, one line */
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s: error: ", dir);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "got '%s'", err);
    ck_assert_int_eq(count_lines(err), 1);
    free(err);
}
END_TEST

/* A spec is read up to 1 MiB: a larger file, or a device that never ends,
 * is refused without reading on. */
START_TEST(test_error_too_large) {
    size_t len = (1 << 20) + 100;
    char *text = malloc(len);
    ck_assert_ptr_nonnull(text);
    memset(text, '#', len);
    for (size_t i = 79; i < len; i += 80)
        text[i] = '\n';
    Result r = front_text(text, len, NULL);
    ck_assert(!r.ok);
    assert_diag("1 MiB of comments", r.path, r.err, 0, 0, "more than 1 MiB; a spec is a small text file");
    free_result(&r);
    free(text);
    char *err;
    ck_assert(!front_file("/dev/zero", &err, NULL));
    assert_diag("/dev/zero", "/dev/zero", err, 0, 0, "more than 1 MiB");
    free(err);
}
END_TEST

/* The one message of a failed compile is the first error: parsing stops. */
START_TEST(test_error_first_only) {
    static const char text[] = "network 1\ninput 0x0x0\nclasses 0\nbogus\n";
    Result r = front_text(text, strlen(text), NULL);
    ck_assert(!r.ok);
    assert_diag("first only", r.path, r.err, 1, 9, "expected a network name");
    free_result(&r);
}
END_TEST

/* ---- graph, shapes and counts ------------------------------------------- */

START_TEST(test_resnet20_counts) {
    Graph g;
    front_ok(RESNET20, &g);
    /* He et al. 2016, table 6: 0.27M parameters; ~40.6M multiply-adds per
     * 32x32 image.  By hand: stem 432+32; stage 1 6*(2304+32); stage 2
     * 4608+5*9216+6*64; stage 3 18432+5*36864+6*128; fc 650. */
    ck_assert_int_eq(count_parameters(&g), 269722);
    ck_assert_int_eq(count_multiply_adds(&g), 40551040);
    /* 19 convolutions + fc = 20 weighted layers */
    ck_assert_int_eq(count_ops(&g, OP_CONV), 19);
    ck_assert_int_eq(count_ops(&g, OP_FC), 1);
    ck_assert_int_eq(count_ops(&g, OP_BN), 19);
    ck_assert_int_eq(count_ops(&g, OP_ADD), 9);
    ck_assert_int_eq(count_ops(&g, OP_SHORTCUT_A), 2);   /* where the shape changes */
    ck_assert_int_eq(g.batch, 128);
    free_graph(&g);
}
END_TEST

START_TEST(test_resnet20_shapes) {
    Graph g;
    front_ok(RESNET20, &g);
    const Tensor *T = g.tensors;
    ck_assert_int_eq(T[g.input].n, 128);
    ck_assert_int_eq(T[g.input].h, 32);
    ck_assert_int_eq(T[g.input].c, 3);
    const Op *stem = find_op(&g, "stem.conv", OP_CONV);
    ck_assert_ptr_nonnull(stem);
    ck_assert_int_eq(stem->loc.line, 10);
    ck_assert_int_eq(T[stem->y].h, 32);
    ck_assert_int_eq(T[stem->y].c, 16);
    ck_assert_int_eq(T[stem->w].rank, 4);
    ck_assert_int_eq(T[stem->w].shape[0], 3);
    ck_assert_int_eq(T[stem->w].shape[1], 3);
    ck_assert_int_eq(T[stem->w].shape[2], 3);
    ck_assert_int_eq(T[stem->w].shape[3], 16);
    ck_assert_int_eq(T[stem->w].fan_in, 27);
    ck_assert_ptr_nonnull(find_op(&g, "stem.bn", OP_BN));
    ck_assert_ptr_nonnull(find_op(&g, "stem.relu", OP_RELU));

    const Op *c = find_op(&g, "stage2.block1.conv1", OP_CONV);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->stride, 2);
    ck_assert_int_eq(c->pad, 1);
    ck_assert_int_eq(c->loc.line, 12);   /* the `stage 32 ...` line */
    ck_assert_int_eq(T[c->y].h, 16);
    ck_assert_int_eq(T[c->y].w, 16);
    ck_assert_int_eq(T[c->y].c, 32);
    ck_assert_ptr_nonnull(find_op(&g, "stage2.block1.bn1", OP_BN));
    ck_assert_ptr_nonnull(find_op(&g, "stage2.block1.relu1", OP_RELU));
    ck_assert_ptr_nonnull(find_op(&g, "stage2.block1.conv2", OP_CONV));
    ck_assert_ptr_nonnull(find_op(&g, "stage2.block1.bn2", OP_BN));
    ck_assert_ptr_nonnull(find_op(&g, "stage2.block1.add", OP_ADD));
    ck_assert_ptr_nonnull(find_op(&g, "stage2.block1.relu", OP_RELU));
    ck_assert_ptr_null(find_op(&g, "stage2.block1.conv3", OP_CONV));

    /* option A: stride-2 subsampling, zero channels split around x */
    const Op *sc = find_op(&g, "stage2.block1.shortcut", OP_SHORTCUT_A);
    ck_assert_ptr_nonnull(sc);
    ck_assert_int_eq(sc->stride, 2);
    ck_assert_int_eq(sc->ch_lo, 8);
    ck_assert_int_eq(T[sc->y].h, 16);
    ck_assert_int_eq(T[sc->y].c, 32);
    ck_assert_ptr_null(find_op(&g, "stage1.block1.shortcut", OP_SHORTCUT_A));   /* identity */
    ck_assert_ptr_nonnull(find_op(&g, "stage3.block1.shortcut", OP_SHORTCUT_A));

    const Op *last = find_op(&g, "stage3.block3.relu", OP_RELU);
    ck_assert_ptr_nonnull(last);
    ck_assert_int_eq(T[last->y].h, 8);
    ck_assert_int_eq(T[last->y].w, 8);
    ck_assert_int_eq(T[last->y].c, 64);
    const Op *gap = find_op(&g, "head.avgpool", OP_GAP);
    ck_assert_ptr_nonnull(gap);
    ck_assert_int_eq(T[gap->y].h, 1);
    ck_assert_int_eq(T[gap->y].c, 64);
    const Op *fc = find_op(&g, "head.fc", OP_FC);
    ck_assert_ptr_nonnull(fc);
    ck_assert_int_eq(fc->y, g.logits);
    ck_assert_int_eq(T[fc->w].shape[0], 64);
    ck_assert_int_eq(T[fc->w].shape[1], 10);
    ck_assert_int_eq(T[g.logits].n, 128);
    ck_assert_int_eq(T[g.logits].c, 10);
    ck_assert_int_eq(T[g.labels].count, 128);
    ck_assert(T[g.labels].is_int);
    ck_assert_int_eq(g.ops[g.loss_op].kind, OP_LOSS);
    ck_assert_str_eq(g.ops[g.loss_op].name, "loss");
    ck_assert_int_eq(g.n_fwd, g.n_ops);   /* no backward before autodiff */
    free_graph(&g);
}
END_TEST

/* Option A shortcuts have no parameters, so the plain net has exactly as many. */
START_TEST(test_plain20_counts) {
    Graph g, r;
    front_ok(PLAIN20, &g);
    front_ok(RESNET20, &r);
    ck_assert_int_eq(count_parameters(&g), count_parameters(&r));
    ck_assert_int_eq(count_parameters(&g), 269722);
    ck_assert_int_eq(count_multiply_adds(&g), count_multiply_adds(&r));
    ck_assert_int_eq(count_ops(&g, OP_ADD), 0);
    ck_assert_int_eq(count_ops(&g, OP_SHORTCUT_A), 0);
    ck_assert_int_eq(count_ops(&g, OP_CONV), 19);
    ck_assert_ptr_nonnull(find_op(&g, "stage3.block3.relu", OP_RELU));
    free_graph(&g);
    free_graph(&r);
}
END_TEST

/* Options B and C on ResNet-20: B adds projections 16->32 and 32->64 (+BN);
 * C adds one to every block. */
static long long resnet20_params_with(const char *option, Graph *out) {
    char text[1024];
    snprintf(text, sizeof text,
             "network r\ninput 32x32x3\nclasses 10\nblock basic\nshortcut %s\nstem conv 3x3 16\n"
             "stage 16 blocks 3\nstage 32 blocks 3 stride 2\nstage 64 blocks 3 stride 2\n",
             option);
    Result r = front_text(text, strlen(text), out);
    ck_assert_msg(r.ok, "%s", r.err);
    free_result(&r);
    return count_parameters(out);
}

START_TEST(test_shortcut_options) {
    Graph g;
    ck_assert_int_eq(resnet20_params_with("A", &g), 269722);
    free_graph(&g);
    ck_assert_int_eq(resnet20_params_with("B", &g), 269722 + 16 * 32 + 64 + 32 * 64 + 128);
    ck_assert_ptr_nonnull(find_op(&g, "stage2.block1.shortcut.conv", OP_CONV));
    ck_assert_ptr_nonnull(find_op(&g, "stage2.block1.shortcut.bn", OP_BN));
    ck_assert_ptr_null(find_op(&g, "stage2.block2.shortcut.conv", OP_CONV));
    free_graph(&g);
    long long c = 269722 + 3 * (16 * 16 + 32) + (16 * 32 + 64) + 2 * (32 * 32 + 64) + (32 * 64 + 128) +
                  2 * (64 * 64 + 128);
    ck_assert_int_eq(resnet20_params_with("C", &g), c);
    ck_assert_int_eq(count_ops(&g, OP_CONV), 19 + 9);
    free_graph(&g);
    ck_assert_int_eq(resnet20_params_with("none", &g), 269722);
    free_graph(&g);
}
END_TEST

/* ResNet-50 (He et al. 2016, table 1): 25,557,032 parameters, the count of
 * torchvision's resnet50; 3.8e9 multiply-adds with the stride on the 1x1. */
START_TEST(test_resnet50_counts) {
    static const char text[] =
        "network resnet50\ninput 224x224x3\nclasses 1000\nblock bottleneck\nshortcut B\n"
        "stem conv 7x7 64 stride 2\npool max 3x3 stride 2\nstage 64 blocks 3\nstage 128 blocks 4 stride 2\n"
        "stage 256 blocks 6 stride 2\nstage 512 blocks 3 stride 2\n";
    Graph g;
    Result r = front_text(text, strlen(text), &g);
    ck_assert_msg(r.ok, "%s", r.err);
    ck_assert_int_eq(count_parameters(&g), 25557032);
    ck_assert_int_eq(count_multiply_adds(&g), 3857973248LL);
    ck_assert_int_eq(count_ops(&g, OP_CONV), 49 + 4);   /* 49 + one projection per stage */
    const Op *pool = find_op(&g, "stem.pool", OP_MAXPOOL);
    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(g.tensors[pool->y].h, 56);
    const Op *last = find_op(&g, "stage4.block3.relu", OP_RELU);
    ck_assert_ptr_nonnull(last);
    ck_assert_int_eq(g.tensors[last->y].h, 7);
    ck_assert_int_eq(g.tensors[last->y].c, 2048);
    free_graph(&g);
    free_result(&r);
}
END_TEST

/* The op array grows (256 -> 512) exactly while a ReLU is added: op 256 is
 * stage1.block35.relu.  Builders must not index g->ops before the call that
 * may move it (an ASan failure before the fix in graph.c). */
START_TEST(test_graph_growth) {
    static const char text[] = "network t\ninput 8x8x3\nclasses 10\nblock basic\nshortcut A\nstem conv 3x3 16\n"
                               "pool max 3x3\nstage 16 blocks 35\nstage 32 blocks 1 stride 2\n";
    Graph g;
    Result r = front_text(text, strlen(text), &g);
    ck_assert_msg(r.ok, "%s", r.err);
    ck_assert_int_gt(g.n_fwd, 256);
    ck_assert_int_eq(g.ops[256].kind, OP_RELU);
    /* every forward op's output tensor is named after it, and is wired on */
    for (int i = 0; i < g.n_fwd; i++) {
        const Op *op = &g.ops[i];
        ck_assert_int_ge(op->y, 0);
        ck_assert_int_lt(op->y, g.n_tensors);
        ck_assert_str_eq(g.tensors[op->y].name, op->name);
        if (i > 0 && op->kind != OP_LOSS)
            ck_assert_int_eq(g.tensors[op->x].kind == T_ACT || g.tensors[op->x].kind == T_INPUT, 1);
    }
    const Op *gap = find_op(&g, "head.avgpool", OP_GAP);
    ck_assert_ptr_nonnull(gap);
    ck_assert_str_eq(g.tensors[gap->x].name, "stage2.block1.relu");
    free_graph(&g);
    free_result(&r);
}
END_TEST

/* ---- the whole pipeline ------------------------------------------------- */

/* Walks the live backward ops in order: every gradient an op reads (dy, and dx
 * when it accumulates) has been written by an earlier live backward op. */
static void check_gradient_order(const Graph *g) {
    bool *written = calloc((size_t)g->n_tensors, sizeof(bool));
    ck_assert_ptr_nonnull(written);
    int live = 0, loss = 0;
    for (int i = g->n_fwd; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        if (op->dead)
            continue;
        live++;
        ck_assert_msg(is_backward(op->kind), "op %d (%s) after n_fwd is not backward", i, op->name);
        if (op->kind == OP_LOSS_BWD) {
            ck_assert_int_eq(op->dy, -1);
            ck_assert_int_eq(op->x, g->logits);
            loss++;
        } else {
            ck_assert_int_ge(op->dy, 0);
            ck_assert_msg(written[op->dy], "%s %s reads %s before it is written", op_kind_name(op->kind),
                          op->name, g->tensors[op->dy].name);
        }
        if (op->dx >= 0) {
            ck_assert_msg(op->acc_dx == written[op->dx], "%s %s: acc_dx %d but written %d", op_kind_name(op->kind),
                          op->name, op->acc_dx, written[op->dx]);
            written[op->dx] = true;
        }
        if (op->dx2 >= 0) {
            ck_assert_msg(op->acc_dx2 == written[op->dx2], "%s %s: acc_dx2", op_kind_name(op->kind), op->name);
            written[op->dx2] = true;
        }
    }
    ck_assert_int_eq(loss, 1);
    ck_assert_int_gt(live, 0);
    ck_assert_int_eq(g->ops[g->n_fwd].kind, OP_LOSS_BWD);   /* backward starts at the loss */
    free(written);
}

/* g's generated C, as one string (free it). */
static char *emitted_text(const Graph *g) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    ck_assert_ptr_nonnull(out);
    emit_c(out, g);
    ck_assert_int_eq(fclose(out), 0);
    return text;
}

START_TEST(test_pipeline_resnet20) {
    Graph g;
    ScheduleOptions opt = {0};
    Capture c = capture_begin();
    bool ok = compile_spec(RESNET20, 8, &opt, &g);
    char *err = capture_end(c);
    ck_assert_msg(ok, "%s", err);
    ck_assert_str_eq(err, "");
    free(err);
    ck_assert_int_eq(g.batch, 8);
    ck_assert_int_gt(g.n_ops, g.n_fwd);
    check_gradient_order(&g);

    /* forward fusion: every ReLU and add of ResNet-20 is folded into a BN */
    int live_bn = 0, fused_relu = 0, fused_residual = 0;
    for (int i = 0; i < g.n_fwd; i++) {
        const Op *op = &g.ops[i];
        if (op->dead)
            continue;
        ck_assert_msg(op->kind != OP_RELU && op->kind != OP_ADD, "live %s %s after fusion", op_kind_name(op->kind),
                      op->name);
        if (op->kind == OP_BN) {
            live_bn++;
            fused_relu += op->relu;
            fused_residual += op->x2 >= 0;
            ck_assert(op->stats_in_conv);
        }
    }
    ck_assert_int_eq(live_bn, 19);
    ck_assert_int_eq(fused_relu, 19);
    ck_assert_int_eq(fused_residual, 9);
    for (int i = g.n_fwd; i < g.n_ops; i++)
        ck_assert(g.ops[i].dead || (g.ops[i].kind != OP_RELU_BWD && g.ops[i].kind != OP_ADD_BWD));

    ck_assert_int_gt(g.work_bytes, 0);
    ck_assert_int_eq(g.param_count, 269722);
    ck_assert_int_gt(g.state_count, 0);

    char *text = emitted_text(&g);
    ck_assert_ptr_nonnull(strstr(text, "rnc_model_resnet20"));
    ck_assert_ptr_nonnull(strstr(text, "train_step"));
    ck_assert_ptr_nonnull(strstr(text, "#pragma omp parallel for"));
    free(text);
    free_graph(&g);
}
END_TEST

/* The same invariants on every block form, in both schedules. */
START_TEST(test_pipeline_variants) {
    static const char *const specs[] = {PLAIN20, SOURCE_DIR "/tests/specs/tiny_a.spec",
                                        SOURCE_DIR "/tests/specs/tiny_bottleneck_b.spec",
                                        SOURCE_DIR "/tests/specs/tiny_preact_c.spec",
                                        SOURCE_DIR "/tests/specs/tiny_plain_odd.spec", NULL};
    for (int naive = 0; naive < 2; naive++) {
        for (int i = 0; specs[i]; i++) {
            ck_assert_msg(access(specs[i], R_OK) == 0, "%s is missing", specs[i]);
            Graph g;
            ScheduleOptions opt = {.reference = naive};
            Capture c = capture_begin();
            bool ok = compile_spec(specs[i], 4, &opt, &g);
            char *err = capture_end(c);
            ck_assert_msg(ok, "%s: %s", specs[i], err);
            free(err);
            check_gradient_order(&g);
            ck_assert_int_gt(g.work_bytes, 0);
            ck_assert_int_eq(g.param_count, count_parameters(&g));
            FILE *out = fopen("/dev/null", "w");
            ck_assert_ptr_nonnull(out);
            emit_c(out, &g);
            fclose(out);
            free_graph(&g);
        }
    }
    /* the full-featured spec: bottleneck, C, pre-activation, pool */
    char *path = write_temp(full_spec, strlen(full_spec));
    Graph g;
    ScheduleOptions opt = {0};
    Capture c = capture_begin();
    bool ok = compile_spec(path, 2, &opt, &g);
    char *err = capture_end(c);
    unlink(path);
    free(path);
    ck_assert_msg(ok, "%s", err);
    free(err);
    check_gradient_order(&g);
    free_graph(&g);
}
END_TEST

/* ResNet-56 and -110 (6n+2, n = 9 and 18): the paper's 0.85M and 1.7M
 * parameters, and graphs large enough that the op and tensor arrays grow
 * while autodiff appends to them. */
START_TEST(test_pipeline_deep) {
    static const struct {
        int n;
        long long params;
    } nets[] = {{9, 853018}, {18, 1727962}};
    for (int i = 0; i < 2; i++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "network resnet%d\ninput 32x32x3\nclasses 10\nblock basic\nshortcut A\nstem conv 3x3 16\n"
                 "stage 16 blocks %d\nstage 32 blocks %d stride 2\nstage 64 blocks %d stride 2\n",
                 6 * nets[i].n + 2, nets[i].n, nets[i].n, nets[i].n);
        char *path = write_temp(text, strlen(text));
        Graph g;
        ScheduleOptions opt = {0};
        Capture c = capture_begin();
        bool ok = compile_spec(path, 2, &opt, &g);
        char *err = capture_end(c);
        unlink(path);
        free(path);
        ck_assert_msg(ok, "%s", err);
        free(err);
        ck_assert_int_eq(count_parameters(&g), nets[i].params);
        ck_assert_int_eq(count_ops(&g, OP_CONV), 6 * nets[i].n + 1);
        check_gradient_order(&g);
        /* backward ops carry the name of the layer they differentiate */
        for (int k = g.n_fwd; k < g.n_ops; k++)
            ck_assert_str_eq(g.ops[k].name, g.ops[g.ops[k].fwd].name);
        free_graph(&g);
    }
}
END_TEST

/* bf16 precision: activations and their gradients in 2 bytes, so a
 * training step's work buffer at most 60% of fp32's; every activation and
 * gradient but the head's (pooled features, logits) and the images is bf16. */
START_TEST(test_bf16_memory) {
    static const char *const specs[] = {RESNET20, SOURCE_DIR "/specs/resnet50.spec", NULL};
    for (int i = 0; specs[i]; i++) {
        Graph g[2];
        ScheduleOptions o32 = {.no_tune = true}, o16 = {.no_tune = true, .precision = "bf16"};
        ck_assert(compile_spec(specs[i], 8, &o32, &g[0]));
        ck_assert(compile_spec(specs[i], 8, &o16, &g[1]));
        ck_assert_msg(g[1].work_bytes <= g[0].work_bytes * 6 / 10, "%s: bf16 %zu bytes, fp32 %zu", specs[i],
                      g[1].work_bytes, g[0].work_bytes);
        int bf16 = 0;
        for (int t = 0; t < g[1].n_tensors; t++) {
            const Tensor *T = &g[1].tensors[t];
            ck_assert(!g[0].tensors[t].bf16);
            if (T->kind == T_PARAM || T->kind == T_STATE || T->kind == T_SCRATCH || T->kind == T_INPUT)
                ck_assert_msg(!T->bf16, "%s is bf16", T->name);
            bf16 += T->bf16;
        }
        ck_assert_int_gt(bf16, g[1].n_tensors / 4);
        ck_assert(!g[1].tensors[g[1].logits].bf16);
        free_graph(&g[0]);
        free_graph(&g[1]);
    }
}
END_TEST

/* The generated file's header says how its tensors are stored and which
 * family computes how many convolution calls: counts that add up to the
 * graph's live convolutions, and, for bf16 on a target with no bf16 units,
 * that they compute in fp32. */
static int census_total(const char *text) {
    const char *line = strstr(text, " * Convolutions: ");
    ck_assert_ptr_nonnull(line);
    const char *end = strchr(line, '\n');
    int total = 0, n, used;
    char name[32];
    const char *p = line + strlen(" * Convolutions: ");
    while (p < end && sscanf(p, "%d %31[a-z0-9]%n", &n, name, &used) == 2) {
        ck_assert_int_gt(n, 0);
        total += n;
        p += used;
        p += strspn(p, ", .");
    }
    return total;
}

START_TEST(test_header_census) {
    static const struct {
        const char *target, *precision, *family;
        bool fp32_note;
    } cases[] = {{"avx512", "fp32", "winograd", false}, {"generic", "bf16", "direct", true},
                 {"avx512", "bf16", "winograd", true}, {"amx", "bf16", "amxflat", false}};
    for (int i = 0; i < 4; i++) {
        Graph g;
        ScheduleOptions opt = {.no_tune = true, .target = cases[i].target, .precision = cases[i].precision};
        ck_assert(compile_spec(RESNET20, 8, &opt, &g));
        char *text = emitted_text(&g);
        int live = 0;
        for (int k = 0; k < g.n_ops; k++)
            live += !g.ops[k].dead && is_conv(g.ops[k].kind);
        ck_assert_int_eq(live, 19 + 19 + 18);   /* 19 forward, 19 weight and 18 data gradients (not the stem's) */
        ck_assert_int_eq(census_total(text), live);
        char want[64];
        snprintf(want, sizeof want, " %s", cases[i].family);
        ck_assert_msg(strstr(strstr(text, " * Convolutions: "), want) != NULL, "%s: no %s", cases[i].target,
                      cases[i].family);
        ck_assert(!strstr(text, " * Precision: bf16") == !strcmp(cases[i].precision, "fp32"));
        ck_assert(!strstr(text, "convolutions compute in fp32") == !cases[i].fp32_note);
        free(text);
        free_graph(&g);
    }
}
END_TEST

START_TEST(test_pipeline_error) {
    static const char text[] = HEAD "stem conv 3x3 16\nstage 16 blocks 1 stride 3\n";
    char *path = write_temp(text, strlen(text));
    Graph g;
    ScheduleOptions opt = {0};
    Capture c = capture_begin();
    bool ok = compile_spec(path, 0, &opt, &g);
    char *err = capture_end(c);
    unlink(path);
    ck_assert(!ok);
    assert_diag("compile_spec", path, err, 7, 26, "stride 3 does not divide");
    free(err);
    free(path);
}
END_TEST

/* --classes and --input: the spec's values replaced, the shapes checked again
 * (errors say what changed them), and the generated header says so. */
START_TEST(test_pipeline_overrides) {
    SpecOverrides ov = {0};
    Capture c = capture_begin();
    ck_assert(parse_classes("10", &ov.classes) && ov.classes == 10);
    ck_assert(!parse_classes("1", &ov.classes) && !parse_classes("auto", &ov.classes) &&
              !parse_classes("1000001", &ov.classes) && !parse_classes("9x", &ov.classes));
    ck_assert(parse_input_size("64x48x3", &ov) && ov.in_h == 64 && ov.in_w == 48 && ov.in_c == 3);
    const char *bad[] = {"64x48", "64x48x3x1", "0x48x3", "64x48x4097", "64x48x", "x48x3", "64*48*3", "-1x2x3", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!parse_input_size(bad[i], &ov), "accepted --input '%s'", bad[i]);
    char *msgs = capture_end(c);
    ck_assert_ptr_nonnull(strstr(msgs, "--classes auto counts the classes of the data"));
    ck_assert_ptr_nonnull(strstr(msgs, "--input wants a size HxWxC"));
    free(msgs);

    ov = (SpecOverrides){.classes = 7, .in_h = 16, .in_w = 16, .in_c = 3};
    Graph g;
    ScheduleOptions opt = {0};
    ck_assert(compile_spec_with(RESNET20, 4, &ov, &opt, &g));
    ck_assert_int_eq(g.spec.classes, 7);
    ck_assert_int_eq(g.tensors[g.logits].c, 7);
    ck_assert_int_eq(g.tensors[g.input].h, 16);
    ck_assert_str_eq(g.spec.overrides, "classes 7 (spec: 10), input 16x16x3 (spec: 32x32x3)");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    emit_c(f, &g);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, " * Input 16x16x3, 7 classes, batch 4."));
    ck_assert_ptr_nonnull(strstr(text, " * Overrides: classes 7 (spec: 10), input 16x16x3 (spec: 32x32x3).\n"));
    ck_assert_ptr_nonnull(strstr(text, ".classes = 7,"));
    free(text);
    free_graph(&g);
    /* the spec's own values are no override */
    ov = (SpecOverrides){.classes = 10, .in_h = 32, .in_w = 32, .in_c = 3};
    ck_assert(compile_spec_with(RESNET20, 4, &ov, &opt, &g));
    ck_assert_str_eq(g.spec.overrides, "");
    free_graph(&g);
    /* an input the strides cannot halve: the spec's error, and a note naming the override */
    ov = (SpecOverrides){.in_h = 30, .in_w = 30, .in_c = 3};
    c = capture_begin();
    bool ok = compile_spec_with(RESNET20, 4, &ov, &opt, &g);
    char *err = capture_end(c);
    ck_assert(!ok);
    ck_assert_ptr_nonnull(strstr(err, "stride 2 does not divide the 15x15 input of stage3.block1.conv1"));
    ck_assert_ptr_nonnull(strstr(err, "note: with the command line's input 30x30x3 (spec: 32x32x3)"));
    free(err);
}
END_TEST

/* ---- robustness --------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static const char *const fuzz_words[] = {
    "network", "input", "classes", "block", "shortcut", "order", "stem", "pool", "stage", "head",
    "batch", "epochs", "iterations", "lr", "momentum", "weight-decay", "lr-steps", "lr-decay", "warmup",
    "bn-momentum", "bn-eps", "basic", "bottleneck", "expansion", "stride-at", "none", "A", "B", "C", "D",
    "post", "pre", "conv", "max", "stride", "blocks", "avgpool", "fc", "1x1", "3x3", "7x7", "2x2", "16x16",
    "1x1x1", "0", "1", "2", "3", "-1", "8", "9", "65536", "4096x4096x3", "1e999", "nan", "0.5", "-",
    "+", ".", "x", "#", "\n", "\t", "\r", "\xc3\xa9", "99999999999999999999", "",
};

/* Applies one random edit to buf[0..*len) (capacity cap). */
static void mutate(char *buf, size_t *len, size_t cap) {
    size_t n = *len;
    size_t at = n ? rnd() % n : 0;
    switch (rnd() % 8) {
    case 0:   /* flip to a random byte */
        if (n)
            buf[at] = (char)(rnd() % 256);
        break;
    case 1:   /* flip to a random printable or structural byte */
        if (n)
            buf[at] = " \n0123456789x.-#"[rnd() % 16];
        break;
    case 2: { /* delete a range */
        size_t k = 1 + rnd() % 12;
        if (at + k > n)
            k = n - at;
        memmove(buf + at, buf + at + k, n - at - k);
        *len = n - k;
        break;
    }
    case 3: { /* duplicate the line holding `at` after itself */
        size_t s = at, e = at;
        while (s > 0 && buf[s - 1] != '\n')
            s--;
        while (e < n && buf[e] != '\n')
            e++;
        if (e < n)
            e++;
        size_t k = e - s;
        if (n + k <= cap) {
            memmove(buf + e + k, buf + e, n - e);
            memcpy(buf + e, buf + s, k);
            *len = n + k;
        }
        break;
    }
    case 4: { /* insert random digits */
        size_t k = 1 + rnd() % 2;
        if (n + k <= cap) {
            memmove(buf + at + k, buf + at, n - at);
            for (size_t i = 0; i < k; i++)
                buf[at + i] = (char)('0' + rnd() % 10);
            *len = n + k;
        }
        break;
    }
    case 5: { /* insert a random word with a space */
        const char *w = fuzz_words[rnd() % (sizeof fuzz_words / sizeof fuzz_words[0])];
        size_t k = strlen(w) + 1;
        if (n + k <= cap) {
            memmove(buf + at + k, buf + at, n - at);
            memcpy(buf + at, w, k - 1);
            buf[at + k - 1] = ' ';
            *len = n + k;
        }
        break;
    }
    case 6: { /* replace the word at `at` with a random word */
        size_t s = at, e = at;
        while (s > 0 && buf[s - 1] != ' ' && buf[s - 1] != '\n')
            s--;
        while (e < n && buf[e] != ' ' && buf[e] != '\n')
            e++;
        const char *w = fuzz_words[rnd() % (sizeof fuzz_words / sizeof fuzz_words[0])];
        size_t k = strlen(w);
        if (n - (e - s) + k <= cap) {
            memmove(buf + s + k, buf + e, n - e);
            memcpy(buf + s, w, k);
            *len = n - (e - s) + k;
        }
        break;
    }
    default:  /* truncate */
        *len = at;
        break;
    }
}

/* A diagnostic line: "path:L:C: error: ..." with L, C >= 1, or "path: error: ...". */
static bool is_diag(const char *err, const char *path) {
    size_t pl = strlen(path);
    if (strncmp(err, path, pl) != 0 || err[pl] != ':')
        return false;
    const char *s = err + pl + 1;
    if (strncmp(s, " error: ", 8) == 0)
        return true;
    char *end;
    long line = strtol(s, &end, 10);
    if (end == s || *end != ':' || line < 1)
        return false;
    s = end + 1;
    long col = strtol(s, &end, 10);
    if (end == s || col < 1)
        return false;
    return strncmp(end, ": error: ", 9) == 0;
}

START_TEST(test_fuzz) {
    size_t base_len;
    Capture c = capture_begin();
    char *base = read_text_file(RESNET20, &base_len);
    char *e0 = capture_end(c);
    ck_assert_msg(base != NULL, "%s", e0);
    free(e0);
    size_t cap = base_len * 4 + 256;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    /* The spec lives in a memfd, opened by name through /proc: rewriting a
     * disk file thousands of times makes the file system flush each one. */
    int fd = memfd_create("rnc_fuzz.spec", 0);
    ck_assert_int_ge(fd, 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    /* RNC_FUZZ_CASES and RNC_FUZZ_SEED run a longer or different campaign. */
    const char *env_cases = getenv("RNC_FUZZ_CASES"), *env_seed = getenv("RNC_FUZZ_SEED");
    const int cases = env_cases ? atoi(env_cases) : 4000;
    rng_state = 0x9e3779b97f4a7c15ull ^ (env_seed ? strtoull(env_seed, NULL, 0) : 0);
    if (!rng_state)
        rng_state = 1;
    int accepted = 0, rejected = 0, skipped = 0;
    FILE *devnull = fopen("/dev/null", "w");
    ck_assert_ptr_nonnull(devnull);
    /* Plain checks in the loop: each ck_assert costs Check a write. */
    c = capture_begin();
    for (int iter = 0; iter < cases; iter++) {
        size_t len = base_len;
        memcpy(buf, base, len);
        int edits = 1 + rnd() % 4;
        for (int k = 0; k < edits; k++)
            mutate(buf, &len, cap);
        if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, len, 0) != (ssize_t)len)
            ck_abort_msg("cannot write %s", path);

        capture_reset(c);
        Spec spec;
        bool ok = load_spec(path, &spec);
        bool built = false;
        if (ok) {
            /* Keep graphs small: a mutated block count can ask for 10^5 blocks. */
            long blocks = 0;
            for (int s = 0; s < spec.n_stages; s++)
                blocks += spec.stages[s].blocks;
            if (blocks <= 64) {
                Graph g;
                ok = build_graph(&spec, 2, &g) && infer_shapes(&g);
                if (ok && (count_parameters(&g) <= 0 || count_multiply_adds(&g) <= 0))
                    ck_abort_msg("case %d: accepted a network without parameters", iter);
                if (ok) {   /* the back half must take whatever the front accepts */
                    autodiff(&g);
                    fuse(&g);
                    ScheduleOptions opt = {.reference = iter % 2};
                    schedule_graph(&g, &opt);
                    if (g.work_bytes == 0 || g.param_count != (size_t)count_parameters(&g))
                        ck_abort_msg("case %d: bad schedule", iter);
                    if (accepted % 16 == 0)
                        emit_c(devnull, &g);
                }
                free_graph(&g);
                built = true;
            }
        }
        char *err = capture_read(c);
        if (ok) {
            if (err[0] != '\0')
                ck_abort_msg("case %d accepted but printed '%s'", iter, err);
            if (built)
                accepted++;
            else
                skipped++;
        } else {
            if (!is_diag(err, path) || count_lines(err) != 1)
                ck_abort_msg("case %d: bad diagnostic '%s' for:\n%.*s", iter, err, (int)len, buf);
            rejected++;
        }
        free(err);
    }
    free(capture_end(c));
    fclose(devnull);
    close(fd);
    free(buf);
    free(base);
    /* the mutations must exercise both outcomes */
    ck_assert_int_gt(accepted, cases / 20);
    ck_assert_int_gt(rejected, cases / 4);
    (void)skipped;
}
END_TEST

/* ---- main --------------------------------------------------------------- */

static Suite *compiler_suite(void) {
    Suite *s = suite_create("compiler");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_parse_resnet20);
    tcase_add_test(tc, test_parse_plain20);
    tcase_add_test(tc, test_parse_full);
    tcase_add_test(tc, test_parse_defaults);
    tcase_add_test(tc, test_parse_text_forms);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_loop_test(tc, test_error, 0, (int)(sizeof error_cases / sizeof error_cases[0]));
    tcase_add_test(tc, test_error_no_file);
    tcase_add_test(tc, test_error_directory);
    tcase_add_test(tc, test_error_too_large);
    tcase_add_test(tc, test_error_first_only);
    suite_add_tcase(s, tc);

    tc = tcase_create("graph");
    tcase_add_test(tc, test_resnet20_counts);
    tcase_add_test(tc, test_resnet20_shapes);
    tcase_add_test(tc, test_plain20_counts);
    tcase_add_test(tc, test_shortcut_options);
    tcase_add_test(tc, test_resnet50_counts);
    tcase_add_test(tc, test_graph_growth);
    suite_add_tcase(s, tc);

    tc = tcase_create("pipeline");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_pipeline_resnet20);
    tcase_add_test(tc, test_pipeline_variants);
    tcase_add_test(tc, test_pipeline_deep);
    tcase_add_test(tc, test_pipeline_error);
    tcase_add_test(tc, test_bf16_memory);
    tcase_add_test(tc, test_header_census);
    tcase_add_test(tc, test_pipeline_overrides);
    suite_add_tcase(s, tc);

    tc = tcase_create("robustness");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fuzz);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return run_suite(compiler_suite());
}
