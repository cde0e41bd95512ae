/* test_reliability.c - issue 16's runtime guarantees, with the fake model:
 *
 *   checkpoints  format 2's run state, format 1 still read, another version,
 *                damage, oversized files, another network
 *   outputs      checked before the first step (unwritable, not a regular
 *                file, no room), stale temporaries, a failed save keeps the
 *                previous checkpoint, the CSV put right on resume
 *   resume       at any iteration, bit for bit; the checkpoint's recipe, seed
 *                and length; every difference named and refused
 *   guards       an exploding loss, NaN / Inf named by --detect-anomaly,
 *                memory refused before allocating, flag values, write errors
 *   data         truncated, oversized, empty and unreadable CIFAR inputs
 *
 * The kill -9 test (tests/test_kill_resume.c) covers stopping at random
 * moments; this file covers what can be driven in-process.
 */
#define _GNU_SOURCE  /* mkdtemp, nftw, dup2 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include "../runtime/internal.h"
#include "fake_model.h"
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------------- */

/* Not testutil.h's cifar_dir: here the directory must be named. */
static const char *env_cifar_dir(void) {
    const char *env = getenv("RNC_CIFAR_DIR");
    ck_assert_msg(env && *env, "set RNC_CIFAR_DIR");
    return env;
}

/* The first n records of data_batch_1.bin. */
static void write_small_cifar(const char *path, int n) {
    char src[4200];
    snprintf(src, sizeof src, "%s/data_batch_1.bin", env_cifar_dir());
    FILE *f = fopen(src, "rb");
    ck_assert_msg(f != NULL, "CIFAR-10 not found at %s", src);
    uint8_t *buf = malloc((size_t)n * RNC_CIFAR_RECORD_BYTES);
    ck_assert_uint_eq(fread(buf, RNC_CIFAR_RECORD_BYTES, (size_t)n, f), (size_t)n);
    fclose(f);
    write_bytes(path, buf, (size_t)n * RNC_CIFAR_RECORD_BYTES);
    free(buf);
}

#define has(text, needle) ck_assert_msg(strstr(text, needle) != NULL, "expected '%s' in:\n%s", needle, text)

static rnc_run_state sample_run(void) {
    rnc_run_state s;
    rnc_run_identity(&s, &fake_model, &fake_model.recipe, 123, 320, 0x1234567890abcdefULL);
    s.recipe.lr = 0.1;   /* not exact in binary: must come back bit for bit */
    s.recipe.n_lr_steps = 3;
    s.recipe.lr_steps[0] = 5, s.recipe.lr_steps[1] = 7, s.recipe.lr_steps[2] = 9;
    s.recipe.lr_steps_in_iterations = 1;
    s.recipe.warmup_iterations = 11;
    s.recipe.warmup_lr = 1.0 / 3;
    s.order_id = 42;
    s.rng_check = 0xfedcba9876543210ULL;
    s.epoch_loss_sum = 2.0 / 3;
    s.epoch_correct = 17;
    s.epoch_seen = 64;
    snprintf(s.row, sizeof s.row, "1,40,0.1,2.3,0.9,,");
    return s;
}

/* ---- checkpoints ------------------------------------------------------------- */

START_TEST(ckpt_run_state_roundtrip) {
    make_tmpdir();
    rnc_err err;
    rnc_net a, b;
    rnc_sgd sa, sb;
    ck_assert_int_eq(rnc_net_alloc(&a, &fake_model, &err), RNC_OK);
    ck_assert_int_eq(rnc_net_alloc(&b, &fake_model, &err), RNC_OK);
    rnc_sgd_init(&sa, fake_model.param_count, 0.9, 0, &err);
    rnc_sgd_init(&sb, fake_model.param_count, 0.9, 0, &err);
    fill_net(&a, &sa, 0.5f);
    rnc_ckpt_meta meta = {.epoch = 0, .step = 30, .seed = 9, .iters_per_epoch = 40, .run = sample_run()}, got;
    ck_assert_int_eq(rnc_checkpoint_save(tmp_path("v2.ckpt"), &a, &sa, &meta, &err), RNC_OK);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("v2.ckpt"), &b, &sb, &got, &err), RNC_OK);
    ck_assert_mem_eq(a.params, b.params, fake_model.param_count * sizeof(float));
    ck_assert_mem_eq(sa.velocity, sb.velocity, fake_model.param_count * sizeof(float));
    const rnc_run_state *s = &got.run, *w = &meta.run;
    ck_assert(s->present);
    ck_assert_uint_eq(s->code_id, rnc_model_code_id(&fake_model));
    ck_assert_str_eq(s->schedule, fake_model.schedule);
    ck_assert_int_eq(s->batch, FAKE_BATCH);
    ck_assert(s->recipe.lr == w->recipe.lr && s->recipe.warmup_lr == w->recipe.warmup_lr);
    ck_assert(s->recipe.momentum == w->recipe.momentum && s->recipe.weight_decay == w->recipe.weight_decay);
    ck_assert_int_eq(s->recipe.n_lr_steps, 3);
    ck_assert_int_eq(s->recipe.lr_steps[2], 9);
    ck_assert_int_eq(s->recipe.lr_steps_in_iterations, 1);
    ck_assert_int_eq(s->recipe.warmup_iterations, 11);
    ck_assert_int_eq(s->total, 123);
    ck_assert_int_eq(s->train_images, 320);
    ck_assert_uint_eq(s->data_id, w->data_id);
    ck_assert_uint_eq(s->order_id, 42);
    ck_assert_uint_eq(s->rng_check, w->rng_check);
    ck_assert(s->epoch_loss_sum == 2.0 / 3);
    ck_assert_int_eq(s->epoch_correct, 17);
    ck_assert_int_eq(s->epoch_seen, 64);
    ck_assert_str_eq(s->row, w->row);

    /* The same state saves the same bytes: nothing in a checkpoint is a timing. */
    ck_assert_int_eq(rnc_checkpoint_save(tmp_path("again.ckpt"), &a, &sa, &meta, &err), RNC_OK);
    size_t n1, n2;
    char *c1 = read_all(tmp_path("v2.ckpt"), &n1), *c2 = read_all(tmp_path("again.ckpt"), &n2);
    ck_assert(n1 == n2 && !memcmp(c1, c2, n1));
    free(c1);
    free(c2);

    /* Format 1 (no run state) is still read. */
    meta.run.present = 0;
    ck_assert_int_eq(rnc_checkpoint_save(tmp_path("v1.ckpt"), &a, &sa, &meta, &err), RNC_OK);
    char *v1 = read_all(tmp_path("v1.ckpt"), &n1);
    uint32_t version;
    memcpy(&version, v1 + 8, 4);
    ck_assert_int_eq(version, 1);
    free(v1);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("v1.ckpt"), &b, &sb, &got, &err), RNC_OK);
    ck_assert(!got.run.present);
    ck_assert_int_eq(got.step, 30);
    rnc_net_free(&a);
    rnc_net_free(&b);
    rnc_sgd_free(&sa);
    rnc_sgd_free(&sb);
    remove_tree(tmpdir);
}
END_TEST

/* Rewrites a file's trailing checksum after an edit. */
static void fix_checksum(char *bytes, size_t n) {
    uint64_t sum = XXH3_64bits(bytes, n - 8);
    memcpy(bytes + n - 8, &sum, 8);
}

START_TEST(ckpt_refused_inputs) {
    make_tmpdir();
    rnc_err err;
    rnc_net a;
    rnc_sgd sa;
    rnc_net_alloc(&a, &fake_model, &err);
    rnc_sgd_init(&sa, fake_model.param_count, 0.9, 0, &err);
    fill_net(&a, &sa, 0.25f);
    rnc_ckpt_meta meta = {.step = 40, .seed = 1, .iters_per_epoch = 40, .run = sample_run()};
    ck_assert_int_eq(rnc_checkpoint_save(tmp_path("good.ckpt"), &a, &sa, &meta, &err), RNC_OK);
    size_t n;
    char *bytes = read_all(tmp_path("good.ckpt"), &n);

    /* Another version (checksum made right: the version itself is refused). */
    char *other = malloc(n);
    memcpy(other, bytes, n);
    other[8] = 3;
    fix_checksum(other, n);
    write_bytes(tmp_path("v3.ckpt"), other, n);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("v3.ckpt"), &a, &sa, NULL, &err), RNC_E_FORMAT);
    has(err.msg, "format version 3, this runtime reads 1 and 2");

    /* A flipped byte in the run state: the checksum says so. */
    memcpy(other, bytes, n);
    other[n - 30] ^= 0x20;
    write_bytes(tmp_path("flip.ckpt"), other, n);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("flip.ckpt"), &a, &sa, NULL, &err), RNC_E_CHECKSUM);
    /* ... and with the checksum made right, the run state's own checks. */
    char *key = memmem(other, n, "\ntotal 123\n", 11);
    ck_assert_ptr_nonnull(key);
    memcpy(key + 7, "x", 1);
    fix_checksum(other, n);
    write_bytes(tmp_path("state.ckpt"), other, n);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("state.ckpt"), &a, &sa, NULL, &err), RNC_E_FORMAT);
    has(err.msg, "run state is corrupted");

    /* Truncated inside the run state. */
    write_bytes(tmp_path("cut.ckpt"), bytes, n - 40);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("cut.ckpt"), &a, &sa, NULL, &err), RNC_E_FORMAT);
    has(err.msg, "truncated");

    /* Larger than any checkpoint of the network: refused without reading it. */
    FILE *f = fopen(tmp_path("huge.ckpt"), "wb");
    ck_assert_int_eq(fwrite(bytes, 1, n, f), n);
    ck_assert_int_eq(ftruncate(fileno(f), (off_t)1 << 34), 0);   /* 16 GiB, sparse */
    fclose(f);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("huge.ckpt"), &a, &sa, NULL, &err), RNC_E_MISMATCH);
    has(err.msg, "fake_softmax");
    write_bytes(tmp_path("text.ckpt"), "not a checkpoint", 16);
    f = fopen(tmp_path("text.ckpt"), "r+b");
    ck_assert_int_eq(ftruncate(fileno(f), (off_t)1 << 34), 0);
    fclose(f);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("text.ckpt"), &a, &sa, NULL, &err), RNC_E_FORMAT);
    has(err.msg, "larger than any checkpoint of network fake_softmax");

    /* Another network, larger than this one: named, not read. */
    rnc_model bigger = fake_model;
    bigger.name = "bigger";
    bigger.param_count = fake_model.param_count * 4;
    bigger.n_params = 0;
    rnc_net big;
    rnc_sgd bs;
    ck_assert_int_eq(rnc_net_alloc(&big, &bigger, &err), RNC_OK);
    rnc_sgd_init(&bs, bigger.param_count, 0.9, 0, &err);
    ck_assert_int_eq(rnc_checkpoint_save(tmp_path("bigger.ckpt"), &big, &bs, &meta, &err), RNC_OK);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("bigger.ckpt"), &a, &sa, NULL, &err), RNC_E_MISMATCH);
    has(err.msg, "'bigger'");
    has(err.msg, "'fake_softmax'");
    rnc_net_free(&big);
    rnc_sgd_free(&bs);
    free(other);
    free(bytes);
    rnc_net_free(&a);
    rnc_sgd_free(&sa);
    remove_tree(tmpdir);
}
END_TEST

/* ---- outputs: checked first, kept when a save fails ---------------------------- */

START_TEST(outputs_checked_before_anything) {
    make_tmpdir();
    char *out;
    /* The checkpoint path is checked before the data is even looked at. */
    int rc = run_cli(&fake_model, &out, "train", "--data", tmp_path("no-data"), "--checkpoint",
                     "/nonexistent-rnc-dir/x.ckpt", NULL);
    ck_assert_int_eq(rc, 1);
    has(out, "/nonexistent-rnc-dir/x.ckpt: cannot write a checkpoint there");
    ck_assert_ptr_null(strstr(out, "no-data"));
    free(out);
    /* A checkpoint is renamed into place: a device cannot be one. */
    rc = run_cli(&fake_model, &out, "train", "--data", tmp_path("no-data"), "--checkpoint", "/dev/null", NULL);
    ck_assert_int_eq(rc, 1);
    has(out, "/dev/null: not a regular file");
    free(out);
    /* The log: a full device fails at once (its header is flushed). */
    if (file_exists("/dev/full")) {
        rc = run_cli(&fake_model, &out, "train", "--data", tmp_path("no-data"), "--log", "/dev/full", NULL);
        ck_assert_int_eq(rc, 1);
        has(out, "/dev/full: cannot write log: No space left on device");
        free(out);
    }
    remove_tree(tmpdir);
}
END_TEST

/* No room for a checkpoint: found before training (RLIMIT_FSIZE stands in
 * for a full disk; Check runs each test in its own process). */
START_TEST(outputs_no_room) {
    make_tmpdir();
    write_small_cifar(tmp_path("small.bin"), 64);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {4096, 4096};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    char *out;
    int rc = run_cli(&fake_model, &out, "train", "--data", tmp_path("small.bin"), "--val", "0", "--steps", "2",
                     "--checkpoint", tmp_path("x.ckpt"), NULL);
    ck_assert_int_eq(rc, 1);
    has(out, "x.ckpt: ");
    ck_assert_ptr_null(strstr(out, "train fake_softmax"));   /* nothing trained */
    ck_assert(!file_exists(tmp_path("x.ckpt")));
    free(out);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(failed_save_keeps_previous) {
    make_tmpdir();
    rnc_err err;
    rnc_net a;
    rnc_sgd sa;
    rnc_net_alloc(&a, &fake_model, &err);
    rnc_sgd_init(&sa, fake_model.param_count, 0.9, 0, &err);
    fill_net(&a, &sa, 1.0f);
    rnc_ckpt_meta meta = {.step = 10, .seed = 1, .iters_per_epoch = 40, .run = sample_run()}, got;
    ck_assert_int_eq(rnc_checkpoint_save(tmp_path("k.ckpt"), &a, &sa, &meta, &err), RNC_OK);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {4096, 4096};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    meta.step = 20;
    ck_assert_int_eq(rnc_checkpoint_save(tmp_path("k.ckpt"), &a, &sa, &meta, &err), RNC_E_IO);
    has(err.msg, "write failed: File too large");
    ck_assert_int_eq(rnc_remove_stale_temps(tmp_path("k.ckpt"), NULL), 0);   /* the failed save cleaned up */
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("k.ckpt"), &a, &sa, &got, &err), RNC_OK);
    ck_assert_int_eq(got.step, 10);
    rnc_net_free(&a);
    rnc_sgd_free(&sa);
    remove_tree(tmpdir);
}
END_TEST

/* PATH.tmp.<pid> of a process that no longer runs is removed; one of a
 * running process (a concurrent save) is not. */
START_TEST(stale_temporaries) {
    make_tmpdir();
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    ck_assert_int_eq(waitpid(child, NULL, 0), child);
    char dead[64], alive[64];
    snprintf(dead, sizeof dead, "x.ckpt.tmp.%ld", (long)child);
    snprintf(alive, sizeof alive, "x.ckpt.tmp.%ld", (long)getppid());
    write_bytes(tmp_path("%s", dead), "x", 1);
    write_bytes(tmp_path("%s", alive), "x", 1);
    write_bytes(tmp_path("x.ckpt.tmp.notapid"), "x", 1);
    write_bytes(tmp_path("y.ckpt.tmp.1"), "x", 1);
    ck_assert_int_eq(rnc_remove_stale_temps(tmp_path("x.ckpt"), NULL), 1);
    ck_assert(!file_exists(tmp_path("%s", dead)));
    ck_assert(file_exists(tmp_path("%s", alive)));
    ck_assert(file_exists(tmp_path("x.ckpt.tmp.notapid")));
    ck_assert(file_exists(tmp_path("y.ckpt.tmp.1")));
    /* A run does it at start, and says so. */
    write_bytes(tmp_path("%s", dead), "x", 1);
    char *out;
    run_cli(&fake_model, &out, "train", "--data", tmp_path("none"), "--checkpoint", tmp_path("x.ckpt"), NULL);
    has(out, "left by an earlier run");
    ck_assert(!file_exists(tmp_path("%s", dead)));
    free(out);
    remove_tree(tmpdir);
}
END_TEST

/* The CSV of a resumed run: rows past the checkpoint and half a line go,
 * the checkpoint's own row comes back when the log lacks it. */
START_TEST(csv_put_right) {
    make_tmpdir();
    const char *head = "epoch,step,lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s\n";
    char text[1024];
    snprintf(text, sizeof text, "%s1,40,0.1,2,0.9,,,1.0,100.0\n2,80,0.1,1.9,0.8,,,1.0,100.0\n3,12", head);
    write_bytes(tmp_path("a.csv"), text, strlen(text));
    rnc_err err;
    FILE *f = rnc_csv_resume(tmp_path("a.csv"), 40, "1,40,0.1,2,0.9,,", &err);
    ck_assert_ptr_nonnull(f);
    fclose(f);
    char *got = read_all(tmp_path("a.csv"), NULL);
    snprintf(text, sizeof text, "%s1,40,0.1,2,0.9,,,1.0,100.0\n", head);
    ck_assert_str_eq(got, text);
    free(got);
    /* killed between the checkpoint and the row: the row comes from the checkpoint */
    f = rnc_csv_resume(tmp_path("a.csv"), 80, "2,80,0.1,1.9,0.8,,", &err);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(rnc_csv_write(f, tmp_path("a.csv"), "3,120,0.1,1.8,0.7,,,1.0,100.0", &err), RNC_OK);
    fclose(f);
    got = read_all(tmp_path("a.csv"), NULL);
    snprintf(text, sizeof text, "%s1,40,0.1,2,0.9,,,1.0,100.0\n2,80,0.1,1.9,0.8,,,,\n3,120,0.1,1.8,0.7,,,1.0,100.0\n",
             head);
    ck_assert_str_eq(got, text);
    free(got);
    remove_tree(tmpdir);
}
END_TEST

/* ---- resume ------------------------------------------------------------------ */

static char *ckpt_bytes(const char *name, size_t *n) { return read_all(tmp_path("%s", name), n); }

START_TEST(resume_inside_an_epoch) {
    make_tmpdir();
    const char *data = tmp_path("small.bin");
    write_small_cifar(data, 400);   /* 320 train (40 iterations per epoch), 80 val */
    char *out;
    int rc = run_cli(&fake_model, &out, "train", "--data", data, "--val", "80", "--steps", "100", "--seed", "5",
                     "--threads", "2", "--quiet", "--checkpoint", tmp_path("full.ckpt"), "--log", tmp_path("full.csv"),
                     NULL);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    /* Stopped at 30 and 70 (inside epochs 1 and 2), each resumed: the same bytes. */
    rc = run_cli(&fake_model, NULL, "train", "--data", data, "--val", "80", "--steps", "30", "--seed", "5",
                 "--threads", "2", "--quiet", "--checkpoint", tmp_path("part.ckpt"), "--log", tmp_path("part.csv"),
                 NULL);
    ck_assert_int_eq(rc, 0);
    rc = run_cli(&fake_model, &out, "train", "--data", data, "--val", "80", "--steps", "70", "--threads", "2",
                 "--quiet", "--checkpoint", tmp_path("part.ckpt"), "--resume", tmp_path("part.ckpt"), "--log",
                 tmp_path("part.csv"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    rc = run_cli(&fake_model, &out, "train", "--data", data, "--val", "80", "--steps", "100", "--threads", "2",
                 "--quiet", "--checkpoint", tmp_path("part.ckpt"), "--resume", tmp_path("part.ckpt"), "--log",
                 tmp_path("part.csv"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    size_t na, nb;
    char *a = ckpt_bytes("full.ckpt", &na), *b = ckpt_bytes("part.ckpt", &nb);
    ck_assert_msg(na == nb && !memcmp(a, b, na), "resumed checkpoints differ from the straight run's");
    free(a);
    free(b);
    /* The epoch rows agree but for the timings (the interrupted run also
     * has the rows of where it stopped, 30 and 70). */
    char *fa = read_all(tmp_path("full.csv"), NULL), *fb = read_all(tmp_path("part.csv"), NULL);
    for (char *line = strtok(fa, "\n"); line; line = strtok(NULL, "\n")) {
        char key[256];
        int commas = 0;
        size_t k = 0;
        for (; line[k] && commas < 7; k++)
            commas += line[k] == ',';
        snprintf(key, sizeof key, "\n%.*s", (int)k, line);
        if (strncmp(line, "epoch", 5))
            ck_assert_msg(strstr(fb, key) != NULL, "row '%s' missing from the resumed log:\n%s", line, fb);
    }
    has(fb, "\n1,30,");
    has(fb, "\n2,70,");
    free(fa);
    free(fb);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(resume_takes_the_runs_recipe) {
    make_tmpdir();
    const char *data = tmp_path("small.bin");
    write_small_cifar(data, 400);
    int rc = run_cli(&fake_model, NULL, "train", "--data", data, "--val", "80", "--steps", "20", "--lr", "5e-5",
                     "--lr-steps", "30", "--seed", "4", "--quiet", "--checkpoint", tmp_path("r.ckpt"), NULL);
    ck_assert_int_eq(rc, 0);
    /* No flags: the checkpoint's lr, steps, seed and length (20: nothing left). */
    char *out;
    rc = run_cli(&fake_model, &out, "train", "--data", data, "--val", "80", "--resume", tmp_path("r.ckpt"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    has(out, "nothing to train (already at iteration 20 of 20)");
    free(out);
    rc = run_cli(&fake_model, &out, "train", "--data", data, "--val", "80", "--steps", "40", "--resume",
                 tmp_path("r.ckpt"), "--log", tmp_path("r.csv"), NULL);
    ck_assert_msg(rc == 0, "%s", out);
    has(out, "lr 5e-05, x0.1 at iterations 30");
    has(out, "seed 4");
    free(out);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(resume_refuses_what_would_not_replay) {
    make_tmpdir();
    const char *data = tmp_path("small.bin");
    write_small_cifar(data, 400);
    int rc = run_cli(&fake_model, NULL, "train", "--data", data, "--val", "80", "--steps", "20", "--seed", "7",
                     "--quiet", "--checkpoint", tmp_path("r.ckpt"), NULL);
    ck_assert_int_eq(rc, 0);
    char *out;
    struct {
        const char *flag, *value, *says;
    } cases[] = {
        {"--lr", "2e-4", "--lr 0.0002, the checkpoint's run has 0.0001"},
        {"--momentum", "0.5", "--momentum 0.5, the checkpoint's run has 0.9"},
        {"--weight-decay", "0", "--weight-decay 0, the checkpoint's run has 0.0005"},
        {"--lr-steps", "3", "--lr-steps 3 iterations, the checkpoint's run has 4 epochs"},
        {"--warmup", "5", "--warmup 5 (lr 1e-05), the checkpoint's run has 0"},
        {"--seed", "8", "--seed 8, the checkpoint's run has seed 7"},
        {"--val", "40", "360 training images (45 iterations per epoch), the checkpoint's run had 320 (40)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc = run_cli(&fake_model, &out, "train", "--data", data, "--val", "80", "--steps", "30", "--resume",
                     tmp_path("r.ckpt"), cases[i].flag, cases[i].value, NULL);
        ck_assert_msg(rc == 1, "%s %s: exit %d\n%s", cases[i].flag, cases[i].value, rc, out);
        has(out, cases[i].says);
        has(out, "--allow-changes");
        ck_assert_ptr_null(strstr(out, "train fake_softmax"));
        free(out);
    }
    /* A refused resume leaves the log as it was (rows past the checkpoint too). */
    const char *log = "epoch,step,lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s\n9,999,0.1,1,1,,,1,1\n";
    write_bytes(tmp_path("r.csv"), log, strlen(log));
    rc = run_cli(&fake_model, &out, "train", "--data", data, "--val", "80", "--steps", "30", "--resume",
                 tmp_path("r.ckpt"), "--lr", "2e-4", "--log", tmp_path("r.csv"), NULL);
    ck_assert_int_eq(rc, 1);
    free(out);
    char *kept = read_all(tmp_path("r.csv"), NULL);
    ck_assert_str_eq(kept, log);
    free(kept);
    /* --allow-changes goes on, and says what changes. */
    rc = run_cli(&fake_model, &out, "train", "--data", data, "--val", "80", "--steps", "30", "--resume",
                 tmp_path("r.ckpt"), "--lr", "2e-4", "--allow-changes", "--quiet", NULL);
    ck_assert_msg(rc == 0, "%s", out);
    has(out, "with 1 change (--allow-changes): --lr 0.0002");
    free(out);
    /* Other data of the same size. */
    write_small_cifar(tmp_path("other.bin"), 401);
    FILE *f = fopen(tmp_path("other.bin"), "r+b");
    fseek(f, 1, SEEK_SET);
    fputc(7, f);   /* one pixel of the first image */
    fclose(f);
    rc = run_cli(&fake_model, &out, "train", "--data", tmp_path("other.bin"), "--val", "81", "--steps", "30",
                 "--resume", tmp_path("r.ckpt"), NULL);
    ck_assert_int_eq(rc, 1);
    has(out, "the training images are not those of the checkpoint's run");
    free(out);
    /* Another batch (the message names the batch, not --data or --val). */
    rnc_model b16 = fake_model;
    b16.batch = 16;
    rc = run_cli(&b16, &out, "train", "--data", data, "--val", "80", "--steps", "30", "--resume",
                 tmp_path("r.ckpt"), NULL);
    ck_assert_int_eq(rc, 1);
    has(out, "this network is built for batch 16, the checkpoint's run had batch 8");
    free(out);
    /* Other generated code with the same shapes. */
    rnc_model other = fake_model;
    other.schedule = "another schedule";
    rc = run_cli(&other, &out, "train", "--data", data, "--val", "80", "--steps", "30", "--resume",
                 tmp_path("r.ckpt"), NULL);
    ck_assert_int_eq(rc, 1);
    has(out, "(another schedule, rnc test, code ");
    has(out, ") is not the code that wrote the checkpoint");
    /* the two code ids, which tell codes of the same description apart */
    char ids[2][48];
    snprintf(ids[0], sizeof ids[0], "code %016llx)", (unsigned long long)rnc_model_code_id(&other));
    snprintf(ids[1], sizeof ids[1], "code %016llx)", (unsigned long long)rnc_model_code_id(&fake_model));
    has(out, ids[0]);
    has(out, ids[1]);
    free(out);
    remove_tree(tmpdir);
}
END_TEST

/* ---- guards ------------------------------------------------------------------ */

START_TEST(guard_exploding_loss) {
    make_tmpdir();
    write_small_cifar(tmp_path("small.bin"), 400);
    char *out;
    int rc = run_cli(&fake_model, &out, "train", "--data", tmp_path("small.bin"), "--val", "0", "--epochs", "2",
                     "--lr", "0.05", "--checkpoint", tmp_path("x.ckpt"), "--checkpoint-every", "1", NULL);
    ck_assert_int_eq(rc, 1);
    has(out, "more than 230.3 (--max-loss; 100 x ln(10 classes) by default): training diverged");
    has(out, "the last checkpoint");
    free(out);
    /* The last good checkpoint is kept: a step before the divergence. */
    rnc_net net;
    rnc_err err;
    rnc_ckpt_meta meta;
    rnc_net_alloc(&net, &fake_model, &err);
    ck_assert_int_eq(rnc_checkpoint_load(tmp_path("x.ckpt"), &net, NULL, &meta, &err), RNC_OK);
    ck_assert_int_ge(meta.step, 1);
    for (size_t i = 0; i < fake_model.param_count; i++)
        ck_assert(isfinite(net.params[i]));
    rnc_net_free(&net);
    /* Long losses print as numbers, not as 22 digits. */
    rc = run_cli(&fake_model, &out, "train", "--data", tmp_path("small.bin"), "--val", "0", "--steps", "3",
                 "--lr", "0.05", "--max-loss", "1e30", NULL);
    ck_assert_int_eq(rc, 0);
    char *loss = strstr(out, "final: train loss ");
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_le((int)strcspn(loss + 18, " "), 10);
    free(out);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(guard_detect_anomaly) {
    make_tmpdir();
    write_small_cifar(tmp_path("small.bin"), 400);
    char *out;
    int rc = run_cli(&fake_model, &out, "train", "--data", tmp_path("small.bin"), "--val", "0", "--steps", "5",
                     "--lr", "1e30", "--max-loss", "1e38", "--detect-anomaly", NULL);
    ck_assert_int_eq(rc, 1);
    /* the step after the huge update: the logits' gradient overflows first */
    has(out, "anomaly at iteration 2: the first non-finite value of the step is +Inf in gradient d.fc");
    has(out, "written by call 1, fc: fc forward-backward");
    free(out);

    /* Inside a step: the first tensor a call wrote non-finite is named,
     * with the call that wrote it. */
    rnc_net net;
    rnc_err err;
    rnc_anomaly *a;
    ck_assert_int_eq(rnc_net_alloc(&net, &fake_model, &err), RNC_OK);
    rnc_net_init(&net, 1);
    ck_assert_int_eq(rnc_anomaly_start(&net, &a, &err), RNC_OK);
    static float images[FAKE_BATCH * FAKE_PIXELS];
    int32_t labels[FAKE_BATCH] = {0};
    for (int i = 0; i < FAKE_BATCH * FAKE_PIXELS; i++)
        images[i] = (float)(i % 7) - 3;
    rnc_step_stats st;
    fake_model.train_step(&net, images, labels, NULL, &st);
    ck_assert_int_eq(rnc_anomaly_after_step(a, 1, &err), RNC_OK);
    net.params[5] = NAN;
    fake_model.train_step(&net, images, labels, NULL, &st);
    ck_assert_int_eq(rnc_anomaly_after_step(a, 2, &err), RNC_E_ARG);
    has(err.msg, "anomaly at iteration 2: the first non-finite value of the step is NaN in gradient d.fc");
    has(err.msg, "written by call 1, fc: fc forward-backward");
    /* After the SGD step: a parameter the update made non-finite. */
    net.params[5] = INFINITY;
    ck_assert_int_eq(rnc_anomaly_after_sgd(a, &net, 3, 0.5, &err), RNC_E_ARG);
    has(err.msg, "anomaly at iteration 3: the SGD step (lr 0.5) made parameter fc.weight non-finite (element 5 is Inf)");
    rnc_anomaly_stop(&net, a);
    ck_assert_ptr_null(net.check);
    rnc_net_free(&net);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(guard_memory_refused_up_front) {
    make_tmpdir();
    write_small_cifar(tmp_path("small.bin"), 64);
    rnc_model huge = fake_model;
    huge.work_bytes = (size_t)1 << 50;   /* 1 PiB: no machine */
    char *out;
    int rc = run_cli(&huge, &out, "train", "--data", tmp_path("small.bin"), "--val", "0", "--steps", "1", NULL);
    ck_assert_int_eq(rc, 1);
    has(out, "training fake_softmax at batch 8");
    has(out, "needs 1.0 PiB, more than");
    has(out, "nothing was allocated");
    free(out);
    rnc_ckpt_meta meta = {0};
    (void)meta;
    rc = run_cli(&huge, &out, "bench", "--steps", "1", NULL);
    ck_assert_int_eq(rc, 1);
    has(out, "needs 1048576.0 GiB for its buffers");
    free(out);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(guard_flag_values) {
    make_tmpdir();
    write_small_cifar(tmp_path("small.bin"), 400);
    const char *d = tmp_path("small.bin");
    char *out;
    const char *bad[][2] = {{"--lr-steps", "5,3"}, {"--lr-steps", "0,5"}, {"--lr-steps", "1,2,3,4,5,6,7,8,9"},
                            {"--lr-steps", "5,"}, {"--lr", "0x10"}, {"--lr", "inf"}, {"--momentum", "0x1p-1"},
                            {"--threads", "100000"}, {"--seed", "-1"}, {"--checkpoint-every", "0"},
                            {"--max-loss", "0"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run_cli(&fake_model, &out, "train", "--data", d, bad[i][0], bad[i][1], NULL);
        ck_assert_msg(rc == 2, "%s %s: exit %d", bad[i][0], bad[i][1], rc);
        free(out);
    }
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", d, "--checkpoint-every", "5", NULL), 2);
    has(out, "need --checkpoint FILE");
    free(out);
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", d, "--allow-changes", NULL), 2);
    free(out);
    /* --seed is decimal ("010" is ten); a run of a few steps says how much of an epoch it is. */
    int rc = run_cli(&fake_model, &out, "train", "--data", d, "--val", "80", "--steps", "5", "--seed", "010", NULL);
    ck_assert_msg(rc == 0, "%s", out);
    has(out, "5 iterations (0.125 epochs)");
    has(out, "seed 10,");
    has(out, "epoch 1/1 (iterations 1-5 of 40)");
    free(out);
    remove_tree(tmpdir);
}
END_TEST

START_TEST(guard_write_errors) {
    make_tmpdir();
    if (!file_exists("/dev/full")) {
        remove_tree(tmpdir);
        return;
    }
    write_small_cifar(tmp_path("small.bin"), 64);
    char *out;
    ck_assert_int_eq(run_cli(&fake_model, NULL, "train", "--data", tmp_path("small.bin"), "--val", "0", "--steps",
                             "1", "--quiet", "--checkpoint", tmp_path("w.ckpt"), NULL), 0);
    int rc = run_cli_stdout(&fake_model, "/dev/full", &out, "eval", "--data", tmp_path("small.bin"), "--weights",
                            tmp_path("w.ckpt"), NULL);
    ck_assert_int_eq(rc, 1);
    has(out, "cannot write standard output");
    free(out);
    rc = run_cli_stdout(&fake_model, "/dev/full", &out, "--help", NULL);
    ck_assert_int_eq(rc, 1);
    free(out);
    remove_tree(tmpdir);
}
END_TEST

/* ---- data -------------------------------------------------------------------- */

START_TEST(data_bad_inputs) {
    make_tmpdir();
    rnc_dataset ds = {0};
    rnc_err err;
    /* truncated: a record cut short */
    write_small_cifar(tmp_path("t.bin"), 3);
    FILE *f = fopen(tmp_path("t.bin"), "r+b");
    ck_assert_int_eq(ftruncate(fileno(f), 3 * RNC_CIFAR_RECORD_BYTES - 100), 0);
    fclose(f);
    ck_assert_int_eq(rnc_cifar_load_file(&ds, tmp_path("t.bin"), &err), RNC_E_FORMAT);
    has(err.msg, "not a multiple of 3073");
    /* oversized: refused before anything is read (a sparse 3 GB file) */
    f = fopen(tmp_path("big.bin"), "wb");
    ck_assert_int_eq(ftruncate(fileno(f), (off_t)3 << 30), 0);
    fclose(f);
    ck_assert_int_eq(rnc_cifar_load_file(&ds, tmp_path("big.bin"), &err), RNC_E_FORMAT);
    has(err.msg, "more than CIFAR-10 data rnc can hold");
    ck_assert_int_eq(ds.n, 0);
    /* labels out of range */
    write_small_cifar(tmp_path("l.bin"), 3);
    f = fopen(tmp_path("l.bin"), "r+b");
    fseek(f, 2 * RNC_CIFAR_RECORD_BYTES, SEEK_SET);
    fputc(10, f);
    fclose(f);
    ck_assert_int_eq(rnc_cifar_load_file(&ds, tmp_path("l.bin"), &err), RNC_E_FORMAT);
    has(err.msg, "record 2 has label 10");
    /* an empty data directory */
    mkdir(tmp_path("empty"), 0755);
    char *out;
    ck_assert_int_eq(run_cli(&fake_model, &out, "train", "--data", tmp_path("empty"), NULL), 1);
    has(out, "data_batch_1.bin: missing");
    free(out);
    /* unreadable files: a folder where a file should be, and (not as root) no permission */
    mkdir(tmp_path("dir"), 0755);
    for (int i = 1; i <= 5; i++) {
        char name[64];
        snprintf(name, sizeof name, "dir/data_batch_%d.bin", i);
        if (i == 3)
            mkdir(tmp_path("%s", name), 0755);
        else
            write_small_cifar(tmp_path("%s", name), 2);
    }
    ck_assert_int_eq(rnc_cifar_load_train(&ds, tmp_path("dir"), &err), RNC_E_IO);
    has(err.msg, "data_batch_3.bin: not a regular file");
    if (geteuid() != 0) {
        rmdir(tmp_path("dir/data_batch_3.bin"));
        write_small_cifar(tmp_path("dir/data_batch_3.bin"), 2);
        chmod(tmp_path("dir/data_batch_3.bin"), 0);
        ck_assert_int_eq(rnc_cifar_load_train(&ds, tmp_path("dir"), &err), RNC_E_IO);
        has(err.msg, "data_batch_3.bin: cannot open: Permission denied");
    }
    ck_assert_int_eq(ds.n, 0);
    remove_tree(tmpdir);
}
END_TEST

static Suite *reliability_suite(void) {
    Suite *s = suite_create("reliability");
    TestGroup groups[] = {
        {"checkpoint", {ckpt_run_state_roundtrip, ckpt_refused_inputs}},
        {"outputs", {outputs_checked_before_anything, outputs_no_room, failed_save_keeps_previous, stale_temporaries,
                     csv_put_right}},
        {"resume", {resume_inside_an_epoch, resume_takes_the_runs_recipe, resume_refuses_what_would_not_replay}},
        {"guards", {guard_exploding_loss, guard_detect_anomaly, guard_memory_refused_up_front, guard_flag_values,
                    guard_write_errors}},
        {"data", {data_bad_inputs}},
    };
    add_groups(s, groups, sizeof groups / sizeof groups[0], 120);
    return s;
}

int main(void) {
    return run_suite_in_tmproot("/tmp/rnc_reliability_XXXXXX", reliability_suite());
}
