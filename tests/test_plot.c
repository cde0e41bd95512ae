/* test_plot.c - `rnc plot`: reading training logs (every error message), and
 * the figures cairo writes: a PNG whose header has the asked size and whose
 * pixels carry each run's colour, an SVG with its root element.  The logs
 * are the CSV files in tests/plot/ (resnet20.csv is experiments/runs/fig6-resnet20's). */
#define _GNU_SOURCE  /* mkdtemp, nftw (testutil.h) */
#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cairo.h>

#include "plot.h"
#include "testutil.h"

#define LOGS SOURCE_DIR "/tests/plot/"

/* testutil.h's read_all, where a file missing is a figure not written. */
static char *slurp(const char *path, size_t *len) {
    ck_assert_msg(access(path, F_OK) == 0, "%s not written", path);
    return read_all(path, len);
}

static int files_in(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* ---- reading ------------------------------------------------------------ */

START_TEST(reads_an_rnc_log) {
    PlotLog log;
    char err[1024] = "";
    ck_assert_msg(plot_read_log(LOGS "resnet20.csv", &log, err, sizeof err), "%s", err);
    ck_assert_int_eq(log.n, 30);
    ck_assert_int_eq(log.replaced, 0);
    ck_assert_int_eq(log.rows[0].epoch, 1);
    ck_assert_int_eq(log.rows[0].step, 351);
    ck_assert_double_eq_tol(log.rows[0].train_err, 0.621572293, 1e-12);
    ck_assert(log.rows[0].has_val);
    ck_assert_double_eq_tol(log.rows[0].val_err, 0.5058, 1e-12);
    ck_assert_int_eq(log.rows[29].step, 10530);
    ck_assert_double_eq_tol(log.rows[29].val_err, 0.14, 1e-12);
    ck_assert_str_eq(log.path, LOGS "resnet20.csv");
    plot_free_log(&log);
}
END_TEST

START_TEST(log_without_held_out_images) {
    PlotLog log;
    char err[1024] = "";
    ck_assert_msg(plot_read_log(LOGS "no_val.csv", &log, err, sizeof err), "%s", err);
    ck_assert_int_eq(log.n, 2);
    ck_assert(!log.rows[0].has_val && !log.rows[1].has_val);
    plot_free_log(&log);
}
END_TEST

START_TEST(resumed_run_replaces_replayed_rows) {
    /* epoch 3 twice: the run was resumed from its epoch-2 checkpoint */
    PlotLog log;
    char err[1024] = "";
    ck_assert_msg(plot_read_log(LOGS "resumed.csv", &log, err, sizeof err), "%s", err);
    ck_assert_int_eq(log.n, 4);
    ck_assert_int_eq(log.replaced, 1);
    for (int i = 0; i < log.n; i++)
        ck_assert_int_eq(log.rows[i].step, 351 * (i + 1));
    plot_free_log(&log);
}
END_TEST

static const struct {
    const char *file, *message;
} bad_logs[] = {
    {"bad_fields.csv", LOGS "bad_fields.csv:4: error: 7 fields, the header has 9"},
    {"bad_number.csv", LOGS "bad_number.csv:3: error: train_err is '0.44x', not a number"},
    {"bad_fraction.csv", LOGS "bad_fraction.csv:2: error: train_err 62.1572293 is not an error fraction between 0 and 1"},
    {"bad_header.csv", LOGS "bad_header.csv:1: error: not an rnc training log: the header has no 'val_err' column "
                       "(expected epoch,step,lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s)"},
    {"header_only.csv", LOGS "header_only.csv: error: no rows after the header (the run has not finished an epoch yet)"},
    {"empty.csv", LOGS "empty.csv: error: empty file (an rnc training log starts with the header "
                  "epoch,step,lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s)"},
    {"missing.csv", LOGS "missing.csv: error: cannot open: No such file or directory"},
};

START_TEST(bad_logs_are_reported_with_file_and_line) {
    char path[4096], err[1024] = "";
    snprintf(path, sizeof path, LOGS "%s", bad_logs[_i].file);
    PlotLog log;
    ck_assert(!plot_read_log(path, &log, err, sizeof err));
    ck_assert_str_eq(err, bad_logs[_i].message);
    ck_assert_int_eq(log.n, 0);
    ck_assert_ptr_null(log.rows);
}
END_TEST

/* ---- drawing ------------------------------------------------------------ */

static PlotLog logs[2];

static void read_logs(void) {
    char err[1024] = "";
    ck_assert_msg(plot_read_log(LOGS "resnet20.csv", &logs[0], err, sizeof err), "%s", err);
    ck_assert_msg(plot_read_log(LOGS "plain20_10epochs.csv", &logs[1], err, sizeof err), "%s", err);
    logs[0].label = strdup("ResNet-20");
    logs[1].label = strdup("plain-20");
}

static void setup(void) {
    make_tmpdir();
    read_logs();
}

static void teardown(void) {
    plot_free_log(&logs[0]);
    plot_free_log(&logs[1]);
    remove_tmpdir();
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void check_png(const char *path, int w, int h) {
    size_t len;
    unsigned char *b = (unsigned char *)slurp(path, &len);
    ck_assert_uint_gt(len, 33);
    ck_assert_mem_eq(b, "\x89PNG\r\n\x1a\n", 8);
    ck_assert_uint_eq(be32(b + 8), 13);          /* the first chunk is IHDR, 13 bytes */
    ck_assert_mem_eq(b + 12, "IHDR", 4);
    ck_assert_uint_eq(be32(b + 16), (uint32_t)w);
    ck_assert_uint_eq(be32(b + 20), (uint32_t)h);
    free(b);
}

/* Pixels within 6/255 of the colour (RGB24 surface, read back by cairo). */
static long count_colour(const char *path, const double rgb[3]) {
    cairo_surface_t *s = cairo_image_surface_create_from_png(path);
    ck_assert_int_eq(cairo_surface_status(s), CAIRO_STATUS_SUCCESS);
    int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s),
        stride = cairo_image_surface_get_stride(s);
    const unsigned char *d = cairo_image_surface_get_data(s);
    long n = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint32_t p;
            memcpy(&p, d + (size_t)y * stride + 4 * (size_t)x, 4);
            int c[3] = {(int)(p >> 16 & 255), (int)(p >> 8 & 255), (int)(p & 255)}, near = 1;
            for (int k = 0; k < 3; k++)
                near &= abs(c[k] - (int)(rgb[k] * 255 + 0.5)) <= 6;
            n += near;
        }
    cairo_surface_destroy(s);
    return n;
}

START_TEST(png_has_the_size_and_every_run_colour) {
    const char *path = tmp_path("fig.png");
    char err[1024] = "";
    PlotOptions o = {"Figure 6", 0, 0, PLOT_X_ITERATIONS, 800, 500};
    ck_assert_msg(plot_render(path, logs, 2, &o, err, sizeof err), "%s", err);
    check_png(path, 800, 500);
    double c0[3], c1[3], c2[3];
    plot_colour(0, c0);
    plot_colour(1, c1);
    plot_colour(2, c2);
    /* each run's curves (and legend sample) are drawn in its colour; a third is not */
    ck_assert_int_gt(count_colour(path, c0), 500);
    ck_assert_int_gt(count_colour(path, c1), 200);
    ck_assert_int_eq(count_colour(path, c2), 0);

    /* one run: only its colour, at another size */
    path = tmp_path("one.png");
    o = (PlotOptions){NULL, 0, 0, PLOT_X_EPOCHS, 640, 400};
    ck_assert_msg(plot_render(path, &logs[1], 1, &o, err, sizeof err), "%s", err);
    check_png(path, 640, 400);
    ck_assert_int_gt(count_colour(path, c0), 100);
    ck_assert_int_eq(count_colour(path, c1), 0);
    ck_assert_int_eq(files_in(tmpdir), 2);   /* no temporary file left behind */
}
END_TEST

START_TEST(svg_has_its_root_element) {
    const char *path = tmp_path("fig.svg");
    char err[1024] = "";
    PlotOptions o = {"Figure 6", 0, 30, PLOT_X_ITERATIONS, 800, 500};
    ck_assert_msg(plot_render(path, logs, 2, &o, err, sizeof err), "%s", err);
    size_t len;
    char *s = slurp(path, &len);
    ck_assert_msg(!strncmp(s, "<?xml", 5), "no XML declaration");
    char *root = strstr(s, "<svg");
    ck_assert_ptr_nonnull(root);
    ck_assert_ptr_null(memchr(s + 5, '<', (size_t)(root - s - 5)));   /* <svg is the first element */
    ck_assert_ptr_nonnull(strstr(root, "xmlns=\"http://www.w3.org/2000/svg\""));
    ck_assert_ptr_nonnull(strstr(root, "width=\"800px\" height=\"500px\""));
    while (len && (s[len - 1] == '\n' || s[len - 1] == ' '))
        s[--len] = 0;
    ck_assert_str_eq(s + len - 6, "</svg>");
    ck_assert_ptr_nonnull(strstr(s, "<path"));
    free(s);
}
END_TEST

START_TEST(bad_outputs_are_reported) {
    char err[1024] = "";
    PlotOptions o = {NULL, 0, 0, PLOT_X_ITERATIONS, 800, 500};
    const char *path = tmp_path("fig.jpg");
    ck_assert(!plot_render(path, logs, 1, &o, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "the output must end in .png or .svg"));
    path = tmp_path("no/such/dir/fig.png");
    ck_assert(!plot_render(path, logs, 1, &o, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "rnc plot: error: cannot write"));
    ck_assert_ptr_nonnull(strstr(err, "/no/such/dir/fig.png"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("plot");
    TCase *read = tcase_create("read");
    tcase_add_test(read, reads_an_rnc_log);
    tcase_add_test(read, log_without_held_out_images);
    tcase_add_test(read, resumed_run_replaces_replayed_rows);
    tcase_add_loop_test(read, bad_logs_are_reported_with_file_and_line, 0,
                        (int)(sizeof bad_logs / sizeof *bad_logs));
    suite_add_tcase(s, read);
    TCase *draw = tcase_create("draw");
    tcase_add_checked_fixture(draw, setup, teardown);
    tcase_set_timeout(draw, 60);
    tcase_add_test(draw, png_has_the_size_and_every_run_colour);
    tcase_add_test(draw, svg_has_its_root_element);
    tcase_add_test(draw, bad_outputs_are_reported);
    suite_add_tcase(s, draw);
    return run_suite_in_tmproot("/tmp/rnc_test_plot_XXXXXX", s);
}
