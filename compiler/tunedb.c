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

/* The machine's part, then the target's (its flags and name). */
static const TuneContext *machine_context(void) {
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
    const char *cc = compile_cc();
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
    ctx.codegen = RNC_CODEGEN_VERSION;
    return &ctx;
}

const TuneContext *tune_context(const Target *t) {
    static TuneContext ctx[8];
    static int n;
    for (int i = 0; i < n; i++)
        if (!strcmp(ctx[i].target, t->name) && !strcmp(ctx[i].cflags, compile_cflags(t)))
            return &ctx[i];
    TuneContext *c = &ctx[n < 8 ? n++ : 7];
    *c = *machine_context();
    snprintf(c->cflags, sizeof c->cflags, "%s", compile_cflags(t));
    snprintf(c->target, sizeof c->target, "%s", t->name);
    return c;
}

bool tunable_sig(const Graph *g, const Op *op, char *buf, size_t size) {
    if (op->dead || g->reference)
        return false;
    bool searchable = false;
    for (int i = 0; kernel_families[i] && !searchable; i++)
        searchable = !kernel_families[i]->reference && kernel_families[i]->candidates &&
                     kernel_families[i]->applies(g, op);
    return searchable && op_signature(g, op, buf, size) && strlen(buf) < sizeof(((TuneEntry *)0)->sig);
}

uint64_t tune_key(const char *sig, const TuneContext *c) {
    char text[1200];
    int n = snprintf(text, sizeof text, "sig=%s\ncpu=%s\nisa=%s\nthreads=%d\ncc=%s\ncflags=%s\ntarget=%s\ncodegen=%d\n",
                     sig, c->cpu, c->isa, c->threads, c->cc, c->cflags, c->target, c->codegen);
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

/* "FAMILY P0 P1 P2 P3" */
static bool parse_schedule(const char **p, OpSchedule *s) {
    char name[32];
    int used;
    if (sscanf(*p, " %31s%n", name, &used) != 1 || !(s->family = family_named(name)))
        return false;
    *p += used;
    for (int i = 0; i < SCHED_MAX_PARAMS; i++) {
        if (sscanf(*p, " %d%n", &s->p[i], &used) != 1 || ((*p)[used] && (*p)[used] != ' '))
            return false;   /* whole integers only: "1.5" is not a parameter */
        *p += used;
    }
    return true;
}

/* e KEY SIGNATURE FAMILY P0 P1 P2 P3 DEFAULT_FAMILY D0 D1 D2 D3 SPEEDUP */
static bool parse_entry(const char *line, TuneEntry *e) {
    unsigned long long key;
    int used;
    char extra;
    if (sscanf(line, "e %llx %95s%n", &key, e->sig, &used) != 2)
        return false;
    const char *p = line + used;
    if (!parse_schedule(&p, &e->best) || !parse_schedule(&p, &e->dflt) || sscanf(p, " %lf%n", &e->speedup, &used) != 1)
        return false;
    e->key = key;
    return sscanf(p + used, " %c", &extra) != 1;   /* nothing after the speedup */
}

static void print_schedule(FILE *f, const OpSchedule *s) {
    fprintf(f, " %s", s->family->name);
    for (int i = 0; i < SCHED_MAX_PARAMS; i++)
        fprintf(f, " %d", s->p[i]);
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
                 version < TUNE_DB_VERSION ? ": tune again" : "");
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
            TuneEntry e = {0};
            if (!parse_entry(line, &e))
                return bad(path, "has a malformed entry", db);
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
    else   /* the write may still work (it says if not); only concurrent writers are at risk */
        fprintf(stderr, "rnc: warning: cannot lock %s (%s): a tuning run writing at the same time may lose entries\n",
                lock, strerror(errno));
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
    fprintf(m, "# rnc tuning database (docs/tuning.md): e KEY SIGNATURE FAMILY P0 P1 P2 P3 DEFAULT_FAMILY D0 D1 D2 D3 "
               "SPEEDUP\n");
    for (int i = 0; i < merged.n; i++) {
        const TuneEntry *e = &merged.e[i];
        if (!e->sig[0] || strlen(e->sig) >= sizeof e->sig || strpbrk(e->sig, " \t\n") || !e->best.family ||
            !e->dflt.family)
            continue;   /* could not be read back */
        fprintf(m, "e %016llx %s", (unsigned long long)e->key, e->sig);
        print_schedule(m, &e->best);
        print_schedule(m, &e->dflt);
        fprintf(m, " %.4f\n", e->speedup);
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

/* ---- the pipeline's tuning step --------------------------------------- */

static const char *pretty_path(const char *path, char *buf, size_t size) {
    const char *home = getenv("HOME");
    size_t n = home ? strlen(home) : 0;
    if (n > 1 && !strncmp(path, home, n) && path[n] == '/')
        snprintf(buf, size, "~%s", path + n);
    else
        snprintf(buf, size, "%s", path);
    return buf;
}

void tunedb_apply(Graph *g, const char *path) {
    TunedNotes *t = &g->tuned;
    free(t->used);
    *t = (TunedNotes){.status = TUNED_NO_DB};
    pretty_path(path, t->db, sizeof t->db);
    struct stat st;
    TuneDB db = {0};
    if (stat(path, &st) != 0)
        return;
    bool readable = tunedb_load(path, &db);   /* if not, it said why */
    if (!readable || db.n == 0) {
        t->status = readable ? TUNED_NO_ENTRIES : TUNED_BAD_DB;
        tunedb_free(&db);
        return;
    }
    const TuneContext *ctx = tune_context(&g->target);
    char (*sigs)[96] = xcalloc(g->n_ops > 0 ? g->n_ops : 1, sizeof *sigs);
    t->used = xcalloc(g->n_ops > 0 ? g->n_ops : 1, sizeof *t->used);
    for (int i = 0; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        char sig[96];
        if (!tunable_sig(g, op, sig, sizeof sig))
            continue;
        const TuneEntry *e = tunedb_find(&db, tune_key(sig, ctx), sig);
        OpSchedule dflt = g->sched[i];
        bool use = e && family_legal(e->best.family, g, op, e->best.p);
        if (use)
            g->sched[i] = e->best;
        bool seen = false;
        for (int k = 0; k < t->kernels && !seen; k++)
            seen = !strcmp(sigs[k], sig);
        if (seen)
            continue;
        snprintf(sigs[t->kernels++], 96, "%s", sig);
        if (use) {
            TunedKernel *u = &t->used[t->n++];
            snprintf(u->sig, sizeof u->sig, "%s", sig);
            sched_text(&e->best, op, u->point, sizeof u->point);
            sched_text(&dflt, op, u->dflt, sizeof u->dflt);
            u->speedup = e->speedup;
        }
    }
    t->status = t->n ? TUNED_USED : TUNED_NO_ENTRIES;
    free(sigs);
    tunedb_free(&db);
}
