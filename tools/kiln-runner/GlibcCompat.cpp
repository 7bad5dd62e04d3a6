//===- GlibcCompat.cpp - kiln-runner's glibc 2.28 floor -------------------===//
//
// kiln-runner travels to GPU machines whose glibc is older than the build
// machine's. A binary linked against glibc 2.3x asks for the newest version
// of each symbol it uses (pthread_* and dl* moved into libc in 2.34,
// __libc_start_main got a 2.34 version, fstat became a real function in
// 2.33, log2 a new version in 2.29), and the static libstdc++/libgcc add
// __libc_single_threaded (2.32), _dl_find_object (2.35) and arc4random
// (2.36). CMake links the runner with --wrap=SYMBOL for each of these, so
// every reference lands on a __wrap_SYMBOL below, which calls the version
// glibc 2.28 already had (.symver binds NAME@GLIBC_2.2.5) or does the job
// with what 2.28 has. On a newer glibc those versions are compat symbols of
// the same functions. scripts/glibc_needed.py reads the result off the
// binary; test/e2e/test_bundle.py holds it at 2.28.
//
// Glibc before 2.34 keeps pthread_* in libpthread.so.0 and dl* in
// libdl.so.2, so the runner also records those two as needed libraries
// (on 2.34 and later they are empty stubs).
//
//===----------------------------------------------------------------------===//
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>

#define KILN_OLD_SYMBOL(local, name)                                           \
  __asm__(".symver " #local ", " #name "@GLIBC_2.2.5")

extern "C" {

// --- Functions glibc 2.28 had under an older version: forward to it. ---

KILN_OLD_SYMBOL(old_log2, log2);
double old_log2(double);
double __wrap_log2(double x) { return old_log2(x); }

KILN_OLD_SYMBOL(old_pthread_sigmask, pthread_sigmask);
int old_pthread_sigmask(int, const sigset_t *, sigset_t *);
int __wrap_pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
  return old_pthread_sigmask(how, set, old);
}

KILN_OLD_SYMBOL(old_pthread_create, pthread_create);
int old_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *),
                       void *);
int __wrap_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                          void *(*start)(void *), void *arg) {
  return old_pthread_create(thread, attr, start, arg);
}

KILN_OLD_SYMBOL(old_pthread_detach, pthread_detach);
int old_pthread_detach(pthread_t);
int __wrap_pthread_detach(pthread_t thread) {
  return old_pthread_detach(thread);
}

KILN_OLD_SYMBOL(old_pthread_join, pthread_join);
int old_pthread_join(pthread_t, void **);
int __wrap_pthread_join(pthread_t thread, void **result) {
  return old_pthread_join(thread, result);
}

KILN_OLD_SYMBOL(old_pthread_once, pthread_once);
int old_pthread_once(pthread_once_t *, void (*)(void));
int __wrap_pthread_once(pthread_once_t *once, void (*init)(void)) {
  return old_pthread_once(once, init);
}

KILN_OLD_SYMBOL(old_pthread_key_create, pthread_key_create);
int old_pthread_key_create(pthread_key_t *, void (*)(void *));
int __wrap_pthread_key_create(pthread_key_t *key, void (*destroy)(void *)) {
  return old_pthread_key_create(key, destroy);
}
KILN_OLD_SYMBOL(old_pthread_key_delete, pthread_key_delete);
int old_pthread_key_delete(pthread_key_t);
int __wrap_pthread_key_delete(pthread_key_t key) {
  return old_pthread_key_delete(key);
}

// libstdc++ tests this one's address to see whether threads are linked in.
int __wrap___pthread_key_create(pthread_key_t *key, void (*destroy)(void *)) {
  return old_pthread_key_create(key, destroy);
}

KILN_OLD_SYMBOL(old_pthread_getspecific, pthread_getspecific);
void *old_pthread_getspecific(pthread_key_t);
void *__wrap_pthread_getspecific(pthread_key_t key) {
  return old_pthread_getspecific(key);
}

KILN_OLD_SYMBOL(old_pthread_setspecific, pthread_setspecific);
int old_pthread_setspecific(pthread_key_t, const void *);
int __wrap_pthread_setspecific(pthread_key_t key, const void *value) {
  return old_pthread_setspecific(key, value);
}

KILN_OLD_SYMBOL(old_dlopen, dlopen);
void *old_dlopen(const char *, int);
void *__wrap_dlopen(const char *file, int mode) { return old_dlopen(file, mode); }

KILN_OLD_SYMBOL(old_dlsym, dlsym);
void *old_dlsym(void *, const char *);
void *__wrap_dlsym(void *handle, const char *name) {
  return old_dlsym(handle, name);
}

KILN_OLD_SYMBOL(old_dlclose, dlclose);
int old_dlclose(void *);
int __wrap_dlclose(void *handle) { return old_dlclose(handle); }

KILN_OLD_SYMBOL(old_dlerror, dlerror);
char *old_dlerror(void);
char *__wrap_dlerror(void) { return old_dlerror(); }

// Before 2.33 fstat was an inline call of __fxstat64 with the structure's
// version (1 on x86-64).
KILN_OLD_SYMBOL(old_fxstat64, __fxstat64);
int old_fxstat64(int, int, struct stat64 *);
int __wrap_fstat64(int fd, struct stat64 *buffer) {
  return old_fxstat64(1, fd, buffer);
}
int __wrap_fstat(int fd, struct stat *buffer) {
  static_assert(sizeof(struct stat) == sizeof(struct stat64),
                "x86-64: stat and stat64 are one structure");
  return old_fxstat64(1, fd, reinterpret_cast<struct stat64 *>(buffer));
}

// --- Program start. ---

// crt1.o from glibc 2.34 passes no init function and expects
// __libc_start_main@GLIBC_2.34 to run the program's constructors itself;
// glibc before 2.34 only calls the init function it is given. So give one:
// what libc_nonshared's __libc_csu_init did (the dynamic loader runs the
// preinit array). Newer glibc calls a given init function instead of its
// own, so the constructors run once either way.
void _init(void);
extern void (*__init_array_start[])(int, char **, char **)
    __attribute__((visibility("hidden")));
extern void (*__init_array_end[])(int, char **, char **)
    __attribute__((visibility("hidden")));
static void runConstructors(int argc, char **argv, char **envp) {
  _init();
  for (auto *constructor = __init_array_start; constructor != __init_array_end;
       ++constructor)
    (*constructor)(argc, argv, envp);
}

using MainFn = int (*)(int, char **, char **);
using InitFn = void (*)(int, char **, char **);
KILN_OLD_SYMBOL(old_libc_start_main, __libc_start_main);
int old_libc_start_main(MainFn, int, char **, InitFn, void (*)(void),
                        void (*)(void), void *);
int __wrap___libc_start_main(MainFn main, int argc, char **argv, InitFn init,
                             void (*fini)(void), void (*rtldFini)(void),
                             void *stackEnd) {
  return old_libc_start_main(main, argc, argv, init ? init : runConstructors,
                             fini, rtldFini, stackEnd);
}

// --- What the static libstdc++ and libgcc ask of newer glibc. ---

// libstdc++ skips atomic reference counts when this says single-threaded;
// "not single-threaded" is always correct.
char __wrap___libc_single_threaded = 0;

// std::random_device's default source.
uint32_t __wrap_arc4random(void) {
  uint32_t value = 0;
  getentropy(&value, sizeof value);
  return value;
}

// libgcc's unwinder finds the unwind tables of the object holding a code
// address with this (and does not fall back when it fails). Before 2.35 it
// walked the loaded objects with dl_iterate_phdr; so does this.
#ifdef DLFO_STRUCT_HAS_EH_DBASE // glibc 2.35 headers and later
struct FindObject {
  uintptr_t pc;
  dl_find_object *result;
  bool found;
};

static int findObject(dl_phdr_info *info, size_t, void *data) {
  auto *search = static_cast<FindObject *>(data);
  uintptr_t low = UINTPTR_MAX, high = 0;
  const ElfW(Phdr) *ehFrame = nullptr;
  bool contains = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) &header = info->dlpi_phdr[i];
    if (header.p_type == PT_GNU_EH_FRAME)
      ehFrame = &header;
    if (header.p_type != PT_LOAD)
      continue;
    uintptr_t start = info->dlpi_addr + header.p_vaddr;
    uintptr_t end = start + header.p_memsz;
    low = start < low ? start : low;
    high = end > high ? end : high;
    contains |= search->pc >= start && search->pc < end;
  }
  if (!contains)
    return 0;
  std::memset(search->result, 0, sizeof *search->result);
  search->result->dlfo_map_start = reinterpret_cast<void *>(low);
  search->result->dlfo_map_end = reinterpret_cast<void *>(high);
  if (ehFrame)
    search->result->dlfo_eh_frame =
        reinterpret_cast<void *>(info->dlpi_addr + ehFrame->p_vaddr);
  search->found = true;
  return 1;
}

int __wrap__dl_find_object(void *pc, dl_find_object *result) {
  FindObject search{reinterpret_cast<uintptr_t>(pc), result, false};
  dl_iterate_phdr(findObject, &search);
  return search.found ? 0 : -1;
}
#endif

} // extern "C"
