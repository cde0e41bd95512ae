/* fuzz_index.c - the JPEG folder index cache reader on arbitrary bytes.
 *
 * The first byte picks how the rest is taken: 0, as the cache file's bytes
 * (magic, checksum and key checks); else wrapped in a valid header (magic,
 * the key, the tree's path) and checksum, so inputs reach the parser of
 * classes, images and skipped files.  An index it accepts is then used as
 * a folder is: every name, the counts per class. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../../runtime/internal.h"
#include "fuzz.h"

#define MAGIC "RNCIDX02"   /* imagefolder.c's */
static const char REAL[] = "/fuzz/tree";
static const uint64_t SIG = 0x5eed5eed5eed5eedULL;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    const int wrap = data[0] != 0;
    data++;
    size--;
    uint32_t rl = (uint32_t)strlen(REAL);
    size_t len = wrap ? 8 + 8 + 4 + rl + size + 8 : size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return 0;
    if (wrap) {
        uint8_t *p = buf;
        memcpy(p, MAGIC, 8), p += 8;
        memcpy(p, &SIG, 8), p += 8;
        memcpy(p, &rl, 4), p += 4;
        memcpy(p, REAL, rl), p += rl;
        memcpy(p, data, size), p += size;
        uint64_t sum = XXH3_64bits(buf, len - 8);
        memcpy(p, &sum, 8);
    } else {
        memcpy(buf, data, size);
    }
    rnc_imagefolder f;
    memset(&f, 0, sizeof f);
    int ok = rnc_index_parse(&f, buf, len, REAL, SIG);
    fuzz_note(ok ? "accepted" : "refused", NULL);
    if (ok) {
        int *counts = calloc((size_t)(f.n_classes ? f.n_classes : 1), sizeof *counts);
        if (counts) {
            rnc_imagefolder_counts(&f, counts);
            long total = 0;
            for (int k = 0; k < f.n_classes; k++)
                total += counts[k];
            if (total != f.n)
                abort();
            free(counts);
        }
        size_t names = 0;
        for (int i = 0; i < f.n; i++)
            names += strlen(rnc_imagefolder_name(&f, i));
        (void)names;
        const char *s = f.skipped;
        for (int i = 0; i < f.n_skipped; i++)
            s += strlen(s) + 1;
    }
    rnc_imagefolder_free(&f);
    free(buf);
    return 0;
}
