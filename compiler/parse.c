/* parse.c - tokens -> Spec.  The grammar is in docs/spec.md.
 *
 * Each statement is one line: a keyword and its arguments.  The parser checks
 * each value where it stands, so every error points at the offending token;
 * checks that need the whole network (shapes, strides) come later, in shape.c,
 * still pointing at the spec line that made the layer. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

typedef struct {
    const char *file;
    const Token *tok;     /* current token */
    Spec *spec;
    SrcLoc seen[32];      /* where each once-only statement appeared */
} Parser;

static bool tok_is(const Token *t, const char *s) {
    return (t->kind == TK_WORD || t->kind == TK_NUMBER) && (int)strlen(s) == t->len &&
           strncmp(t->text, s, t->len) == 0;
}

static bool at_eol(const Parser *p) {
    return p->tok->kind == TK_NEWLINE || p->tok->kind == TK_EOF;
}

static bool err(Parser *p, const Token *t, const char *fmt, const char *arg) {
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg);
    return error_at(p->file, t->loc, "%s", msg);
}

static bool expect_value(Parser *p, const char *what) {
    if (at_eol(p))
        return error_at(p->file, p->tok->loc, "expected %s", what);
    return true;
}

/* Copies a token's text into buf (size 64), NUL-terminated; false if it did not fit. */
static bool tok_copy(const Token *t, char *buf) {
    int n = t->len < 63 ? t->len : 63;
    memcpy(buf, t->text, n);
    buf[n] = '\0';
    return n == t->len;
}

/* A token's text (truncated) for messages. */
static const char *tok_str(const Token *t) {
    static char buf[64];
    tok_copy(t, buf);
    return buf;
}

static bool parse_int(Parser *p, const char *what, int lo, int hi, int *out) {
    if (!expect_value(p, what))
        return false;
    const Token *t = p->tok;
    char buf[64], *end;
    bool whole = tok_copy(t, buf);
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (t->kind != TK_NUMBER || *end != '\0' || errno || !whole)
        return error_at(p->file, t->loc, "expected %s (a whole number), got '%s'", what, tok_str(t));
    if (v < lo || v > hi)
        return error_at(p->file, t->loc, "%s must be between %d and %d, got %ld", what, lo, hi, v);
    *out = (int)v;
    p->tok++;
    return true;
}

/* Digits, a point, an exponent and signs only: strtod also reads hexadecimal
 * ("0x10" is 16) and the grammar says decimal. */
static bool is_decimal(const char *s) {
    return s[strspn(s, "0123456789.eE+-")] == '\0';
}

static bool parse_real(Parser *p, const char *what, double lo, double hi, double *out) {
    if (!expect_value(p, what))
        return false;
    const Token *t = p->tok;
    char buf[64], *end;
    bool whole = tok_copy(t, buf);
    errno = 0;
    double v = strtod(buf, &end);
    if (t->kind != TK_NUMBER || *end != '\0' || errno || !whole || !isfinite(v) || !is_decimal(buf))
        return error_at(p->file, t->loc, "expected %s (a number), got '%s'", what, tok_str(t));
    if (v < lo || v > hi)
        return error_at(p->file, t->loc, "%s must be between %g and %g, got %g", what, lo, hi, v);
    *out = v;
    p->tok++;
    return true;
}

/* Sizes written AxB or AxBxC, each part a whole number in [lo, hi]. */
static bool parse_dims(Parser *p, const char *what, int ndims, int lo, int hi, int *out) {
    if (!expect_value(p, what))
        return false;
    const Token *t = p->tok;
    const char *s = t->text, *end = t->text + t->len;
    for (int i = 0; i < ndims; i++) {
        long v = 0;
        const char *start = s;
        while (s < end && *s >= '0' && *s <= '9' && v < 1000000)
            v = v * 10 + (*s++ - '0');
        bool sep_ok = (i < ndims - 1) ? (s < end && *s == 'x') : (s == end);
        if (s == start || !sep_ok || t->kind != TK_NUMBER)
            return error_at(p->file, t->loc, "expected %s, got '%s'", what, tok_str(t));
        if (v < lo || v > hi)
            return error_at(p->file, t->loc, "each size in %s must be between %d and %d, got %ld", what,
                            lo, hi, v);
        out[i] = (int)v;
        if (i < ndims - 1)
            s++;
    }
    p->tok++;
    return true;
}

static bool parse_square(Parser *p, const char *what, int *k) {
    int d[2];
    const Token *t = p->tok;
    if (!parse_dims(p, what, 2, 1, 15, d))
        return false;
    if (d[0] != d[1])
        return error_at(p->file, t->loc, "%s must be square, got %dx%d", what, d[0], d[1]);
    *k = d[0];
    return true;
}

/* One of a fixed set of words; returns its index. */
static bool parse_choice(Parser *p, const char *what, const char *const *words, int *out) {
    if (!expect_value(p, what))
        return false;
    for (int i = 0; words[i]; i++) {
        if (tok_is(p->tok, words[i])) {
            *out = i;
            p->tok++;
            return true;
        }
    }
    char list[256] = "";
    for (int i = 0; words[i]; i++) {
        strcat(list, i ? ", " : "");
        strcat(list, words[i]);
    }
    return error_at(p->file, p->tok->loc, "expected %s (one of %s), got '%s'", what, list, tok_str(p->tok));
}

static bool parse_keyword(Parser *p, const char *word) {
    if (!expect_value(p, word))
        return false;
    if (!tok_is(p->tok, word))
        return error_at(p->file, p->tok->loc, "expected '%s', got '%s'", word, tok_str(p->tok));
    p->tok++;
    return true;
}

/* `stride S` at the end of stem, pool and stage statements. */
static bool parse_optional_stride(Parser *p, int *stride, SrcLoc *loc) {
    *stride = 1;
    *loc = p->tok->loc;
    if (at_eol(p))
        return true;
    if (!parse_keyword(p, "stride"))
        return false;
    *loc = p->tok->loc;
    return parse_int(p, "stride", 1, 8, stride);
}

static bool parse_name(Parser *p) {
    if (!expect_value(p, "a network name"))
        return false;
    const Token *t = p->tok;
    if (t->kind != TK_WORD || t->len >= (int)sizeof p->spec->name)
        return err(p, t, "expected a network name (letters, digits, '-', '_', at most 63), got '%s'",
                   tok_str(t));
    for (int i = 0; i < t->len; i++)
        if (t->text[i] == '.' || t->text[i] == '+')
            return err(p, t, "a network name may hold letters, digits, '-' and '_', got '%s'", tok_str(t));
    memcpy(p->spec->name, t->text, t->len);
    p->spec->name[t->len] = '\0';
    p->tok++;
    return true;
}

static bool parse_lr_steps(Parser *p) {
    rnc_recipe *r = &p->spec->recipe;
    r->n_lr_steps = 0;
    while (!at_eol(p) && p->tok->kind == TK_NUMBER) {
        if (r->n_lr_steps == RNC_MAX_LR_STEPS)
            return error_at(p->file, p->tok->loc, "at most %d lr-steps", RNC_MAX_LR_STEPS);
        int v;
        if (!parse_int(p, "an lr step", 1, 100000000, &v))
            return false;
        if (r->n_lr_steps && v <= r->lr_steps[r->n_lr_steps - 1])
            return error_at(p->file, p->tok[-1].loc, "lr-steps must increase");
        r->lr_steps[r->n_lr_steps++] = v;
    }
    if (r->n_lr_steps == 0)
        return error_at(p->file, p->tok->loc, "expected at least one lr step");
    r->lr_steps_in_iterations = 0;
    if (!at_eol(p)) {
        static const char *const units[] = {"epochs", "iterations", NULL};
        int u;
        if (!parse_choice(p, "the unit of lr-steps", units, &u))
            return false;
        r->lr_steps_in_iterations = u;
    }
    return true;
}

enum {
    S_NETWORK, S_INPUT, S_CLASSES, S_BLOCK, S_SHORTCUT, S_ORDER, S_STEM, S_POOL, S_HEAD,
    S_BATCH, S_EPOCHS, S_ITERATIONS, S_LR, S_MOMENTUM, S_WEIGHT_DECAY, S_LR_STEPS, S_LR_DECAY,
    S_WARMUP, S_BN_MOMENTUM, S_BN_EPS, S_PRECISION, S_STAGE, S_COUNT
};

static const char *const statement_names[] = {
    "network", "input", "classes", "block", "shortcut", "order", "stem", "pool", "head",
    "batch", "epochs", "iterations", "lr", "momentum", "weight-decay", "lr-steps", "lr-decay",
    "warmup", "bn-momentum", "bn-eps", "precision", "stage", NULL,
};

static bool parse_statement(Parser *p, int which) {
    Spec *s = p->spec;
    rnc_recipe *r = &s->recipe;
    switch (which) {
    case S_NETWORK:
        return parse_name(p);
    case S_INPUT: {
        int d[3];
        s->input_loc = p->tok->loc;
        if (!parse_dims(p, "an input size HxWxC", 3, 1, 4096, d))
            return false;
        s->in_h = d[0], s->in_w = d[1], s->in_c = d[2];
        return true;
    }
    case S_CLASSES:
        return parse_int(p, "the number of classes", 2, 1000000, &s->classes);
    case S_BLOCK: {
        static const char *const kinds[] = {"basic", "bottleneck", NULL};
        int k;
        if (!parse_choice(p, "a block kind", kinds, &k))
            return false;
        s->block = (BlockKind)k;
        while (!at_eol(p)) {
            if (s->block != BLOCK_BOTTLENECK)
                return err(p, p->tok, "'%s' only applies to bottleneck blocks", tok_str(p->tok));
            if (tok_is(p->tok, "expansion")) {
                p->tok++;
                if (!parse_int(p, "the expansion", 1, 64, &s->expansion))
                    return false;
            } else if (tok_is(p->tok, "stride-at")) {
                p->tok++;
                static const char *const where[] = {"1x1", "3x3", NULL};
                int w;
                if (!parse_choice(p, "where the stride goes", where, &w))
                    return false;
                s->stride_on_3x3 = w == 1;
            } else {
                return err(p, p->tok, "expected 'expansion' or 'stride-at', got '%s'", tok_str(p->tok));
            }
        }
        return true;
    }
    case S_SHORTCUT: {
        static const char *const kinds[] = {"none", "A", "B", "C", NULL};
        int k;
        if (!parse_choice(p, "a shortcut option", kinds, &k))
            return false;
        s->shortcut = (ShortcutKind)k;
        return true;
    }
    case S_ORDER: {
        static const char *const kinds[] = {"post", "pre", NULL};
        int k;
        if (!parse_choice(p, "a block order", kinds, &k))
            return false;
        s->order = (OrderKind)k;
        return true;
    }
    case S_STEM:
        s->stem_loc = p->tok[-1].loc;
        if (!parse_keyword(p, "conv") || !parse_square(p, "a kernel size KxK", &s->stem_k) ||
            !parse_int(p, "the stem's channels", 1, 65536, &s->stem_channels))
            return false;
        return parse_optional_stride(p, &s->stem_stride, &s->stem_stride_loc);
    case S_POOL:
        s->has_pool = true;
        s->pool_loc = p->tok[-1].loc;
        if (!parse_keyword(p, "max") || !parse_square(p, "a window size KxK", &s->pool_k))
            return false;
        return parse_optional_stride(p, &s->pool_stride, &s->pool_stride_loc);
    case S_HEAD:
        return parse_keyword(p, "avgpool") && parse_keyword(p, "fc");
    case S_BATCH:
        return parse_int(p, "the batch size", 1, 65536, &r->batch);
    case S_EPOCHS:
        return parse_int(p, "the number of epochs", 1, 100000, &r->epochs);
    case S_ITERATIONS:
        return parse_int(p, "the number of iterations", 1, 100000000, &r->iterations);
    case S_LR:
        return parse_real(p, "the learning rate", 1e-12, 100, &r->lr);
    case S_MOMENTUM:
        return parse_real(p, "the momentum", 0, 0.999999, &r->momentum);
    case S_WEIGHT_DECAY:
        return parse_real(p, "the weight decay", 0, 1, &r->weight_decay);
    case S_LR_STEPS:
        return parse_lr_steps(p);
    case S_LR_DECAY:
        return parse_real(p, "the lr decay factor", 1e-9, 1, &r->lr_decay);
    case S_WARMUP:
        return parse_int(p, "the warm-up iterations", 1, 100000000, &r->warmup_iterations) &&
               parse_keyword(p, "lr") && parse_real(p, "the warm-up learning rate", 1e-12, 100, &r->warmup_lr);
    case S_BN_MOMENTUM:
        return parse_real(p, "the BN momentum", 0, 1, &s->bn_momentum);
    case S_BN_EPS:
        return parse_real(p, "the BN epsilon", 1e-12, 1, &s->bn_eps);
    case S_PRECISION: {
        static const char *const kinds[] = {"fp32", "bf16", NULL};
        int k;
        if (!parse_choice(p, "a precision", kinds, &k))
            return false;
        s->precision = (Precision)k;
        return true;
    }
    case S_STAGE: {
        if (s->n_stages == MAX_STAGES)
            return error_at(p->file, p->tok[-1].loc, "at most %d stages", MAX_STAGES);
        StageSpec *st = &s->stages[s->n_stages++];
        st->loc = p->tok[-1].loc;
        if (!parse_int(p, "the stage's width", 1, 65536, &st->width) || !parse_keyword(p, "blocks"))
            return false;
        const Token *blocks = p->tok;
        if (!parse_int(p, "the number of blocks", 1, MAX_BLOCKS, &st->blocks))
            return false;
        int total = 0;
        for (int i = 0; i < s->n_stages; i++)
            total += s->stages[i].blocks;
        if (total > MAX_BLOCKS)
            return error_at(p->file, blocks->loc, "at most %d blocks in all stages together, this stage makes %d",
                            MAX_BLOCKS, total);
        return parse_optional_stride(p, &st->stride, &st->stride_loc);
    }
    }
    return false;
}

static void set_defaults(Spec *s, const char *file) {
    memset(s, 0, sizeof *s);
    s->file = file;
    s->expansion = 4;
    s->order = ORDER_POST;
    s->bn_momentum = 0.1;
    s->bn_eps = 1e-5;
    s->recipe = (rnc_recipe){
        .batch = 128, .lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4, .lr_decay = 0.1,
    };
}

/* Statements that must appear, in the order a reader expects them. */
static const int required[] = {S_NETWORK, S_INPUT, S_CLASSES, S_BLOCK, S_SHORTCUT, S_STEM, S_STAGE};

bool parse_spec(const char *file, const TokenList *toks, Spec *spec) {
    Parser p = {.file = file, .tok = toks->toks, .spec = spec};
    set_defaults(spec, file);
    while (p.tok->kind != TK_EOF) {
        if (p.tok->kind == TK_NEWLINE) {
            p.tok++;
            continue;
        }
        const Token *kw = p.tok;
        int which = -1;
        for (int i = 0; statement_names[i]; i++)
            if (tok_is(kw, statement_names[i]))
                which = i;
        if (which < 0 || kw->kind != TK_WORD)
            return err(&p, kw, "unknown statement '%s' (see docs/spec.md for the statements)", tok_str(kw));
        if (which != S_STAGE && p.seen[which].line)
            return error_at(file, kw->loc, "'%s' given twice (first on line %d)", statement_names[which],
                            p.seen[which].line);
        if (which == S_POOL && !p.seen[S_STEM].line)
            return error_at(file, kw->loc, "'pool' must follow the 'stem' statement");
        if (which == S_STEM && p.seen[S_STAGE].line)
            return error_at(file, kw->loc, "'stem' must come before the first 'stage'");
        if (!p.seen[which].line)
            p.seen[which] = kw->loc;
        p.tok++;
        if (!parse_statement(&p, which))
            return false;
        if (!at_eol(&p))
            return err(&p, p.tok, "unexpected '%s' at the end of the statement", tok_str(p.tok));
    }
    spec->end_loc = p.tok->loc;
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!p.seen[required[i]].line)
            return error_at(file, spec->end_loc, "missing '%s' statement", statement_names[required[i]]);
    if (p.seen[S_EPOCHS].line && p.seen[S_ITERATIONS].line)
        return error_at(file, p.seen[S_ITERATIONS], "give 'epochs' or 'iterations', not both");
    if (!spec->recipe.epochs && !spec->recipe.iterations)
        spec->recipe.epochs = 1;
    return true;
}

bool load_spec(const char *path, Spec *spec) {
    size_t len;
    char *src = read_text_file(path, &len);
    if (!src)
        return false;
    TokenList toks;
    bool ok = tokenize(path, src, len, &toks) && parse_spec(path, &toks, spec);
    free(toks.toks);
    /* Tokens point into src; the Spec copies everything it keeps. */
    free(src);
    return ok;
}
