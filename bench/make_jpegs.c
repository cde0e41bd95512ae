/* make_jpegs.c - a synthetic ImageNet-style tree for bench/data_overhead:
 *   make_jpegs DIR CLASSES PER_CLASS WIDTH HEIGHT
 * writes DIR/train/cNN/iNNNN.JPEG, photo-like content (smooth gradients,
 * stripes and noise) at quality 90, so files decode like real photos. */
#include <stdint.h>
#include <stdio.h>
#include <jpeglib.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <math.h>

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double uniform(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (rng >> 11) * 0x1.0p-53;
}

static int write_jpeg(const char *path, int w, int h, unsigned char *rgb) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = w, c.image_height = h, c.input_components = 3, c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = rgb + (size_t)c.next_scanline * w * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: make_jpegs DIR CLASSES PER_CLASS WIDTH HEIGHT\n");
        return 2;
    }
    const char *dir = argv[1];
    int classes = atoi(argv[2]), per = atoi(argv[3]), w = atoi(argv[4]), h = atoi(argv[5]);
    unsigned char *rgb = malloc((size_t)w * h * 3);
    char path[4096];
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/train", dir);
    mkdir(path, 0777);
    for (int k = 0; k < classes; k++) {
        snprintf(path, sizeof path, "%s/train/c%02d", dir, k);
        mkdir(path, 0777);
        for (int i = 0; i < per; i++) {
            double fx = 0.01 + 0.05 * uniform(), fy = 0.01 + 0.05 * uniform(), ph = 6.28 * uniform();
            double base[3] = {60 + 120 * uniform(), 60 + 120 * uniform(), 60 + 120 * uniform()};
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int ch = 0; ch < 3; ch++) {
                        double v = base[ch] + 50 * sin(fx * x + fy * y + ph + ch) + 25 * (uniform() - 0.5);
                        rgb[((size_t)y * w + x) * 3 + ch] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
                    }
            snprintf(path, sizeof path, "%s/train/c%02d/i%04d.JPEG", dir, k, i);
            if (write_jpeg(path, w, h, rgb)) {
                perror(path);
                return 1;
            }
        }
    }
    free(rgb);
    return 0;
}
