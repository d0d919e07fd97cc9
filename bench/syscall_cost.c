/* What a system call costs on this machine: the floor under a pooler's CPU per transaction, where
 * each statement takes at least 4 (a receive and a send each way) and a pgbench -C login 9 more.
 *
 * Prints the time of a getppid (a call that does no work: entering and leaving the kernel, which
 * page-table isolation and a VM make dear), what an epoll_ctl DEL adds to a socket's life, as
 * sluiced makes one before each close (net/poll_socket.cpp says why it must), and whether the pages
 * a process touches after a system call cost it page walks: the same chain of loads through 64
 * pages on 4 KiB pages and inside 2 MiB ones, after a getppid each time, and as a control through
 * more pages than the TLB holds, with no system call, where 2 MiB pages should save walks if the
 * hardware maps them as such (under a hypervisor the guest cannot tell: README "Performance").
 *
 *   cc -O2 -o /tmp/syscall_cost bench/syscall_cost.c && /tmp/syscall_cost
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void die(const char* what) {
  perror(what);
  exit(1);
}

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* A socket pair made, its first end watched, both closed; with_del: taken out of the epoll first. */
static double socket_life_ns(int epoll_fd, int rounds, int with_del) {
  const double start = now_ns();
  for (int i = 0; i < rounds; i++) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) die("socketpair");
    struct epoll_event event = {.events = EPOLLIN};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, pair[0], &event) != 0) die("epoll_ctl ADD");
    if (with_del && epoll_ctl(epoll_fd, EPOLL_CTL_DEL, pair[0], NULL) != 0) die("epoll_ctl DEL");
    close(pair[0]);
    close(pair[1]);
  }
  return (now_ns() - start) / rounds;
}

static int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

enum { kRegionBytes = 64 << 20, kHugePage = 2 << 20, kPage = 4096, kLine = 64 };

/* 64 MiB of memory at a 2 MiB boundary, in transparent huge pages or kept in 4 KiB ones; NULL where
 * the kernel has no transparent huge pages. */
static char* region(int huge) {
  char* raw =
      mmap(NULL, kRegionBytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) die("mmap");
  char* base = (char*)(((uintptr_t)raw + kHugePage - 1) & ~(uintptr_t)(kHugePage - 1));
  if (madvise(base, kRegionBytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
    if (errno != EINVAL) die("madvise");
    return NULL;  // a kernel without transparent huge pages
  }
  memset(base, 1, kRegionBytes);
  return base;
}

/* AnonHugePages of the mapping that starts at base (madvise made it a mapping of its own). */
static long huge_kb_at(const char* base) {
  FILE* smaps = fopen("/proc/self/smaps", "r");
  if (smaps == NULL) die("/proc/self/smaps");
  char line[512];
  int in_it = 0;
  long kb = 0;
  while (fgets(line, sizeof line, smaps) != NULL) {
    unsigned long from, to;
    if (sscanf(line, "%lx-%lx ", &from, &to) == 2) {
      in_it = from == (uintptr_t)base;
    } else if (in_it && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1) {
      break;
    }
  }
  fclose(smaps);
  return kb;
}

/* A page's line of the chain: at a pseudo-random place in the page, the same in both regions, so
 * that the lines spread over the caches' sets in both. */
static char* line_of(char* base, int page) {
  return base + (size_t)page * kPage + (size_t)(((unsigned)page * 2654435761u) >> 26) * kLine;
}

/* One line on each of the first `pages` 4 KiB pages of base, each holding the next one's address,
 * so that each load waits for the last and walks cannot overlap; the pages in a shuffled order, the
 * same in both regions, so that no prefetcher guesses the next one. One cycle through every page. */
static void link_chain(char* base, int pages) {
  static int order[kRegionBytes / kPage];
  for (int i = 0; i < pages; i++) order[i] = i;
  srand(1);
  for (int i = pages - 1; i > 0; i--) {
    const int j = rand() % (i + 1), swapped = order[i];
    order[i] = order[j];
    order[j] = swapped;
  }
  for (int i = 0; i < pages; i++) *(char**)line_of(base, order[i]) = line_of(base, order[(i + 1) % pages]);
}

static double chain_ns(char* base, int pages, int rounds, int after_getppid) {
  uintptr_t last = 0;
  const double start = now_ns();
  for (int r = 0; r < rounds; r++) {
    if (after_getppid) {
      syscall(SYS_getppid);
    } else {
      __asm__ volatile("" ::: "memory");  // the loads of each round are made again
    }
    char* at = line_of(base, 0);
    for (int i = 0; i < pages; i++) at = *(char**)at;
    last += (uintptr_t)at;
  }
  const double ns = (now_ns() - start) / rounds;
  if (last == 1) puts("");  // uses the result: the loads are not optimised away
  return ns;
}

/* Alternating batches, each region first in turn: the medians of a chain's time on each, and of what
 * 4 KiB pages add a page, with the quartiles of that. */
static void page_cost(char* small, char* huge, int pages, int rounds, int after_getppid) {
  enum { kBatches = 25 };
  link_chain(small, pages);
  link_chain(huge, pages);
  double on_small[kBatches], on_huge[kBatches], more[kBatches];
  for (int b = 0; b < kBatches; b++) {
    const int small_first = b % 2 == 0;
    if (small_first) on_small[b] = chain_ns(small, pages, rounds, after_getppid);
    on_huge[b] = chain_ns(huge, pages, rounds, after_getppid);
    if (!small_first) on_small[b] = chain_ns(small, pages, rounds, after_getppid);
    more[b] = (on_small[b] - on_huge[b]) / pages;
  }
  qsort(on_small, kBatches, sizeof(double), by_value);
  qsort(on_huge, kBatches, sizeof(double), by_value);
  qsort(more, kBatches, sizeof(double), by_value);
  printf(
      "%s through %d pages: %.0f ns on 4 KiB pages, %.0f in 2 MiB ones; %.1f ns a page more on 4 KiB "
      "pages (quartiles %.1f, %.1f)\n",
      after_getppid ? "a getppid and a chain of loads" : "a chain of loads, more than the TLB holds,", pages,
      on_small[kBatches / 2], on_huge[kBatches / 2], more[kBatches / 2], more[kBatches / 4],
      more[3 * kBatches / 4]);
}

int main(void) {
  const int calls = 1000000;
  double start = now_ns();
  for (int i = 0; i < calls; i++) syscall(SYS_getppid);
  printf("getppid: %.0f ns a call\n", (now_ns() - start) / calls);

  /* Alternating batches, and the median of each and of their differences: a shared machine's
   * noise moves single batches by more than the DEL costs. */
  enum { kBatches = 9, kRounds = 50000 };
  const int epoll_fd = epoll_create1(0);
  if (epoll_fd < 0) die("epoll_create1");
  double without[kBatches], with[kBatches], added[kBatches];
  for (int b = 0; b < kBatches; b++) {
    without[b] = socket_life_ns(epoll_fd, kRounds, 0);
    with[b] = socket_life_ns(epoll_fd, kRounds, 1);
    added[b] = with[b] - without[b];
  }
  qsort(without, kBatches, sizeof(double), by_value);
  qsort(with, kBatches, sizeof(double), by_value);
  qsort(added, kBatches, sizeof(double), by_value);
  printf(
      "socket pair, watched, closed: %.0f ns; with an EPOLL_CTL_DEL before the close: %.0f ns "
      "(the DEL adds %.0f, medians of %d batches)\n",
      without[kBatches / 2], with[kBatches / 2], added[kBatches / 2], kBatches);

  char* small = region(0);
  char* huge = region(1);
  if (small == NULL || huge == NULL || huge_kb_at(huge) < kRegionBytes / 1024) {
    printf(
        "the 2 MiB region is not all in transparent huge pages (/sys/kernel/mm/transparent_hugepage): "
        "no TLB measure\n");
    return 0;
  }
  page_cost(small, huge, 64, 100000, 1);
  page_cost(small, huge, 8192, 300, 0);
  return 0;
}
