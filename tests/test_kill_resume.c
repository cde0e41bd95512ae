/* test_kill_resume.c - a training run killed with SIGKILL at random moments
 * and resumed each time ends with the bytes of the uninterrupted run.
 *
 * usage: test_kill_resume NET DATA [train flags...]
 *
 * NET is a network binary, DATA its --data (FILE.bin:N: the first N records
 * of a CIFAR-10 file).  The driver runs
 *   NET train --data DATA FLAGS --checkpoint ref.ckpt --log ref.csv
 * once, then the same run with --checkpoint run.ckpt --log run.csv
 * --checkpoint-every 1 (and --resume run.ckpt once it exists), killing it
 * with SIGKILL at KILLS random moments (default 20; $RNC_KILLS) and starting
 * it again, until a start runs to the end (give it more than 2 x KILLS steps).  The runs write a byte at each
 * point a kill can land (RNC_TEST_TRACE_FD: 'S' a step starts, 's' it ended,
 * 'C' a checkpoint write starts, 'c' it is in place); the last byte before
 * the kill says where the kill landed: inside a step, inside a checkpoint
 * write, or between steps.  The kills aim at the three in turn, a random
 * number of events in and a random part of the way through; every kind of
 * moment must have been hit.
 *
 * Before the kills, SIGINT and then SIGTERM stop a start: it must save and
 * exit with 128 + the signal.
 *
 * Then: run.ckpt is byte for byte ref.ckpt (weights, momentum, BN
 * statistics, step, run state), and run.csv has ref.csv's rows, each once,
 * equal in every column but the timings.
 *
 * Exit 0 when all holds, 1 otherwise; 77 (CTest's skip) when NET cannot run.
 * $RNC_KILL_SEED picks the random moments (default: from the clock; printed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/rnc_kill_XXXXXX";
static uint64_t rng;

static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Ends the test (exit 1: what main still holds is not a leak for LeakSanitizer). */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n(files kept in %s)\n", dir);
    va_end(ap);
    exit(1);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(s);
        return NULL;
    }
    s[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return s;
}

static const char *path(const char *name) {
    static char bufs[8][600];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 600, "%s/%s", dir, name);
    return b;
}

/* ---- one start of the run --------------------------------------------------- */

typedef struct {
    pid_t pid;
    int trace;          /* read end */
} child;

static child start(char **argv, const char *log) {
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        exit(1);
    }
    child c = {fork(), p[0]};
    if (c.pid == 0) {
        close(p[0]);
        char fd[16];
        snprintf(fd, sizeof fd, "%d", p[1]);
        setenv("RNC_TEST_TRACE_FD", fd, 1);
        int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(out, 1);
        dup2(out, 2);
        close(out);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    return c;
}

/* How long steps and checkpoint writes take ('S' to 's', 'C' to 'c'), as
 * follow() saw them. */
static double step_time, save_time;
static long steps_timed, saves_timed;

/* Reads trace bytes until the child ends (returns its status) or, when
 * target > 0, until `target` has been seen `skip` + 1 times (returns -1
 * with the child still running).  *last: the last byte read. */
static int follow(child *c, char target, long skip, char *last, long *events, double timeout) {
    double t0 = now(), opened = 0;
    long seen = 0;
    for (;;) {
        struct pollfd pf = {c->trace, POLLIN, 0};
        int r = poll(&pf, 1, 1000);
        if (r > 0) {
            char b;
            ssize_t n = read(c->trace, &b, 1);
            if (n > 0) {
                double t = now();
                if ((b == 's' && *last == 'S') || (b == 'c' && *last == 'C')) {
                    *(b == 's' ? &step_time : &save_time) += t - opened;
                    ++*(b == 's' ? &steps_timed : &saves_timed);
                }
                if (b == 'S' || b == 'C')
                    opened = t;
                *last = b;
                ++*events;
                if (target && b == target && seen++ == skip)
                    return -1;
                continue;
            }
            /* EOF: the child is gone */
            int st;
            waitpid(c->pid, &st, 0);
            close(c->trace);
            return st;
        }
        if (now() - t0 > timeout) {
            kill(c->pid, SIGKILL);
            int st;
            waitpid(c->pid, &st, 0);
            close(c->trace);
            return -2;
        }
    }
}

/* Kills the child and reads what it wrote before it died. */
static char kill_child(child *c, char last, long *events) {
    kill(c->pid, SIGKILL);
    int st;
    waitpid(c->pid, &st, 0);
    char buf[256];
    ssize_t n;
    while ((n = read(c->trace, buf, sizeof buf)) > 0) {
        last = buf[n - 1];
        *events += n;
    }
    close(c->trace);
    return last;
}

/* Sleeps up to `max` seconds, uniformly. */
static void random_pause(double max) {
    double s = max * (double)(next_rand() % 1000000) / 1e6;
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ---- the CSV ----------------------------------------------------------------- */

/* Each row's first 7 columns (all but seconds and images_per_s), one per line. */
static char *rows_without_timings(const char *text) {
    char *out = calloc(1, strlen(text) + 1);
    size_t k = 0;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        int commas = 0;
        size_t cut = 0;
        while (cut < n && commas < 7)
            commas += line[cut++] == ',';
        memcpy(out + k, line, cut);
        k += cut;
        out[k++] = '\n';
        line += n + (nl != NULL);
    }
    out[k] = 0;
    return out;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) {
        fprintf(stderr, "usage: %s NET DATA [train flags...]\n", argv[0]);
        return 2;
    }
    if (access(argv[1], X_OK) != 0) {
        printf("SKIP: %s is not an executable\n", argv[1]);
        return 77;
    }
    /* DATA as FILE.bin:N: the first N records of a CIFAR-10 file */
    char *colon = strrchr(argv[2], ':');
    long records = colon ? strtol(colon + 1, NULL, 10) : 0;
    if (records > 0)
        *colon = 0;
    const char *env = getenv("RNC_KILL_SEED");
    rng = env && *env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    if (!rng)
        rng = 1;
    const uint64_t seed = rng;
    const int kills = getenv("RNC_KILLS") ? atoi(getenv("RNC_KILLS")) : 20;
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    printf("kill and resume: %s, seed %llu (RNC_KILL_SEED), %d kills, files in %s\n", argv[1],
           (unsigned long long)seed, kills, dir);
    setenv("XDG_CACHE_HOME", dir, 1);   /* an image folder's index: in here */
    if (records > 0) {
        size_t n;
        char *all = read_file(argv[2], &n);
        if (!all || n < (size_t)records * 3073)
            return fail("%s: cannot read %ld records", argv[2], records);
        FILE *f = fopen(path("data.bin"), "wb");
        if (!f || fwrite(all, 3073, (size_t)records, f) != (size_t)records || fclose(f) != 0)
            return fail("cannot write %s", path("data.bin"));
        free(all);
        static char data_path[600];
        snprintf(data_path, sizeof data_path, "%s", path("data.bin"));
        argv[2] = data_path;
    }

    /* The argument lists: NET train --data DATA FLAGS --checkpoint X --log Y [...] */
    int extra = argc - 3;
    char **ref = calloc((size_t)extra + 16, sizeof *ref), **run = calloc((size_t)extra + 16, sizeof *run);
    int nr = 0, nk = 0;
    ref[nr++] = run[nk++] = argv[1];
    ref[nr++] = run[nk++] = "train";
    ref[nr++] = run[nk++] = "--data";
    ref[nr++] = run[nk++] = argv[2];
    for (int i = 3; i < argc; i++)
        ref[nr++] = run[nk++] = argv[i];
    char *owned[5] = {strdup(path("ref.ckpt")), strdup(path("ref.csv")), strdup(path("run.ckpt")),
                      strdup(path("run.csv")), strdup(path("run.ckpt"))};
    ref[nr++] = "--checkpoint";
    ref[nr++] = owned[0];
    ref[nr++] = "--log";
    ref[nr++] = owned[1];
    run[nk++] = "--checkpoint";
    run[nk++] = owned[2];
    run[nk++] = "--log";
    run[nk++] = owned[3];
    run[nk++] = "--checkpoint-every";
    run[nk++] = "1";
    int resume_at = nk;
    run[nk++] = "--resume";
    run[nk++] = owned[4];

    /* The uninterrupted run, timing a step and a save from its trace. */
    child c = start(ref, path("ref.log"));
    char last = 0;
    long events = 0;
    double t0 = now();
    int st = follow(&c, 0, 0, &last, &events, 600);
    double ref_seconds = now() - t0;
    if (st == -2 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return fail("the uninterrupted run failed (status %d); see %s", st, path("ref.log"));
    if (events < 4 || !steps_timed || !saves_timed)
        return fail("the run wrote no trace (RNC_TEST_TRACE_FD): %ld events", events);
    const double one_step = step_time / steps_timed, one_save = save_time / saves_timed;
    printf("uninterrupted run: %.1f s, %ld trace events; a step %.1f ms, a checkpoint write %.1f ms\n",
           ref_seconds, events, 1e3 * one_step, 1e3 * one_save);

    /* SIGINT and SIGTERM: the run saves where it is and exits 128 + signal. */
    const int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        struct stat sb;
        run[resume_at] = stat(path("run.ckpt"), &sb) == 0 ? "--resume" : NULL;
        c = start(run, path("run.log"));
        last = 0;
        long ev = 0;
        if (follow(&c, 'S', 2, &last, &ev, 600) != -1)
            return fail("the run ended before its third step");
        kill(c.pid, sigs[i]);
        st = follow(&c, 0, 0, &last, &ev, 600);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 128 + sigs[i])
            return fail("after %s the run exited with status %d, not %d", strsignal(sigs[i]),
                        WIFEXITED(st) ? WEXITSTATUS(st) : -1, 128 + sigs[i]);
        if (last != 'c')
            return fail("after %s the run did not end with a checkpoint (last trace byte '%c')", strsignal(sigs[i]),
                        last);
        printf("%s: saved and stopped (exit %d)\n", i ? "SIGTERM" : "SIGINT", 128 + sigs[i]);
    }

    /* Kill, resume, kill, ... and then let it finish. */
    const char targets[3] = {'S', 'C', 's'};
    const char *kinds[3] = {"inside a step", "inside a checkpoint write", "between steps"};
    int landed[3] = {0, 0, 0};
    int done = 0, starts = 0, k = 0;
    while (!done) {
        struct stat sb;
        run[resume_at] = stat(path("run.ckpt"), &sb) == 0 ? "--resume" : NULL;
        if (starts++ > kills + 40)
            return fail("more than %d starts", starts - 1);
        /* Aim: round robin over the kinds, then at whichever has no hit yet. */
        int aim = k < kills ? k % 3 : -1;
        if (k >= kills)
            for (int i = 0; i < 3 && aim < 0; i++)
                if (!landed[i])
                    aim = i;
        c = start(run, path("run.log"));
        last = 0;
        long ev = 0;
        if (aim < 0 || k >= kills + 30) {
            st = follow(&c, 0, 0, &last, &ev, 600);
            if (st == -2 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return fail("the last start failed (status %d); see %s", st, path("run.log"));
            done = 1;
            break;
        }
        /* The first or second of its kind after the start: a start gets at
         * most two steps further, so KILLS kills fit in a run of 2 x KILLS steps. */
        long skip = (long)(next_rand() % 2);
        st = follow(&c, targets[aim], skip, &last, &ev, 600);
        if (st != -1) {   /* it finished before the aim: run again, resumed from its end */
            if (st == -2 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return fail("a start failed (status %d); see %s", st, path("run.log"));
            done = 1;
            break;
        }
        /* Inside a step or a save: a random part of a typical one. */
        if (aim != 2)
            random_pause(aim == 0 ? one_step : one_save);
        last = kill_child(&c, last, &ev);
        int where = last == 'S' ? 0 : last == 'C' ? 1 : 2;
        landed[where]++;
        printf("kill %2d: aimed %s, landed %s (after %ld events)\n", k + 1, kinds[aim], kinds[where], ev);
        k++;
    }
    printf("%d kills: %d inside a step, %d inside a checkpoint write, %d between steps\n", k, landed[0], landed[1],
           landed[2]);
    if (k < kills)
        return fail("the run ended after %d of %d kills: make it longer", k, kills);
    for (int i = 0; i < 3; i++)
        if (!landed[i])
            return fail("no kill landed %s", kinds[i]);

    size_t na, nb, ckpt_bytes;
    char *a = read_file(path("ref.ckpt"), &na), *b = read_file(path("run.ckpt"), &nb);
    ckpt_bytes = na;
    if (!a || !b)
        return fail("a final checkpoint is missing");
    if (na != nb || memcmp(a, b, na))
        return fail("the resumed run's checkpoint differs from the uninterrupted run's (%zu vs %zu bytes)", nb, na);
    char *ca = read_file(path("ref.csv"), &na), *cb = read_file(path("run.csv"), &nb);
    if (!ca || !cb)
        return fail("a log is missing");
    char *ra = rows_without_timings(ca), *rb = rows_without_timings(cb);
    if (strcmp(ra, rb))
        return fail("the logs differ (timings aside):\n--- uninterrupted\n%s--- killed and resumed\n%s", ra, rb);
    printf("final checkpoints byte-identical (%zu bytes); logs equal but for the timings\n", ckpt_bytes);
    free(a);
    free(b);
    free(ca);
    free(cb);
    free(ra);
    free(rb);
    for (int i = 0; i < 5; i++)
        free(owned[i]);
    free(ref);
    free(run);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    printf("1 passed, 0 failed\n");
    return 0;
}
