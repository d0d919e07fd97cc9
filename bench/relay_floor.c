/* The floor under any pooler's transaction on this machine: what the kernel charges for relaying
 * one message each way over Unix sockets with nothing else done. Two processes pass 60 bytes back
 * and forth over a socket pair (each round trip: two sends, two receives, two wake-ups); prints
 * the CPU time (user + system, both processes) per round trip, in microseconds.
 *
 *   relay_floor [ROUND_TRIPS]          default 200000
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static double cpu_us(int who) {
  struct rusage r;
  getrusage(who, &r);
  return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

int main(int argc, char** argv) {
  const int round_trips = argc > 1 ? atoi(argv[1]) : 200000;
  int pair[2];
  char buffer[64] = {0};
  if (round_trips <= 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return 2;
  const pid_t echo = fork();
  if (echo < 0) return 2;
  if (echo == 0) {
    for (int i = 0; i < round_trips; i++) {
      if (recv(pair[1], buffer, sizeof buffer, 0) <= 0 || send(pair[1], buffer, 60, 0) != 60) _exit(1);
    }
    _exit(0);
  }
  for (int i = 0; i < round_trips; i++) {
    if (send(pair[0], buffer, 60, 0) != 60 || recv(pair[0], buffer, sizeof buffer, 0) <= 0) return 1;
  }
  int status = 0;
  if (waitpid(echo, &status, 0) != echo || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  printf("%.2f\n", (cpu_us(RUSAGE_SELF) + cpu_us(RUSAGE_CHILDREN)) / round_trips);
  return 0;
}
