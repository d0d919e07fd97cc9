/* A minimal transaction pooler for this machine: one that does nothing but relay.
 *
 * It opens its servers with libpq, greets every client without authentication, and from then on
 * only moves bytes: a client's bytes go to the server it holds (or wait, in order, for the next
 * server freed), a server's bytes go to its client at once, and the server goes back to the pool
 * (most recently used first) when a read ends right after a ReadyForQuery 'I'. No session state,
 * no prepared statements, no timers, no statistics: the system calls a relay cannot do without
 * (a receive and a send each way, an epoll_wait per loop turn) and the least user space around
 * them. What it reaches and spends beside a real pooler, in the same rounds, is evidence of what
 * a minimal single-loop pooler gets here: not a bound, since a pooler can batch or time its work
 * better than a naive relay.
 *
 * Not a pooler to use: a client that leaves mid-transaction stops it (with a message), a send the
 * socket cannot take whole is finished by waiting for the socket (counted, and printed at exit),
 * and cancel requests are dropped.
 *
 *   bare_pooler SOCKET_DIR PORT POOL_SIZE CONNINFO
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum { kReadSize = 64 * 1024, kMaxEvents = 1024, kSslRequestCode = 80877103, kCancelCode = 80877102 };

struct Buffer {
  char* data;
  size_t size, capacity;
};

struct Client;

struct Server {
  int fd;
  struct Client* client;
  struct Server* next_idle;
  /* Where the read stream stands: the bytes of the current message's 5-byte header seen so far,
   * then the bytes of its body still to come. */
  unsigned char header[5];
  size_t header_seen, body_left;
  int idle_after_read; /* the last whole message was ReadyForQuery 'I' */
};

struct Client {
  int fd;
  int logged_in;
  struct Server* server;
  struct Client* next_waiting;
  struct Buffer held; /* the startup packet, or what arrived while no server was free */
};

/* An epoll event's data: the low bit tells a server from a client. */
#define TAG_SERVER ((uintptr_t)1)

static int epoll_fd;
static struct Server* idle_servers;
static struct Client *first_waiting, *last_waiting;
static char read_buffer[kReadSize];
static char* greeting;
static size_t greeting_size;
static unsigned long waited_sends;
static volatile sig_atomic_t stopping;

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void append(struct Buffer* b, const void* data, size_t n) {
  if (b->size + n > b->capacity) {
    b->capacity = (b->size + n) * 2;
    b->data = realloc(b->data, b->capacity);
    if (!b->data) die("realloc");
  }
  memcpy(b->data + b->size, data, n);
  b->size += n;
}

static void put_u32(struct Buffer* b, uint32_t v) {
  const unsigned char bytes[4] = {v >> 24, v >> 16, v >> 8, v};
  append(b, bytes, 4);
}

static uint32_t get_u32(const unsigned char* p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Sends all of it; a send that the socket cannot take at once is waited for, and counted. */
static int send_all(int fd, const char* data, size_t n) {
  int waited = 0;
  while (n > 0) {
    const ssize_t sent = send(fd, data, n, MSG_NOSIGNAL);
    if (sent > 0) {
      data += sent;
      n -= (size_t)sent;
      continue;
    }
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waited++) waited_sends++;
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      poll(&p, 1, -1);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    return -1;
  }
  return 0;
}

static void watch(int fd, void* owner, uintptr_t tag) {
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = (uintptr_t)owner | tag};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &e) != 0) die("epoll_ctl");
}

static void build_greeting(PGconn* conn) {
  static const char* const names[] = {
      "server_version", "server_encoding", "client_encoding",   "DateStyle",
      "IntervalStyle",  "TimeZone",        "integer_datetimes", "standard_conforming_strings"};
  struct Buffer b = {0};
  append(&b, "R", 1);
  put_u32(&b, 8);
  put_u32(&b, 0);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char* value = PQparameterStatus(conn, names[i]);
    if (!value) continue;
    append(&b, "S", 1);
    put_u32(&b, (uint32_t)(4 + strlen(names[i]) + 1 + strlen(value) + 1));
    append(&b, names[i], strlen(names[i]) + 1);
    append(&b, value, strlen(value) + 1);
  }
  append(&b, "K", 1);
  put_u32(&b, 12);
  put_u32(&b, (uint32_t)getpid());
  put_u32(&b, 0);
  append(&b, "Z", 1);
  put_u32(&b, 5);
  append(&b, "I", 1);
  greeting = b.data;
  greeting_size = b.size;
}

static void open_servers(int count, const char* conninfo) {
  for (int i = 0; i < count; i++) {
    PGconn* conn = PQconnectdb(conninfo); /* kept open for its socket; libpq is not called again */
    if (PQstatus(conn) != CONNECTION_OK) {
      fprintf(stderr, "bare_pooler: %s", PQerrorMessage(conn));
      exit(1);
    }
    if (i == 0) build_greeting(conn);
    struct Server* s = calloc(1, sizeof *s);
    if (!s) die("calloc");
    s->fd = PQsocket(conn);
    fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
    s->next_idle = idle_servers;
    idle_servers = s;
    watch(s->fd, s, TAG_SERVER);
  }
}

static void close_client(struct Client* c) {
  if (c->logged_in && c->held.size > 0) { /* queued for a server */
    struct Client** link = &first_waiting;
    while (*link != c) link = &(*link)->next_waiting;
    *link = c->next_waiting;
    if (last_waiting == c) {
      last_waiting = NULL;
      for (struct Client* w = first_waiting; w; w = w->next_waiting) last_waiting = w;
    }
  }
  close(c->fd);
  free(c->held.data);
  free(c);
}

static void give_server(struct Client* c, struct Server* s) {
  c->server = s;
  s->client = c;
  if (c->held.size > 0) {
    if (send_all(s->fd, c->held.data, c->held.size) != 0) die("send to server");
    c->held.size = 0;
  }
}

static void release_server(struct Server* s) {
  s->client->server = NULL;
  s->client = NULL;
  struct Client* next = first_waiting;
  if (next) {
    first_waiting = next->next_waiting;
    if (!first_waiting) last_waiting = NULL;
    give_server(next, s);
    return;
  }
  s->next_idle = idle_servers;
  idle_servers = s;
}

/* A client with bytes held and no server: Terminate closes it; otherwise it gets the idle server
   used last, or waits in order for the next one freed. */
static void seek_server(struct Client* c) {
  if (c->held.data[0] == 'X') { /* Terminate between transactions */
    c->held.size = 0;           /* not queued: close_client must not look for it */
    close_client(c);
    return;
  }
  if (idle_servers) {
    struct Server* s = idle_servers;
    idle_servers = s->next_idle;
    give_server(c, s);
    return;
  }
  c->next_waiting = NULL;
  if (last_waiting)
    last_waiting->next_waiting = c;
  else
    first_waiting = c;
  last_waiting = c;
}

/* Reads the startup packet; answers an SSLRequest with 'N' and a login with the greeting. */
static int read_startup(struct Client* c, const char* data, size_t n) {
  append(&c->held, data, n);
  while (c->held.size >= 8) {
    const uint32_t length = get_u32((const unsigned char*)c->held.data);
    if (length < 8 || length > 10000) return -1;
    if (c->held.size < length) return 0;
    const uint32_t code = get_u32((const unsigned char*)c->held.data + 4);
    if (code == kCancelCode) return -1;
    memmove(c->held.data, c->held.data + length, c->held.size - length);
    c->held.size -= length;
    if (code == kSslRequestCode) {
      if (send_all(c->fd, "N", 1) != 0) return -1;
      continue;
    }
    c->logged_in = 1;
    return send_all(c->fd, greeting, greeting_size);
  }
  return 0;
}

static void on_client(struct Client* c) {
  const ssize_t n = recv(c->fd, read_buffer, sizeof read_buffer, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    if (c->server) {
      fprintf(stderr, "bare_pooler: a client left mid-transaction\n");
      exit(1);
    }
    close_client(c);
    return;
  }
  if (!c->logged_in) {
    if (read_startup(c, read_buffer, (size_t)n) != 0) {
      c->held.size = 0; /* not queued: close_client must not look for it */
      close_client(c);
    } else if (c->logged_in && c->held.size > 0) /* the first query came with the login */
      seek_server(c);
    return;
  }
  if (c->server) {
    if (n == 5 && read_buffer[0] == 'X') { /* a read that is one Terminate: it leaves mid-transaction */
      fprintf(stderr, "bare_pooler: a client left mid-transaction\n");
      exit(1);
    }
    if (send_all(c->server->fd, read_buffer, (size_t)n) != 0) die("send to server");
    return;
  }
  const int was_holding = c->held.size > 0;
  append(&c->held, read_buffer, (size_t)n);
  if (!was_holding) seek_server(c); /* else already queued */
}

/* Follows the message boundaries of what the server sent, to know whether it ended idle. */
static void scan_server_stream(struct Server* s, const unsigned char* p, size_t n) {
  while (n > 0) {
    if (s->body_left > 0) {
      const size_t take = n < s->body_left ? n : s->body_left;
      if (s->header[0] == 'Z' && s->body_left == 1) s->idle_after_read = p[0] == 'I';
      p += take;
      n -= take;
      s->body_left -= take;
      continue;
    }
    s->header[s->header_seen++] = *p++;
    n--;
    if (s->header_seen < 5) continue;
    s->header_seen = 0;
    s->body_left = get_u32(s->header + 1) - 4;
    s->idle_after_read = 0;
  }
}

static void on_server(struct Server* s) {
  const ssize_t n = recv(s->fd, read_buffer, sizeof read_buffer, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    fprintf(stderr, "bare_pooler: a server connection ended\n");
    exit(1);
  }
  if (!s->client) return; /* a notice between transactions: nobody to tell */
  if (send_all(s->client->fd, read_buffer, (size_t)n) != 0) {
    fprintf(stderr, "bare_pooler: a client left mid-reply\n");
    exit(1);
  }
  scan_server_stream(s, (const unsigned char*)read_buffer, (size_t)n);
  if (s->idle_after_read && s->header_seen == 0 && s->body_left == 0) release_server(s);
}

static void on_accept(int listener) {
  const int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0 && errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) die("accept4");
  if (fd < 0) return;
  struct Client* c = calloc(1, sizeof *c);
  if (!c) die("calloc");
  c->fd = fd;
  watch(fd, c, 0);
}

static int listen_on(const char* dir, const char* port) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s/.s.PGSQL.%s", dir, port);
  unlink(address.sun_path);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr*)&address, sizeof address) != 0 || listen(fd, 4096) != 0)
    die("listen");
  return fd;
}

static void on_signal(int signal_number) {
  (void)signal_number;
  stopping = 1;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: bare_pooler SOCKET_DIR PORT POOL_SIZE CONNINFO\n");
    return 2;
  }
  struct rlimit files; /* a client and a server a descriptor each: as many as the system allows */
  if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) die("epoll_create1");
  open_servers(atoi(argv[3]), argv[4]);
  const int listener = listen_on(argv[1], argv[2]);
  struct epoll_event listener_event = {.events = EPOLLIN, .data.u64 = 0};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &listener_event) != 0) die("epoll_ctl");
  struct epoll_event events[kMaxEvents];
  while (!stopping) {
    const int ready = epoll_wait(epoll_fd, events, kMaxEvents, -1);
    for (int i = 0; i < ready; i++) {
      const uintptr_t data = (uintptr_t)events[i].data.u64;
      if (data == 0)
        on_accept(listener);
      else if (data & TAG_SERVER)
        on_server((struct Server*)(data & ~TAG_SERVER));
      else
        on_client((struct Client*)data);
    }
  }
  fprintf(stderr, "bare_pooler: %lu sends waited for their socket\n", waited_sends);
  return 0;
}
