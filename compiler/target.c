/* target.c - the machine generated code is for: its vector width and
 * registers, its dot-product and matrix units, caches and cores, and the C
 * compiler flags that select its instructions.  Named (--target) or taken
 * from the host (native); the schedule and every kernel family read it. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "rnc.h"

/* The named targets; native takes the host's class and -march=native. */
static const Target TARGETS[] = {
    {.name = "avx512", .vec = 16, .regs = 32, .fma = true, .march = "-march=x86-64-v4", .isa_macro = "__AVX512F__",
     .cpu_feature = "avx512f", .l1d_kb = 32, .l2_kb = 1024, .cores = 0},
    /* Sapphire Rapids on: AVX-512, AVX512-BF16 and AMX's bf16 tiles */
    {.name = "amx", .vec = 16, .regs = 32, .fma = true, .bf16_dot = true, .amx = true, .march = "-march=sapphirerapids",
     .isa_macro = "__AVX512BF16__", .cpu_feature = "amx_bf16", .l1d_kb = 48, .l2_kb = 2048, .cores = 0},
    /* AVX-512 code whose AMX tiles are a C model of them: for testing */
    {.name = "amx-emulated", .vec = 16, .regs = 32, .fma = true, .amx = true, .amx_emulated = true,
     .march = "-march=x86-64-v4", .isa_macro = "__AVX512F__", .cpu_feature = "avx512f", .l1d_kb = 48, .l2_kb = 2048,
     .cores = 0},
    {.name = "avx2", .vec = 8, .regs = 16, .fma = true, .march = "-march=haswell", .isa_macro = "__AVX2__",
     .cpu_feature = "avx2", .l1d_kb = 32, .l2_kb = 256, .cores = 0},
    {.name = "generic", .vec = 4, .regs = 16, .fma = false, .march = "-march=x86-64", .isa_macro = "__SSE2__",
     .cpu_feature = NULL, .l1d_kb = 32, .l2_kb = 256, .cores = 0},
    {.name = "aarch64", .vec = 4, .regs = 32, .fma = true, .march = "-march=armv8-a", .isa_macro = "__aarch64__",
     .cpu_feature = NULL, .l1d_kb = 64, .l2_kb = 1024, .cores = 0, .cross_cc = "aarch64-linux-gnu-gcc"},
};
enum { N_TARGETS = sizeof TARGETS / sizeof TARGETS[0] };

static bool cpu_flag(const char *flags, const char *name) {
    size_t n = strlen(name);
    for (const char *p = strstr(flags, name); p; p = strstr(p + 1, name))
        if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

static int read_kb(const char *path) {
    FILE *f = fopen(path, "r");
    int kb = 0;
    char unit = 0;
    if (f) {
        if (fscanf(f, "%d%c", &kb, &unit) < 1)
            kb = 0;
        fclose(f);
    }
    return unit == 'M' ? kb * 1024 : kb;
}

/* (Not inlined: GCC 12's -Wstring-compare misreads the loop once the
 * name is a constant.) */
__attribute__((noinline)) static const Target *named(const char *name) {
    for (int i = 0; i < N_TARGETS; i++)
        if (!strcmp(TARGETS[i].name, name))
            return &TARGETS[i];
    return NULL;
}

const Target *target_host(void) {
    static Target host;
    static bool done;
    if (done)
        return &host;
    done = true;
    char *flags = NULL;
    size_t cap = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    bool avx512 = false, avx2 = false, fma = false, asimd = false, bf16 = false, amx = false;
    while (f && getline(&flags, &cap, f) > 0) {
        if (strncmp(flags, "flags", 5) && strncmp(flags, "Features", 8))
            continue;
        const char *v = strchr(flags, ':');
        v = v ? v + 1 : flags;
        avx512 = cpu_flag(v, "avx512f") && cpu_flag(v, "avx512bw") && cpu_flag(v, "avx512dq") && cpu_flag(v, "avx512vl");
        avx2 = cpu_flag(v, "avx2");
        fma = cpu_flag(v, "fma");
        asimd = cpu_flag(v, "asimd");
        bf16 = cpu_flag(v, "avx512_bf16");
        amx = cpu_flag(v, "amx_bf16") && cpu_flag(v, "amx_tile");
        break;
    }
    if (f)
        fclose(f);
    free(flags);
#if defined(__aarch64__)
    asimd = true;
#endif
    host = *named(avx512 ? "avx512" : avx2 && fma ? "avx2" : asimd ? "aarch64" : "generic");
    host.march = "-march=native";
    host.cross_cc = NULL;
    host.native = true;
    host.bf16_dot = bf16;
    host.amx = amx;
    if (amx)   /* -march=native then emits AMX code: it needs the tiles to run */
        host.cpu_feature = "amx_bf16";
    int l1 = read_kb("/sys/devices/system/cpu/cpu0/cache/index0/size");
    int l2 = read_kb("/sys/devices/system/cpu/cpu0/cache/index2/size");
    if (l1 > 0)
        host.l1d_kb = l1;
    if (l2 > 0)
        host.l2_kb = l2;
    cpu_set_t set;
    host.cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    return &host;
}

bool target_named(const char *name, Target *t) {
    if (!name || !strcmp(name, "native")) {
        *t = *target_host();
        return true;
    }
    const Target *n = named(name);
    if (!n) {
        fprintf(stderr, "rnc: error: unknown target '%s' (native, avx512, amx, amx-emulated, avx2, generic or aarch64)\n", name);
        return false;
    }
    *t = *n;
    t->cores = target_host()->cores;
    return true;
}

void target_text(const Target *t, char *buf, size_t size) {
    snprintf(buf, size, "%s%s: %d-float vectors, %d vector registers%s%s%s (%s)", t->name, t->native ? " (native)" : "",
             t->vec, t->regs, t->fma ? ", FMA" : "", t->bf16_dot ? ", AVX512-BF16" : "", t->amx_emulated ? ", AMX emulated in C" : t->amx ? ", AMX" : "",
             t->march);
}

bool target_runs_here(const Target *t) {
    const Target *h = target_host();
    bool x86 = strcmp(h->name, "aarch64") != 0, wants_x86 = strcmp(t->name, "aarch64") != 0;
    bool ok = x86 == wants_x86;
    if (ok && !strcmp(t->name, "amx"))
        ok = h->amx;
    else if (ok && (!strcmp(t->name, "avx512") || t->amx_emulated))
        ok = !strcmp(h->name, "avx512");
    else if (ok && !strcmp(t->name, "avx2"))
        ok = !strcmp(h->name, "avx512") || !strcmp(h->name, "avx2");
    if (!ok)
        fprintf(stderr, "rnc: error: code for the %s target cannot run on this CPU (a %s machine%s)%s\n", t->name, h->name,
                h->amx ? " with AMX" : "",
                t->cross_cc ? "; build it with rnc SPEC -o FILE.c --target and that target's compiler" : "");
    return ok;
}
