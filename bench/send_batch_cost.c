/* What batching sends in one io_uring_enter saves here (net/send_batch.h): the sender's CPU per
 * 100-byte send to 16 Unix sockets whose far ends a reader thread waits on in epoll_wait, as
 * pgbench and the backends wait on a pooler, made with a send() each and with all 16 in one
 * io_uring_enter (MSG_DONTWAIT, as sluiced makes them). Each round waits for the reader to take
 * everything and fall asleep again, so that every send wakes it as a reply does
 * (bench/HISTORY.md, "Replies leave together").
 *
 *   cc -O2 -o /tmp/send_batch_cost bench/send_batch_cost.c -luring -lpthread && /tmp/send_batch_cost
 */
#define _GNU_SOURCE
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

enum { SOCKETS = 16, ROUNDS = 20000, MESSAGE = 100 };

static int sender_ends[SOCKETS], reader_ends[SOCKETS];
static atomic_long messages_read;

static void *reader(void *unused) {
  (void)unused;
  int epoll = epoll_create1(0);
  for (int i = 0; i < SOCKETS; i++) {
    struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(epoll, EPOLL_CTL_ADD, reader_ends[i], &event);
  }
  char buffer[4096];
  struct epoll_event events[SOCKETS];
  for (;;) {
    int ready = epoll_wait(epoll, events, SOCKETS, -1);
    for (int k = 0; k < ready; k++) {
      ssize_t n = recv(reader_ends[events[k].data.u32], buffer, sizeof buffer, 0);
      if (n > 0) atomic_fetch_add(&messages_read, n / MESSAGE);
    }
  }
  return NULL;
}

static double thread_cpu_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

/* The sender's CPU per send, in ns, over ROUNDS rounds of SOCKETS sends. */
static double measure(struct io_uring *ring) {
  char message[MESSAGE];
  memset(message, 'x', sizeof message);
  double cpu = 0;
  long sent = 0;
  for (int round = 0; round < ROUNDS; round++) {
    double start = thread_cpu_ns();
    if (ring == NULL) {
      for (int i = 0; i < SOCKETS; i++)
        send(sender_ends[i], message, sizeof message, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
      for (int i = 0; i < SOCKETS; i++)
        io_uring_prep_send(io_uring_get_sqe(ring), sender_ends[i], message, sizeof message,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
      io_uring_submit_and_wait(ring, SOCKETS);
      io_uring_cq_advance(ring, io_uring_cq_ready(ring));
    }
    cpu += thread_cpu_ns() - start;
    sent += SOCKETS;
    while (atomic_load(&messages_read) < sent) {
    }
    struct timespec pause = {0, 20000}; /* the reader back in epoll_wait */
    nanosleep(&pause, NULL);
  }
  return cpu / ROUNDS / SOCKETS;
}

int main(void) {
  for (int i = 0; i < SOCKETS; i++) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return perror("socketpair"), 1;
    sender_ends[i] = pair[0];
    reader_ends[i] = pair[1];
  }
  pthread_t thread;
  pthread_create(&thread, NULL, reader, NULL);
  struct io_uring ring;
  int error = io_uring_queue_init(SOCKETS, &ring, 0);
  if (error != 0) return fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-error)), 1;
  for (int pass = 0; pass < 2; pass++) {
    printf("a send() each:           %6.0f ns of the sender's CPU per send\n", measure(NULL));
    printf("%d in one io_uring_enter: %6.0f ns of the sender's CPU per send\n", SOCKETS, measure(&ring));
  }
  return 0;
}
