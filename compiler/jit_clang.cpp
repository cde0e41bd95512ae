// jit_clang.cpp - the C shim over Clang (C -> object in memory) and LLVM ORC
// (object -> code in this process).  See jit_clang.h and docs/jit.md.
//
// Compile: the clang driver turns ordinary flags into a cc1 command line
// (that is what finds the system and resource headers and resolves
// -march=native); a CompilerInstance runs EmitObjAction on it with the
// source as an in-memory input and the object going to an in-memory stream.
// Load: an LLJIT whose main JITDylib falls back on the process's symbols.
#include "jit_clang.h"

#include <clang/Basic/Diagnostic.h>
#include <clang/Basic/DiagnosticOptions.h>
#include <clang/Basic/Version.h>
#include <clang/CodeGen/CodeGenAction.h>
#include <clang/Driver/Compilation.h>
#include <clang/Driver/Driver.h>
#include <clang/Driver/Job.h>
#include <clang/Driver/Tool.h>
#include <clang/Frontend/CompilerInstance.h>
#include <clang/Frontend/CompilerInvocation.h>
#include <clang/Frontend/FrontendOptions.h>
#include <clang/Frontend/TextDiagnosticPrinter.h>

#include <llvm/ADT/SmallString.h>
#include <llvm/CodeGen/ParallelCG.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>
#include <llvm/ADT/StringMap.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/Support/Host.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#ifndef RNC_CLANG_PATH
#define RNC_CLANG_PATH "/usr/lib/llvm-14/bin/clang"
#endif
#ifndef RNC_INCLUDE_DIR
#define RNC_INCLUDE_DIR "include"
#endif

struct rnc_jit {
    std::unique_ptr<llvm::orc::LLJIT> jit;
};

namespace {

char *dup_string(const std::string &s) {
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (p)
        std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

void set_diag(char **diag, const std::string &s) {
    if (diag)
        *diag = s.empty() ? nullptr : dup_string(s);
}

void init_llvm() {
    static std::once_flag once;
    std::call_once(once, [] {
        llvm::InitializeNativeTarget();
        llvm::InitializeNativeTargetAsmPrinter();
        llvm::InitializeNativeTargetAsmParser();
    });
}

// Driver flags -> cc1 arguments for one compile of "-" (standard input, as
// far as the driver is concerned; the real input is a memory buffer).
bool cc1_args(const std::vector<const char *> &flags, clang::DiagnosticsEngine &diags,
              std::vector<std::string> &out) {
    clang::driver::Driver driver(rnc_jit_clang_path(), llvm::sys::getProcessTriple(), diags);
    driver.setCheckInputsExist(false);
    std::vector<const char *> argv;
    argv.push_back(rnc_jit_clang_path());
    argv.push_back("-c");
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back("-x");
    argv.push_back("c");
    argv.push_back("-");
    std::unique_ptr<clang::driver::Compilation> comp(driver.BuildCompilation(argv));
    if (!comp || diags.hasErrorOccurred())
        return false;
    const clang::driver::JobList &jobs = comp->getJobs();
    if (jobs.size() != 1 || !llvm::isa<clang::driver::Command>(*jobs.begin())) {
        diags.Report(diags.getCustomDiagID(clang::DiagnosticsEngine::Error,
                                           "these flags do not make one compile job: %0"))
            << "rnc JIT";
        return false;
    }
    const clang::driver::Command &cmd = llvm::cast<clang::driver::Command>(*jobs.begin());
    if (std::strcmp(cmd.getCreator().getName(), "clang") != 0) {
        diags.Report(diags.getCustomDiagID(clang::DiagnosticsEngine::Error,
                                           "the driver chose tool '%0', not clang's cc1"))
            << cmd.getCreator().getName();
        return false;
    }
    for (const char *a : cmd.getArguments())
        out.emplace_back(a);
    return true;
}

// Several objects travel as one blob: "RNCOBJS\0", u32 count, then per
// object u64 size and the bytes.  A plain ELF object is a blob of one.
const char kBlobMagic[8] = {'R', 'N', 'C', 'O', 'B', 'J', 'S', '\0'};

void blob_append(std::string &blob, const void *p, size_t n) { blob.append(static_cast<const char *>(p), n); }

bool blob_split(const char *p, size_t len, std::vector<llvm::StringRef> &out) {
    if (len < 8 || std::memcmp(p, kBlobMagic, 8) != 0) {
        out.emplace_back(p, len);
        return true;
    }
    size_t at = 8;
    uint32_t count;
    if (len - at < sizeof count)
        return false;
    std::memcpy(&count, p + at, sizeof count);
    at += sizeof count;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t n;
        if (len - at < sizeof n)
            return false;
        std::memcpy(&n, p + at, sizeof n);
        at += sizeof n;
        if (len - at < n)
            return false;
        out.emplace_back(p + at, n);
        at += n;
    }
    return at == len;
}

// The backend as clang would set it up for this invocation (target, CPU,
// features, relocation model, -O level), on `jobs` partitions of the module.
bool parallel_codegen(clang::CompilerInstance &ci, llvm::Module &module, int jobs, std::string &blob,
                      llvm::raw_ostream &diag_os) {
    std::string error;
    const std::string triple = module.getTargetTriple();
    const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
    if (!target) {
        diag_os << "rnc: no LLVM target for " << triple << ": " << error << "\n";
        return false;
    }
    const clang::TargetOptions &topts = ci.getTargetOpts();
    const clang::CodeGenOptions &cg = ci.getCodeGenOpts();
    std::string features = llvm::join(topts.Features, ",");
    llvm::CodeGenOpt::Level level = cg.OptimizationLevel >= 3   ? llvm::CodeGenOpt::Aggressive
                                    : cg.OptimizationLevel == 0 ? llvm::CodeGenOpt::None
                                                                : llvm::CodeGenOpt::Default;
    llvm::TargetOptions options;
    options.UseInitArray = true;
    options.FunctionSections = cg.FunctionSections;
    options.DataSections = cg.DataSections;
    llvm::Reloc::Model reloc = cg.RelocationModel;
    auto factory = [&]() {
        return std::unique_ptr<llvm::TargetMachine>(target->createTargetMachine(
            triple, topts.CPU, features, options, reloc, llvm::None, level));
    };
    std::vector<llvm::SmallVector<char, 0>> objects(jobs);
    std::vector<std::unique_ptr<llvm::raw_svector_ostream>> streams;
    std::vector<llvm::raw_pwrite_stream *> outs;
    for (auto &o : objects) {
        streams.push_back(std::make_unique<llvm::raw_svector_ostream>(o));
        outs.push_back(streams.back().get());
    }
    llvm::splitCodeGen(module, outs, {}, factory, llvm::CGFT_ObjectFile, /*PreserveLocals=*/false);
    blob_append(blob, kBlobMagic, 8);
    uint32_t count = 0;
    for (auto &o : objects)
        count += !o.empty();
    blob_append(blob, &count, sizeof count);
    for (auto &o : objects) {
        if (o.empty())
            continue;   // a partition with nothing in it
        uint64_t n = o.size();
        blob_append(blob, &n, sizeof n);
        blob_append(blob, o.data(), o.size());
    }
    return count > 0;
}

}  // namespace

extern "C" const char *rnc_jit_clang_path(void) { return RNC_CLANG_PATH; }

extern "C" int rnc_jit_compile_object(const char *source, size_t len, const char *name,
                                      const char *const *args, int nargs, int jobs, void **obj,
                                      size_t *obj_len, char **diag) {
    init_llvm();
    *obj = nullptr;
    *obj_len = 0;
    std::string diag_text;
    llvm::raw_string_ostream diag_os(diag_text);
    llvm::IntrusiveRefCntPtr<clang::DiagnosticOptions> diag_opts(new clang::DiagnosticOptions);
    diag_opts->ShowColors = false;
    auto *printer = new clang::TextDiagnosticPrinter(diag_os, diag_opts.get());
    llvm::IntrusiveRefCntPtr<clang::DiagnosticIDs> diag_ids(new clang::DiagnosticIDs);
    clang::DiagnosticsEngine diags(diag_ids, diag_opts, printer, /*ShouldOwnClient=*/true);

    std::vector<const char *> flags(args, args + nargs);
    std::vector<std::string> cc1;
    if (!cc1_args(flags, diags, cc1)) {
        diag_os.flush();
        set_diag(diag, diag_text.empty() ? "rnc: the clang driver rejected the JIT flags" : diag_text);
        return 1;
    }
    std::vector<const char *> cc1_ptrs;
    for (const std::string &a : cc1)
        cc1_ptrs.push_back(a.c_str());

    clang::CompilerInstance ci;
    auto invocation = std::make_shared<clang::CompilerInvocation>();
    if (!clang::CompilerInvocation::CreateFromArgs(*invocation, cc1_ptrs, diags, rnc_jit_clang_path())) {
        diag_os.flush();
        set_diag(diag, diag_text.empty() ? "rnc: bad cc1 arguments" : diag_text);
        return 1;
    }
    // The source comes from memory and the object goes to memory.
    std::unique_ptr<llvm::MemoryBuffer> input =
        llvm::MemoryBuffer::getMemBuffer(llvm::StringRef(source, len), name ? name : "rnc-jit.c",
                                         /*RequiresNullTerminator=*/false);
    clang::FrontendOptions &fe = invocation->getFrontendOpts();
    fe.Inputs.clear();
    fe.Inputs.push_back(clang::FrontendInputFile(input->getMemBufferRef(),
                                                 clang::InputKind(clang::Language::C)));
    fe.OutputFile = "/dev/null";   // not opened: the output stream set below is used instead
    fe.DisableFree = false;        // the driver's -disable-free would leak every compile's AST
    ci.setInvocation(std::move(invocation));
    ci.createDiagnostics(printer, /*ShouldOwnClient=*/false);
    ci.setVerboseOutputStream(diag_os);   // "N errors generated." goes with the diagnostics

    std::string blob;
    bool ok;
    if (jobs <= 1) {
        // Clang's own path: the object is byte for byte what `clang -c` makes.
        llvm::SmallVector<char, 0> object;
        ci.setOutputStream(std::make_unique<llvm::raw_svector_ostream>(object));
        clang::EmitObjAction action;
        ok = ci.ExecuteAction(action) && !ci.getDiagnostics().hasErrorOccurred() && !object.empty();
        blob.assign(object.data(), object.size());
    } else {
        // Clang up to optimized IR, then the backend (most of the time) on
        // `jobs` threads, one module partition each.
        llvm::LLVMContext context;
        clang::EmitLLVMOnlyAction action(&context);
        ok = ci.ExecuteAction(action) && !ci.getDiagnostics().hasErrorOccurred();
        std::unique_ptr<llvm::Module> module = ok ? action.takeModule() : nullptr;
        ok = ok && module && parallel_codegen(ci, *module, jobs, blob, diag_os);
    }
    diag_os.flush();
    if (!ok) {
        set_diag(diag, diag_text.empty() ? "rnc: clang failed without a diagnostic" : diag_text);
        return 1;
    }
    void *copy = std::malloc(blob.size());
    if (!copy) {
        set_diag(diag, "rnc: out of memory");
        return 1;
    }
    std::memcpy(copy, blob.data(), blob.size());
    *obj = copy;
    *obj_len = blob.size();
    set_diag(diag, diag_text);
    return 0;
}

extern "C" int rnc_jit_load_object(const void *obj, size_t len, rnc_jit **out, char **diag) {
    init_llvm();
    *out = nullptr;
    auto jit = llvm::orc::LLJITBuilder().create();
    if (!jit) {
        set_diag(diag, "rnc: cannot start the JIT: " + llvm::toString(jit.takeError()));
        return 1;
    }
    auto gen = llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(
        (*jit)->getDataLayout().getGlobalPrefix());
    if (!gen) {
        set_diag(diag, "rnc: cannot search the process's symbols: " + llvm::toString(gen.takeError()));
        return 1;
    }
    (*jit)->getMainJITDylib().addGenerator(std::move(*gen));
    std::vector<llvm::StringRef> objects;
    if (!blob_split(static_cast<const char *>(obj), len, objects)) {
        set_diag(diag, "rnc: malformed object bundle");
        return 1;
    }
    for (size_t i = 0; i < objects.size(); i++) {
        auto buf = llvm::MemoryBuffer::getMemBufferCopy(objects[i], "rnc-jit-" + std::to_string(i) + ".o");
        if (llvm::Error err = (*jit)->addObjectFile(std::move(buf))) {
            set_diag(diag, "rnc: the JIT rejected the object: " + llvm::toString(std::move(err)));
            return 1;
        }
    }
    auto *handle = new rnc_jit;
    handle->jit = std::move(*jit);
    *out = handle;
    return 0;
}

extern "C" void *rnc_jit_lookup(rnc_jit *jit, const char *symbol, char **diag) {
    // Lookup links the object (relocations against libc, libm, libomp), so
    // an unresolved symbol shows up here.
    auto sym = jit->jit->lookup(symbol);
    if (!sym) {
        set_diag(diag, std::string("rnc: JIT lookup of ") + symbol + ": " + llvm::toString(sym.takeError()));
        return nullptr;
    }
    return reinterpret_cast<void *>(static_cast<uintptr_t>(sym->getAddress()));
}

extern "C" void rnc_jit_free(rnc_jit *jit) { delete jit; }

extern "C" int rnc_jit_compile(const char *source, size_t len, const char *const *extra_args, int n,
                               const char *include_dir, rnc_jit **out, char **diag) {
    *out = nullptr;
    std::string inc = std::string("-I") + (include_dir ? include_dir : RNC_INCLUDE_DIR);
    std::vector<const char *> args = {"-O3", "-march=native", "-fopenmp", "-DRNC_NO_MAIN", inc.c_str()};
    for (int i = 0; i < n; i++)
        args.push_back(extra_args[i]);
    void *obj;
    size_t obj_len;
    char *warnings = nullptr;
    if (rnc_jit_compile_object(source, len, "rnc-jit.c", args.data(), (int)args.size(), 1, &obj, &obj_len,
                               diag ? diag : &warnings))
        return 1;
    std::free(warnings);
    if (diag) {
        std::free(*diag);
        *diag = nullptr;
    }
    int rc = rnc_jit_load_object(obj, obj_len, out, diag);
    std::free(obj);
    return rc;
}

extern "C" char *rnc_jit_host_id(void) {
    std::string id = "llvm " LLVM_VERSION_STRING "; " + clang::getClangFullVersion() + "; " +
                     llvm::sys::getProcessTriple() + "; cpu " + llvm::sys::getHostCPUName().str() + ";";
    llvm::StringMap<bool> features;
    std::vector<std::string> list;
    if (llvm::sys::getHostCPUFeatures(features))
        for (const auto &f : features)
            list.push_back((f.getValue() ? "+" : "-") + f.getKey().str());
    std::sort(list.begin(), list.end());
    for (const std::string &f : list)
        id += " " + f;
    return dup_string(id);
}
