/* fuzz_checkpoint.c - the checkpoint reader on arbitrary bytes, and what a
 * resume does with an accepted checkpoint's run state.
 *
 * The first byte picks how the rest is taken: odd, its last 8 bytes are
 * replaced by the checksum of the others, so inputs reach the checks after
 * the checksum (the run state's parser, the network's identity) instead of
 * stopping at it. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../../runtime/internal.h"
#include "fuzz.h"
#include "fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    const int fix = data[0] & 1;
    size--;
    data++;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (fix && size >= 8) {
        uint64_t sum = XXH3_64bits(buf, size - 8);
        memcpy(buf + size - 8, &sum, 8);
    }
    rnc_ckpt *c;
    rnc_err err;
    if (rnc_ckpt_parse("fuzz.ckpt", buf, size, &fuzz_model, &c, &err) != RNC_OK) {
        fuzz_note("refused", err.msg);
        return 0;
    }
    fuzz_note(rnc_ckpt_meta_of(c)->run.present ? "accepted, with a run state" : "accepted", NULL);
    rnc_net net;
    rnc_sgd sgd;
    if (rnc_net_alloc(&net, &fuzz_model, &err) == RNC_OK &&
        rnc_sgd_init(&sgd, fuzz_model.param_count, 0.9, 1e-4, &err) == RNC_OK) {
        if (rnc_ckpt_restore(c, &net, rnc_ckpt_has_momentum(c) ? &sgd : NULL, &err) != RNC_OK)
            abort();   /* parse accepted it: restoring cannot fail */
        rnc_sgd_free(&sgd);
    }
    rnc_net_free(&net);
    const rnc_ckpt_meta *meta = rnc_ckpt_meta_of(c);
    if (strlen(meta->run.row) >= sizeof meta->run.row)
        abort();
    /* A resume from it: every value of the run state compared and merged. */
    rnc_dataset ds = fuzz_images();
    rnc_source train = {&ds, NULL, NULL, ds.n, 10};
    rnc_train_options o;
    rnc_train_options_default(&o, &fuzz_model);
    o.resume_path = "fuzz.ckpt";
    o.recipe_given = meta->step & 31;   /* some flags given, some not */
    o.seed_given = (meta->step >> 5) & 1;
    o.allow_changes = (meta->step >> 6) & 1;
    rnc_recipe recipe;
    uint64_t seed;
    int64_t total = 8;
    if (rnc_resume_check(meta, &fuzz_model, &o, &train, rnc_source_id(&train), 4, &recipe, &seed, &total, &err))
        fuzz_note("resume refused", err.msg);
    rnc_ckpt_close(c);
    return 0;
}
