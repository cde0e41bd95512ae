/* tunedb.c - the tuning database: keys, the file format, and its use by the
 * schedule.  Format and key definition: docs/tuning.md.
 *
 * A key is XXH3-64 of the kernel signature plus everything that makes a
 * measurement valid only here: CPU model and ISA flags, thread count, C
 * compiler and flags, and RNC_CODEGEN_VERSION.  Entries whose key does not
 * match are never used; a damaged file is reported and ignored. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "rnc.h"

static const char *tune_algo_name(ConvAlgo algo) {
    return algo == ALGO_WINOGRAD ? "winograd" : "direct";
}

static bool algo_from_name(const char *name, ConvAlgo *algo) {
    if (!strcmp(name, "direct"))
        *algo = ALGO_DIRECT;
    else if (!strcmp(name, "winograd"))
        *algo = ALGO_WINOGRAD;
    else
        return false;
    return true;
}

bool tune_uses_chunks(OpKind kind, ConvAlgo algo) {
    return kind == OP_CONV_BWD_WEIGHT || algo == ALGO_WINOGRAD;
}

/* "direct 8x1", "direct 4x2 rows 8", "winograd 4x1 rows 2", "winograd 8x2 tiles 128":
 * what a point means for each kind and algorithm (docs/tuning.md). */
void tune_point_text(OpKind kind, ConvAlgo algo, int tw, int cv, int chunks, char *buf, size_t size) {
    if (!tune_uses_chunks(kind, algo))
        snprintf(buf, size, "%s %dx%d", tune_algo_name(algo), tw, cv);
    else
        snprintf(buf, size, "%s %dx%d %s %d", tune_algo_name(algo), tw, cv,
                 kind == OP_CONV_BWD_WEIGHT && algo == ALGO_WINOGRAD ? "tiles" : "rows", chunks);
}

/* ---- context and keys ---------------------------------------------------- */

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

static int thread_count(void) {
    const char *e = getenv("OMP_NUM_THREADS");
    if (e && atoi(e) > 0)
        return atoi(e);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

const TuneContext *tune_context(void) {
    static TuneContext ctx;
    static bool done;
    if (done)
        return &ctx;
    done = true;
    static const char *const isa[] = {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw",
                                      "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                                      "amx_bf16", "amx_int8", "asimd", "sve"};
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    bool have_cpu = false, have_flags = false;
    while (f && fgets(line, sizeof line, f) && !(have_cpu && have_flags)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        trim(line);
        if (!have_cpu && !strncmp(line, "model name", 10)) {
            snprintf(ctx.cpu, sizeof ctx.cpu, "%s", colon + 2 <= line + strlen(line) ? colon + 2 : "");
            have_cpu = true;
        } else if (!have_flags && (!strncmp(line, "flags", 5) || !strncmp(line, "Features", 8))) {
            char padded[8200];
            snprintf(padded, sizeof padded, " %s ", colon + 1);
            for (size_t i = 0; i < sizeof isa / sizeof isa[0]; i++) {
                char word[32];
                snprintf(word, sizeof word, " %s ", isa[i]);
                if (strstr(padded, word)) {
                    size_t n = strlen(ctx.isa);
                    snprintf(ctx.isa + n, sizeof ctx.isa - n, "%s%s", n ? "," : "", isa[i]);
                }
            }
            have_flags = true;
        }
    }
    if (f)
        fclose(f);
    if (!have_cpu)
        snprintf(ctx.cpu, sizeof ctx.cpu, "unknown");
    ctx.threads = thread_count();
    const char *cc = getenv("CC");
    if (!cc || !*cc)
        cc = "cc";
    char cmd[512], ver[200] = "unknown";
    snprintf(cmd, sizeof cmd, "%s --version 2>/dev/null", cc);
    FILE *p = popen(cmd, "r");
    if (p) {
        if (fgets(ver, sizeof ver, p))
            trim(ver);
        while (fgets(line, sizeof line, p)) {
        }
        pclose(p);
    }
    snprintf(ctx.cc, sizeof ctx.cc, "%s (%s)", cc, ver);
    snprintf(ctx.cflags, sizeof ctx.cflags, "-O3 -march=native -fopenmp");
    ctx.codegen = RNC_CODEGEN_VERSION;
    return &ctx;
}

bool conv_kernel_sig(const Graph *g, const Op *op, char *buf, size_t size) {
    if (op->dead || g->naive ||
        !(op->kind == OP_CONV || op->kind == OP_CONV_BWD_DATA || op->kind == OP_CONV_BWD_WEIGHT))
        return false;
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    int ch = op->kind == OP_CONV_BWD_DATA ? x->c : y->c;
    if (ch % 16 || !op->tile_c)
        return false;
    const char *what = op->kind == OP_CONV ? (op->conv_stats ? "fwd_stats" : "fwd")
                       : op->kind == OP_CONV_BWD_DATA ? (op->acc_dx ? "bwd_data_acc" : "bwd_data")
                                                      : "bwd_weight";
    int n = snprintf(buf, size, "%s:b%d:%dx%dx%d:%dx%dx%d:k%ds%dp%d", what, g->batch, x->h, x->w, x->c, y->h, y->w,
                     y->c, op->k, op->stride, op->pad);
    return n > 0 && (size_t)n < size && (size_t)n < sizeof(((TuneEntry *)0)->sig);   /* longer: not tunable */
}

uint64_t tune_key(const char *sig, const TuneContext *c) {
    char text[1200];
    int n = snprintf(text, sizeof text, "sig=%s\ncpu=%s\nisa=%s\nthreads=%d\ncc=%s\ncflags=%s\ncodegen=%d\n", sig,
                     c->cpu, c->isa, c->threads, c->cc, c->cflags, c->codegen);
    return XXH3_64bits(text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

const char *tune_db_path(const char *override) {
    static char path[4096];
    if (override && *override)
        return override;
    const char *e = getenv("RNC_TUNE_DB");
    if (e && *e)
        return e;
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg)
        snprintf(path, sizeof path, "%s/rnc/tune.db", xdg);
    else
        snprintf(path, sizeof path, "%s/.cache/rnc/tune.db", getenv("HOME") ? getenv("HOME") : ".");
    return path;
}

/* ---- the file ------------------------------------------------------------ */

void tunedb_free(TuneDB *db) {
    free(db->e);
    *db = (TuneDB){0};
}

const TuneEntry *tunedb_find(const TuneDB *db, uint64_t key, const char *sig) {
    for (int i = 0; i < db->n; i++)
        if (db->e[i].key == key && (!sig || !strcmp(db->e[i].sig, sig)))
            return &db->e[i];
    return NULL;
}

void tunedb_put(TuneDB *db, const TuneEntry *e) {
    for (int i = 0; i < db->n; i++)
        if (db->e[i].key == e->key) {
            db->e[i] = *e;
            return;
        }
    if (db->n == db->cap) {
        db->cap = db->cap ? db->cap * 2 : 32;
        db->e = realloc(db->e, sizeof *db->e * db->cap);
        if (!db->e)
            fatal("out of memory");
    }
    db->e[db->n++] = *e;
}

static bool bad(const char *path, const char *why, TuneDB *db) {
    fprintf(stderr, "rnc: warning: tuning database %s %s; ignoring it\n", path, why);
    tunedb_free(db);
    return false;
}

/* Parses text; on any damage reports one line and leaves db empty. */
static bool parse_db(const char *path, const char *text, size_t len, TuneDB *db) {
    *db = (TuneDB){0};
    if (memchr(text, '\0', len))
        return bad(path, "contains binary data", db);
    int version = 0;
    if (sscanf(text, "rnc-tune-db %d", &version) != 1)
        return bad(path, "is not an rnc tuning database", db);
    if (version != TUNE_DB_VERSION) {
        char why[120];
        snprintf(why, sizeof why, "has format version %d (this rnc reads %d%s)", version, TUNE_DB_VERSION,
                 version == 1 ? "; version 1 has no algorithm field" : "");
        return bad(path, why, db);
    }
    bool ended = false;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return bad(path, "is truncated", db);
        size_t n = (size_t)(nl - p);
        char line[512];
        if (n >= sizeof line)
            return bad(path, "has an overlong line", db);
        memcpy(line, p, n);
        line[n] = '\0';
        if (ended)
            return bad(path, "has data after its end line", db);
        if (!strncmp(line, "end ", 4)) {
            int count;
            unsigned long long sum;
            if (sscanf(line, "end %d %llx", &count, &sum) != 2 || count != db->n ||
                sum != XXH3_64bits(text, (size_t)(p - text)))
                return bad(path, "is corrupted (checksum or count mismatch)", db);
            ended = true;
        } else if (!strncmp(line, "e ", 2)) {
            /* e KEY SIGNATURE ALGO TW CV CHUNKS DEFAULT_ALGO DEFAULT_TW DEFAULT_CV DEFAULT_CHUNKS SPEEDUP */
            TuneEntry e = {0};
            unsigned long long key;
            char extra, an[16], dan[16];
            ConvAlgo algo, dalgo;
            if (sscanf(line, "e %llx %95s %15s %d %d %d %15s %d %d %d %lf %c", &key, e.sig, an, &e.tw, &e.cv,
                       &e.chunks, dan, &e.dtw, &e.dcv, &e.dchunks, &e.speedup, &extra) != 11 ||
                !algo_from_name(an, &algo) || !algo_from_name(dan, &dalgo))
                return bad(path, "has a malformed entry", db);
            e.key = key;
            e.algo = algo;
            e.dalgo = dalgo;
            tunedb_put(db, &e);
        } else if (line[0] != '#' && p != text && line[0]) {
            return bad(path, "has an unknown line", db);
        }
        p = nl + 1;
    }
    if (!ended)
        return bad(path, "is truncated (no end line)", db);
    return true;
}

bool tunedb_load(const char *path, TuneDB *db) {
    *db = (TuneDB){0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? true : bad(path, strerror(errno), db);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb)
                fatal("out of memory");
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    bool ok = len == 0 ? bad(path, "is empty", db) : parse_db(path, buf, len, db);
    free(buf);
    return ok;
}

static void mkdirs(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = dir + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(dir, 0777);
            *s = '/';
        }
}

bool tunedb_save(const char *path, const TuneDB *db) {
    mkdirs(path);
    char lock[4200], tmp[4200];
    snprintf(lock, sizeof lock, "%s.lock", path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lfd >= 0)
        while (flock(lfd, LOCK_EX) != 0 && errno == EINTR) {
        }
    /* merge: what is on disk now (another writer's entries), then ours */
    TuneDB merged;
    tunedb_load(path, &merged);
    for (int i = 0; i < db->n; i++)
        tunedb_put(&merged, &db->e[i]);
    char *text = NULL;
    size_t len = 0;
    int written = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        fatal("out of memory");
    fprintf(m, "rnc-tune-db %d\n", TUNE_DB_VERSION);
    fprintf(m, "# rnc tuning database (docs/tuning.md): e KEY SIGNATURE ALGO TW CV CHUNKS DEFAULT_ALGO DEFAULT_TW "
               "DEFAULT_CV DEFAULT_CHUNKS SPEEDUP\n");
    for (int i = 0; i < merged.n; i++) {
        const TuneEntry *e = &merged.e[i];
        if (!e->sig[0] || strlen(e->sig) >= sizeof e->sig || strpbrk(e->sig, " \t\n"))
            continue;   /* could not be read back */
        fprintf(m, "e %016llx %s %s %d %d %d %s %d %d %d %.4f\n", (unsigned long long)e->key, e->sig,
                tune_algo_name(e->algo), e->tw, e->cv, e->chunks, tune_algo_name(e->dalgo),
                e->dtw, e->dcv, e->dchunks, e->speedup);
        written++;
    }
    fclose(m);
    bool ok = false;
    FILE *f = fopen(tmp, "w");
    if (f) {
        fwrite(text, 1, len, f);
        fprintf(f, "end %d %016llx\n", written, (unsigned long long)XXH3_64bits(text, len));
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = fclose(f) == 0 && ok;
        ok = ok && rename(tmp, path) == 0;
    }
    if (!ok) {
        fprintf(stderr, "rnc: error: cannot write tuning database %s: %s\n", path, strerror(errno));
        remove(tmp);
    }
    free(text);
    tunedb_free(&merged);
    if (lfd >= 0) {
        flock(lfd, LOCK_UN);
        close(lfd);
    }
    return ok;
}

/* ---- legality and use by the schedule ------------------------------------ */

/* Whether (tw, cv, chunks) is a point op's kernel can run, for the algorithm
 * op->algo says (docs/tuning.md has the table). */
bool schedule_point_legal(const Graph *g, const Op *op, int tw, int cv, int chunks) {
    if (!(op->kind == OP_CONV || op->kind == OP_CONV_BWD_DATA || op->kind == OP_CONV_BWD_WEIGHT))
        return false;
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    if (op->algo == ALGO_WINOGRAD) {
        if (!winograd_applies(g, op))
            return false;
        WinogradShape s;
        winograd_shape(g, op, &s);   /* ic: what it reduces over; oc: the vectors of a register tile */
        if (s.oc % 16 || cv < 1 || cv > 4 || (s.oc / 16) % cv || tw < 1)
            return false;
        if (op->kind == OP_CONV_BWD_WEIGHT)   /* tw: input channels (at most RNC_WG_MAX_ICB = 16) */
            return tw <= 16 && s.ic % tw == 0 && tw * cv <= 24 && chunks >= 1 && chunks <= 4096;
        /* tw: tiles; chunks: rows of tiles per block, at most all of them */
        return tw <= 32 && tw * cv <= 28 && chunks >= 1 && chunks <= g->batch * s.tiles_h;
    }
    if (op->algo != ALGO_DIRECT)
        return false;
    switch (op->kind) {
    case OP_CONV:
    case OP_CONV_BWD_DATA: {
        int ch = op->kind == OP_CONV ? y->c : x->c;
        return ch % 16 == 0 && cv >= 1 && cv <= 4 && (ch / 16) % cv == 0 && tw >= 1 && tw <= 32 && tw * cv <= 28;
    }
    default:   /* OP_CONV_BWD_WEIGHT */
        return y->c % 16 == 0 && cv >= 1 && cv <= 4 && (y->c / 16) % cv == 0 && tw >= 1 && tw <= 8 &&
               x->c % tw == 0 && tw * cv <= 24 && chunks >= 1 && chunks <= 1 << 20;
    }
}

/* op scheduled as the entry says: its algorithm's defaults, then the
 * entry's point.  False (op unchanged) when the algorithm cannot compute op
 * or the point is not legal for it: a point is only ever used with the
 * algorithm it was tuned for. */
bool tune_entry_apply(const Graph *g, Op *op, const TuneEntry *e) {
    Op c = *op;
    ConvAlgo algo = e->algo;
    if (!schedule_conv_as(g, &c, algo))
        return false;
    int chunks = tune_uses_chunks(c.kind, algo) ? e->chunks : c.chunks;
    if (!schedule_point_legal(g, &c, e->tw, e->cv, chunks))
        return false;
    c.tile_w = e->tw;
    c.tile_c = e->cv;
    c.chunks = chunks;
    *op = c;
    return true;
}

static const char *pretty_path(const char *path, char *buf, size_t size) {
    const char *home = getenv("HOME");
    size_t n = home ? strlen(home) : 0;
    if (n > 1 && !strncmp(path, home, n) && path[n] == '/')
        snprintf(buf, size, "~%s", path + n);
    else
        snprintf(buf, size, "%s", path);
    return buf;
}

void tune_apply(Graph *g, const ScheduleOptions *opt) {
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        fatal("out of memory");
    const char *path = tune_db_path(opt->tune_db);
    char shown[4200];
    struct stat st;
    TuneDB db = {0};
    if (g->naive) {
        fprintf(m, " * Tuned: none (naive schedule)\n");
    } else if (opt->no_tune) {
        fprintf(m, " * Tuned: none (--no-tune)\n");
    } else if (stat(path, &st) != 0 || !tunedb_load(path, &db) || db.n == 0) {
        fprintf(m, " * Tuned: none (no tuning database at %s)\n", pretty_path(path, shown, sizeof shown));
    } else {
        const TuneContext *ctx = tune_context();
        char (*sigs)[96] = xcalloc(g->n_ops, sizeof *sigs);
        char *lines = NULL;
        size_t llen = 0;
        FILE *l = open_memstream(&lines, &llen);
        if (!l)
            fatal("out of memory");
        int kernels = 0, tuned = 0;
        for (int i = 0; i < g->n_ops; i++) {
            Op *op = &g->ops[i];
            char sig[96];
            if (!conv_kernel_sig(g, op, sig, sizeof sig))
                continue;
            const TuneEntry *e = tunedb_find(&db, tune_key(sig, ctx), sig);
            char dflt[64];
            tune_point_text(op->kind, op->algo, op->tile_w, op->tile_c, op->chunks, dflt, sizeof dflt);
            bool use = e && tune_entry_apply(g, op, e);
            bool seen = false;
            for (int k = 0; k < kernels && !seen; k++)
                seen = !strcmp(sigs[k], sig);
            if (seen)
                continue;
            snprintf(sigs[kernels++], 96, "%s", sig);
            if (use) {
                char point[64];
                tune_point_text(op->kind, op->algo, op->tile_w, op->tile_c, op->chunks, point, sizeof point);
                tuned++;
                fprintf(l, " *   %s: %s (default %s), %.2fx\n", sig, point, dflt, e->speedup);
            }
        }
        fclose(l);
        if (tuned)
            fprintf(m, " * Tuned: %d of %d kernels from %s\n%s", tuned, kernels,
                    pretty_path(path, shown, sizeof shown), lines);
        else
            fprintf(m, " * Tuned: none (no entries for this machine in %s)\n", pretty_path(path, shown, sizeof shown));
        free(lines);
        free(sigs);
    }
    tunedb_free(&db);
    fclose(m);
    free(g->tune_note);
    g->tune_note = text;
}

void tune_emit_header(FILE *out, const Graph *g) {
    fputs(g->tune_note ? g->tune_note : " * Tuned: none\n", out);
}
