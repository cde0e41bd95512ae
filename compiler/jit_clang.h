/*
 * jit_clang.h - the in-process JIT: `rnc train|eval|bench SPEC ...`.
 *
 * Two layers, both with a C interface:
 *
 *   jit_clang.cpp  a thin shim over Clang and LLVM ORC (the only C++ in rnc):
 *                  C source in memory -> ELF object in memory (Clang's driver
 *                  and EmitObjAction), and object -> running code (ORC LLJIT
 *                  with the process's own symbols: libc, libm, libomp).
 *   jit.c          the command: spec -> generated C (in memory) -> object
 *                  cache -> JIT -> rnc_main().  See docs/jit.md.
 *
 * Nothing here writes a source or object file except the cache entries.
 * Functions returning int return 0 on success; on failure *diag (when
 * non-NULL) receives a malloc'ed message, for compile errors Clang's own
 * diagnostics ("file:line:col: error: ..."); free it with free().
 */
#ifndef RNC_JIT_CLANG_H
#define RNC_JIT_CLANG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the shim (jit_clang.cpp) ---------------------------------------- */

/* One loaded object: an LLJIT instance owning the code and data. */
typedef struct rnc_jit rnc_jit;

/* Compiles `len` bytes of C at `source` to a relocatable ELF object for the
 * host, as `clang -c ARGS` would.  `name` is the file name diagnostics show
 * (nothing is read from or written to it).  args: driver flags such as
 * "-O3", "-march=native", "-fopenmp", "-I/dir", "-DX"; the clang driver turns
 * them into the cc1 invocation, so the system headers, Clang's resource
 * headers (omp.h) and -march=native's host CPU are found as in a normal
 * compile.  jobs <= 1: Clang's own object output (identical to `clang -c`);
 * jobs > 1: Clang up to optimized IR, then the LLVM backend on `jobs` threads
 * over as many partitions of the module (llvm::splitCodeGen), which roughly
 * halves the compile time on two cores.  On success *obj (malloc'ed,
 * *obj_len bytes) is the object, or a bundle of objects ("RNCOBJS\0", u32
 * count, then u64 size + bytes each) that rnc_jit_load_object accepts; *diag
 * holds any warnings (or NULL). */
int rnc_jit_compile_object(const char *source, size_t len, const char *name,
                           const char *const *args, int nargs, int jobs, void **obj,
                           size_t *obj_len, char **diag);

/* Links an object (or bundle) into a new JIT session whose undefined symbols resolve
 * against the running process (dlsym). The bytes are copied. */
int rnc_jit_load_object(const void *obj, size_t len, rnc_jit **out, char **diag);

/* Address of a symbol defined by the loaded object (C name, unmangled), or
 * NULL with *diag set. */
void *rnc_jit_lookup(rnc_jit *jit, const char *symbol, char **diag);

/* Unloads the code: every pointer into it becomes invalid. NULL is fine. */
void rnc_jit_free(rnc_jit *jit);

/* Compile and load in one go, without the cache: the C API the tests use for
 * the shim alone.  include_dir is passed as -I; extra_args follow the
 * default flags ("-O3 -march=native -fopenmp -DRNC_NO_MAIN"). */
int rnc_jit_compile(const char *source, size_t len, const char *const *extra_args, int n,
                    const char *include_dir, rnc_jit **out, char **diag);

/* What the code generator depends on besides the source and the flags:
 * "llvm <version>; clang <version>; <triple>; cpu <name>; <+feature,-feature,...>"
 * (features sorted).  Malloc'ed. */
char *rnc_jit_host_id(void);

/* The clang executable path the driver is given (it locates Clang's resource
 * headers relative to it). */
const char *rnc_jit_clang_path(void);

/* ---- the command and the cache (jit.c) -------------------------------- */

/* What happened on the way to a loaded model, for messages and the tests. */
typedef struct {
    int cache_hits;        /* objects loaded from the cache */
    int cache_misses;      /* objects compiled (no usable entry) */
    int cache_corrupt;     /* entries found damaged, reported and rebuilt */
    int cache_write_failures;
    double compile_seconds;   /* Clang, on a miss: wall clock */
    double compile_cpu_seconds;   /* and CPU time, all threads */
    double load_seconds;      /* cache read + LLJIT link + lookup */
    char cache_path[4096];    /* the entry used or written ("" if caching is off) */
} rnc_jit_stats;

/* The directory for cached objects: $RNC_CACHE_DIR, else
 * $XDG_CACHE_HOME/rnc/jit, else $HOME/.cache/rnc/jit.  Malloc'ed, or NULL
 * when none can be determined (caching is then off). */
char *rnc_jit_cache_dir(void);

/* The compile flags: $RNC_JIT_CFLAGS split at white space if set, else the
 * defaults "-O3 -march=native -fopenmp"; then -DRNC_NO_MAIN and -I<include
 * dir> (compile_include_dir(): $RNC_INCLUDE_DIR, else an installed rnc's
 * PREFIX/include, else the source tree's include/ as built). Returns
 * the count; *args is malloc'ed (one block, free() it). */
int rnc_jit_flags(const char ***args);

/* Backend threads for a compile: $RNC_JIT_JOBS, else the CPUs this process
 * may run on, at most 8. */
int rnc_jit_jobs(void);

/* Source -> loaded code, through the cache: looks the object up under the
 * key (source, flags, headers, host id); on a miss or a damaged entry
 * compiles and stores it.  Returns 0 and sets *jit and *addr (the address of
 * `symbol`); else prints nothing and returns nonzero with *diag set.  stats
 * may be NULL. Damaged entries are reported on stderr. */
int rnc_jit_load_source(const char *source, size_t len, const char *name, const char *symbol,
                        rnc_jit **jit, void **addr, rnc_jit_stats *stats, char **diag);

/* `rnc train|eval|bench SPEC [-b BATCH] [--schedule S] [flags...]`:
 * argv[1] is the command.  Returns the process exit status (2: usage or no
 * JIT in this build, 1: failure). */
int rnc_jit_command(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
