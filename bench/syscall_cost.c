/* What a system call costs on this machine: the floor under a pooler's CPU per transaction, where
 * each statement takes at least 4 (a receive and a send each way) and a pgbench -C login 9 more.
 *
 * Prints the time of a getppid (a call that does no work: entering and leaving the kernel, which
 * page-table isolation and a VM make dear) and what an epoll_ctl DEL adds to a socket's life, as
 * sluiced makes one before each close (net/poll_socket.cpp says why it must).
 *
 *   cc -O2 -o /tmp/syscall_cost bench/syscall_cost.c && /tmp/syscall_cost
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
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
  printf("socket pair, watched, closed: %.0f ns; with an EPOLL_CTL_DEL before the close: %.0f ns "
         "(the DEL adds %.0f, medians of %d batches)\n",
         without[kBatches / 2], with[kBatches / 2], added[kBatches / 2], kBatches);
  return 0;
}
