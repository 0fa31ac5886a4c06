/*
 * xstate-shim.c -- LD_PRELOAD shim that lets Debian 12's user-mode-linux (6.1) run on hosts whose
 * XSAVE area is larger than the one UML was compiled for (AVX-512, AMX, PKRU: recent Xeons).
 *
 * The problem: UML saves and restores a guest process's FPU state with
 * ptrace(PTRACE_GETREGSET / PTRACE_SETREGSET, NT_X86_XSTATE) on a buffer of a size fixed at build
 * time (struct _xstate: legacy area + header + AVX = 832 bytes). The host kernel accepts a
 * SETREGSET only with the whole standard-format XSAVE buffer (its fpu_user_cfg.max_size), so on
 * such hosts every SETREGSET fails with EFAULT and the guest's init dies at once:
 *   userspace - ptrace set fp regs failed, errno = 14
 *   Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b
 * (Fixed upstream in 6.13, "um: switch to regset API and depend on XSTATE"; not in Debian 12.)
 *
 * The fix here: those two ptrace requests are widened to the host's size. A GETREGSET reads the
 * whole area, gives UML its part and keeps the rest (the "tail": AVX-512, PKRU, AMX...) keyed
 * by UML's buffer, which is per guest thread (its pt_regs); the SETREGSET on that buffer puts the
 * tail back, so the guest's threads keep their full register state across context switches. A
 * buffer never read before (a new thread or exec: UML copied it) gets the tail in its initial
 * state (the feature bits cleared), which is what a fresh thread may assume. Every other ptrace
 * request goes straight to libc. UML's kernel runs its tasks on one host thread, so no locking.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define NT_X86_XSTATE 0x202
/* Legacy area (512) + XSAVE header (64): the smallest buffer that has the header. */
#define XSAVE_HDR_END 576
#define XSTATE_BV_OFFSET 512

static size_t host_size;      /* bytes of the host's standard-format XSAVE area; 0 = not known yet */
static int host_size_failed;  /* GETREGSET with a large buffer failed: pass everything through */
static uint8_t *scratch;

struct entry { const void *key; uint8_t *tail; };
static struct entry *table;
static size_t cap, used;

static size_t slot_of(const void *key, size_t c) {
  uintptr_t h = (uintptr_t)key;
  h ^= h >> 17; h *= 0x9E3779B97F4A7C15ull; h ^= h >> 29;
  return (size_t)h & (c - 1);
}

static struct entry *find(const void *key, int create) {
  if (create && (used + 1) * 2 > cap) {
    size_t ncap = cap ? cap * 2 : 1024;
    struct entry *nt = calloc(ncap, sizeof *nt);
    if (!nt) return NULL;
    for (size_t i = 0; i < cap; i++) {
      if (!table[i].key) continue;
      size_t j = slot_of(table[i].key, ncap);
      while (nt[j].key) j = (j + 1) & (ncap - 1);
      nt[j] = table[i];
    }
    free(table);
    table = nt;
    cap = ncap;
  }
  if (!cap) return NULL;
  for (size_t j = slot_of(key, cap);; j = (j + 1) & (cap - 1)) {
    if (table[j].key == key) return &table[j];
    if (!table[j].key) {
      if (!create) return NULL;
      table[j].key = key;
      table[j].tail = NULL;
      used++;
      return &table[j];
    }
  }
}

static long raw_ptrace(long req, pid_t pid, long addr, void *data) {
  return syscall(SYS_ptrace, req, pid, addr, data);
}

/* The host's XSAVE size, learnt from the first GETREGSET (the kernel reports what it wrote). */
static size_t xsave_size(pid_t pid) {
  if (host_size || host_size_failed) return host_size;
  size_t big = 1 << 16;
  uint8_t *b = malloc(big);
  struct iovec iov = { b, big };
  if (!b || raw_ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, &iov) != 0 || iov.iov_len < XSAVE_HDR_END) {
    free(b);
    host_size_failed = 1;
    return 0;
  }
  host_size = iov.iov_len;
  scratch = b;
  return host_size;
}

/* Marks the state components that lie (partly) beyond `n` as in their initial state. */
static void init_tail(uint8_t *buf, size_t n) {
  uint64_t bv;
  memcpy(&bv, buf + XSTATE_BV_OFFSET, sizeof bv);
  for (unsigned i = 2; i < 63; i++) {
    unsigned eax, ebx, ecx, edx;
    if (!(bv & (1ull << i))) continue;
    __cpuid_count(0xd, i, eax, ebx, ecx, edx);
    if (eax == 0 || (ecx & 1)) continue; /* not a user state component */
    if ((size_t)ebx + eax > n) bv &= ~(1ull << i);
  }
  memcpy(buf + XSTATE_BV_OFFSET, &bv, sizeof bv);
  memset(buf + n, 0, host_size - n);
}

static long (*real_ptrace)(int, ...);

long ptrace(enum __ptrace_request request, ...) {
  va_list ap;
  va_start(ap, request);
  pid_t pid = va_arg(ap, pid_t);
  void *addr = va_arg(ap, void *);
  void *data = va_arg(ap, void *);
  va_end(ap);
  if (!real_ptrace) real_ptrace = (long (*)(int, ...))dlsym(RTLD_NEXT, "ptrace");

  if ((request == PTRACE_GETREGSET || request == PTRACE_SETREGSET) && (long)addr == NT_X86_XSTATE && data) {
    struct iovec *iov = data;
    size_t n = iov->iov_len, hs = xsave_size(pid);
    if (hs && n < hs && n >= XSAVE_HDR_END) {
      struct iovec wide = { scratch, hs };
      if (request == PTRACE_GETREGSET) {
        if (raw_ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, &wide) != 0) return -1;
        if (wide.iov_len < hs) memset(scratch + wide.iov_len, 0, hs - wide.iov_len);
        memcpy(iov->iov_base, scratch, n);
        struct entry *e = find(iov->iov_base, 1);
        if (e) {
          if (!e->tail) e->tail = malloc(hs - n);
          if (e->tail) memcpy(e->tail, scratch + n, hs - n);
        }
        return 0;
      }
      memcpy(scratch, iov->iov_base, n);
      struct entry *e = find(iov->iov_base, 0);
      if (e && e->tail) memcpy(scratch + n, e->tail, hs - n);
      else init_tail(scratch, n);
      return raw_ptrace(PTRACE_SETREGSET, pid, NT_X86_XSTATE, &wide);
    }
  }
  return real_ptrace(request, pid, addr, data);
}
