/* What a system call costs on this machine: the floor under a pooler's CPU per transaction, where
 * each statement takes at least 4 (a receive and a send each way) and a pgbench -C login 9 more.
 *
 * Prints the time of a getppid (a call that does no work: entering and leaving the kernel, which
 * page-table isolation and a VM make dear) and how getrusage (as /proc) books it between user and
 * system time (a pooler's user time includes the part of its calls booked as user), what an
 * epoll_ctl DEL adds to a socket's life, as sluiced makes one before each close
 * (net/poll_socket.cpp says why it must), and whether the pages
 * a process touches after a system call cost it page walks: 64 loads on one page and on 64 pages,
 * after a getppid and without one (bench/HISTORY.md, "Each page touched after a system call costs
 * a walk here"); then the same chain of loads through 64 pages on 4 KiB pages and inside 2 MiB
 * ones, after a getppid each time, and as a control through more pages than the TLB holds, with no
 * system call, where 2 MiB pages should save walks if the hardware maps them as such (under a
 * hypervisor the guest cannot tell: bench/HISTORY.md, "Pages touched between system calls").
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
#include <sys/resource.h>
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

/* A socket pair made, its first end watched, both closed; with_del: taken out of the epoll first.
 * The average of many. */
static double socket_life_ns(const void* epoll, int with_del) {
  enum { kRounds = 50000 };
  const int epoll_fd = *(const int*)epoll;
  const double start = now_ns();
  for (int i = 0; i < kRounds; i++) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) die("socketpair");
    struct epoll_event event = {.events = EPOLLIN};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, pair[0], &event) != 0) die("epoll_ctl ADD");
    if (with_del && epoll_ctl(epoll_fd, EPOLL_CTL_DEL, pair[0], NULL) != 0) die("epoll_ctl DEL");
    close(pair[0]);
    close(pair[1]);
  }
  return (now_ns() - start) / kRounds;
}

static int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* Batches of two timings, `timing(setup, 0)` and `timing(setup, 1)`, each first in every other
 * batch so that a drift of the machine's speed weighs on both alike: a shared machine's noise moves
 * single batches by more than the differences measured here. Each sorted, and the second's excess
 * over the first in the same batch, sorted: medians and quartiles are read off them. */
enum { kMaxBatches = 25 };
struct Batches {
  double first[kMaxBatches], second[kMaxBatches], excess[kMaxBatches];
};

static struct Batches time_in_turn(double (*timing)(const void* setup, int second), const void* setup,
                                   int count) {
  struct Batches batches;
  for (int b = 0; b < count; b++) {
    const int first_first = b % 2 == 0;
    if (first_first) batches.first[b] = timing(setup, 0);
    batches.second[b] = timing(setup, 1);
    if (!first_first) batches.first[b] = timing(setup, 0);
    batches.excess[b] = batches.second[b] - batches.first[b];
  }
  qsort(batches.first, count, sizeof(double), by_value);
  qsort(batches.second, count, sizeof(double), by_value);
  qsort(batches.excess, count, sizeof(double), by_value);
  return batches;
}

enum { kRegionBytes = 64 << 20, kHugePage = 2 << 20, kPage = 4096, kLine = 64 };

/* 64 MiB of memory at a 2 MiB boundary, in transparent huge pages or kept in 4 KiB ones; for huge
 * pages, NULL where the kernel has none (4 KiB ones it always has). */
static char* region(int huge) {
  char* raw =
      mmap(NULL, kRegionBytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) die("mmap");
  char* base = (char*)(((uintptr_t)raw + kHugePage - 1) & ~(uintptr_t)(kHugePage - 1));
  if (madvise(base, kRegionBytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
    if (errno != EINVAL) die("madvise");
    if (huge) return NULL;  // a kernel without transparent huge pages, whose pages are all 4 KiB
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

/* `loads` lines spread evenly over `pages` 4 KiB pages from `first_page` on, each holding the next
 * one's address, so that each load waits for the last and walks cannot overlap: one cycle, in a
 * shuffled order so that no prefetcher guesses the next line. Each line at a pseudo-random place in
 * its page, so that the lines spread over the caches' sets; places and order are the same in every
 * region, so that two regions' chains differ only in their pages. Returns one of the lines. */
static char* link_lines(char* base, int first_page, int pages, int loads) {
  enum { kMaxLoads = kRegionBytes / kPage };
  static char* lines[kMaxLoads];
  if (loads > kMaxLoads || loads > pages * (kPage / kLine)) {  // more would repeat a line: no cycle
    fprintf(stderr, "link_lines: %d loads on %d pages\n", loads, pages);
    exit(1);
  }
  for (int k = 0; k < loads; k++) {
    const unsigned page = (unsigned)(first_page + k % pages);
    const unsigned line = (unsigned)(k / pages + ((page * 2654435761u) >> 26)) % (kPage / kLine);
    lines[k] = base + (size_t)page * kPage + (size_t)line * kLine;
  }
  srand(1);
  for (int k = loads - 1; k > 0; k--) {
    const int j = rand() % (k + 1);
    char* const swapped = lines[k];
    lines[k] = lines[j];
    lines[j] = swapped;
  }
  for (int k = 0; k < loads; k++) *(char**)lines[k] = lines[(k + 1) % loads];
  return lines[0];
}

/* `loads` dependent loads along a chain from `from`, after a getppid or not, averaged over rounds.
 * Each round goes on from where the last one stopped (one whole cycle of a chain of `loads`), so
 * that its first load waits for the last one's: the rounds cannot overlap. */
static double chain_ns(char* from, int loads, int rounds, int after_getppid) {
  uintptr_t last = 0;
  char* at = from;
  const double start = now_ns();
  for (int r = 0; r < rounds; r++) {
    if (after_getppid) {
      syscall(SYS_getppid);
    } else {
      __asm__ volatile("" ::: "memory");  // the loads of each round are made again
    }
    for (int i = 0; i < loads; i++) at = *(char**)at;
    last += (uintptr_t)at;
  }
  const double ns = (now_ns() - start) / rounds;
  if (last == 1) puts("");  // uses the result: the loads are not optimised away
  return ns;
}

/* Two chains of the same length, timed in turn (time_in_turn's first and second). */
struct ChainPair {
  char* from[2];
  int loads, rounds, after_getppid;
};

static double pair_chain(const void* setup, int second) {
  const struct ChainPair* pair = setup;
  return chain_ns(pair->from[second], pair->loads, pair->rounds, pair->after_getppid);
}

/* What a page costs when it is touched after a system call: the same 64 loads on the 64 lines of
 * one page and on one line of each of 64 pages, after a getppid each time, and without one as the
 * control. Where the call empties the TLB (page-table isolation without PCID), each page more costs
 * a walk after it and next to nothing without it. A best case: data pages only, whose page-table
 * entries lie together and stay cached. */
static void spread_cost(char* base, int after_getppid) {
  enum { kLoads = 64 };
  const struct ChainPair pair = {
      {link_lines(base, 0, 1, kLoads), link_lines(base, 64, kLoads, kLoads)}, kLoads, 100000, after_getppid};
  const struct Batches batches = time_in_turn(pair_chain, &pair, kMaxBatches);
  const double* more = batches.excess;
  printf(
      "%s %d loads: %.0f ns on one page, %.0f on %d pages; %.1f ns a page more (quartiles %.1f, "
      "%.1f)\n",
      after_getppid ? "a getppid and" : "no system call,", kLoads, batches.first[kMaxBatches / 2],
      batches.second[kMaxBatches / 2], kLoads, more[kMaxBatches / 2] / (kLoads - 1),
      more[kMaxBatches / 4] / (kLoads - 1), more[3 * kMaxBatches / 4] / (kLoads - 1));
}

/* The medians of a chain's time on each region, and of what 4 KiB pages add a page, with the
 * quartiles of that. */
static void page_cost(char* small, char* huge, int pages, int rounds, int after_getppid) {
  const struct ChainPair pair = {
      {link_lines(huge, 0, pages, pages), link_lines(small, 0, pages, pages)}, pages, rounds, after_getppid};
  const struct Batches batches = time_in_turn(pair_chain, &pair, kMaxBatches);
  const double* more = batches.excess;
  printf(
      "%s through %d pages: %.0f ns on 4 KiB pages, %.0f in 2 MiB ones; %.1f ns a page more on 4 KiB "
      "pages (quartiles %.1f, %.1f)\n",
      after_getppid ? "a getppid and a chain of loads" : "a chain of loads, more than the TLB holds,", pages,
      batches.second[kMaxBatches / 2], batches.first[kMaxBatches / 2], more[kMaxBatches / 2] / pages,
      more[kMaxBatches / 4] / pages, more[3 * kMaxBatches / 4] / pages);
}

static double rusage_ns(const struct timeval* tv) { return tv->tv_sec * 1e9 + tv->tv_usec * 1e3; }

int main(void) {
  const int calls = 1000000;
  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  double start = now_ns();
  for (int i = 0; i < calls; i++) syscall(SYS_getppid);
  const double elapsed = now_ns() - start;
  getrusage(RUSAGE_SELF, &after);
  // The kernel books CPU time to user or system by where each timer tick finds the process.
  printf("getppid: %.0f ns a call, of which %.0f ns booked as user time and %.0f as system\n",
         elapsed / calls, (rusage_ns(&after.ru_utime) - rusage_ns(&before.ru_utime)) / calls,
         (rusage_ns(&after.ru_stime) - rusage_ns(&before.ru_stime)) / calls);

  const int epoll_fd = epoll_create1(0);
  if (epoll_fd < 0) die("epoll_create1");
  enum { kBatches = 9 };
  const struct Batches del = time_in_turn(socket_life_ns, &epoll_fd, kBatches);
  printf(
      "socket pair, watched, closed: %.0f ns; with an EPOLL_CTL_DEL before the close: %.0f ns "
      "(the DEL adds %.0f, medians of %d batches)\n",
      del.first[kBatches / 2], del.second[kBatches / 2], del.excess[kBatches / 2], kBatches);

  char* small = region(0);
  spread_cost(small, 1);
  spread_cost(small, 0);
  char* huge = region(1);
  if (huge == NULL || huge_kb_at(huge) < kRegionBytes / 1024) {
    printf(
        "the 2 MiB region is not all in transparent huge pages (/sys/kernel/mm/transparent_hugepage): "
        "no TLB measure\n");
    return 0;
  }
  page_cost(small, huge, 64, 100000, 1);
  page_cost(small, huge, 8192, 300, 0);
  return 0;
}
