// Connection-holding load tool for netloop's bench:conns and scale test: opens COUNT TCP
// connections to 127.0.0.1:PORT from loopback source addresses of its own (127.SLICE.x.1, a new
// address every 1,000 connections, so that no source address runs out of ports), sends one 8-byte
// message on each as it opens and checks its echo, then holds them. Single-threaded epoll; run
// several, each with its own SLICE, for more. Compiled at bench/test time. Usage:
//   conns_load PORT COUNT SLICE [INTERVAL_SECONDS]
// With INTERVAL_SECONDS, every connection sends one more message (checked) that often.
// Prints, once every connection has opened and echoed or failed:
//   open <held> <failed> <microseconds>
// then obeys lines on stdin:
//   ping       one message on every held connection; prints `pong <echoed> <bad> <us>` when all
//              are back (or gone)
//   probe K    K round trips, one at a time, on a connection of its own opened now; prints
//              `probe <p50 us> <p99 us> <max us>`
//   stats      prints `stats <held> <lost> <bad> <cpu seconds>`
//   close      closes every connection; prints `closed <us>` and exits
// A connection the server closes counts as lost; an echo that differs as bad.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#define IN_FLIGHT 512
#define STDIN_TAG 0xffffffffu

struct conn {
  int fd;
  uint32_t seq;
  uint8_t got;
  uint8_t waiting;
  uint8_t open;
  uint8_t buf[8];
};

static struct conn *conns;
static int count, slice, port, ep;
static long held, failed, lost, bad, opening, pinging;
static double ping_start;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void message(uint32_t id, uint32_t seq, uint8_t *out) {
  memcpy(out, &id, 4);
  memcpy(out + 4, &seq, 4);
}

static void drop(int i, int was_lost) {
  struct conn *c = &conns[i];
  if (c->fd < 0) return;
  close(c->fd);
  c->fd = -1;
  if (c->open) {
    held--;
    if (was_lost) lost++;
  } else {
    opening--;
    failed++;
  }
  if (c->waiting == 2) pinging--;
  c->open = c->waiting = 0;
}

static void send_next(int i, int why) {
  struct conn *c = &conns[i];
  uint8_t out[8];
  message(i, ++c->seq, out);
  c->got = 0;
  c->waiting = why;
  if (write(c->fd, out, 8) != 8) drop(i, 1);
}

static void start(int i) {
  struct conn *c = &conns[i];
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    failed++;
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  struct sockaddr_in from = {.sin_family = AF_INET};
  from.sin_addr.s_addr = htonl((127u << 24) | ((uint32_t)slice << 16) | ((i / 1000) << 8) | 1);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
  to.sin_addr.s_addr = htonl(0x7f000001);
  if (bind(fd, (struct sockaddr *)&from, sizeof from) != 0 ||
      (connect(fd, (struct sockaddr *)&to, sizeof to) != 0 && errno != EINPROGRESS)) {
    close(fd);
    failed++;
    return;
  }
  c->fd = fd;
  c->seq = 0;
  opening++;
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = i};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void readable(int i) {
  struct conn *c = &conns[i];
  ssize_t n = read(c->fd, c->buf + c->got, 8 - c->got);
  if (n == 0 || (n < 0 && errno != EAGAIN)) {
    drop(i, 1);
    return;
  }
  if (n < 0) return;
  c->got += n;
  if (c->got < 8) return;
  uint8_t want[8];
  message(i, c->seq, want);
  if (memcmp(want, c->buf, 8) != 0) bad++;
  c->got = 0;
  if (c->waiting == 2) pinging--;
  c->waiting = 0;
  if (!c->open) {
    c->open = 1;
    opening--;
    held++;
  }
}

static void probe(int k) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
  to.sin_addr.s_addr = htonl(0x7f000001);
  if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
    printf("probe -1 -1 -1\n");
    fflush(stdout);
    close(fd);
    return;
  }
  double *rtt = calloc(k, sizeof *rtt);
  uint8_t out[8], in[8];
  for (int j = 0; j < k; j++) {
    message(0xfffffff0u, j, out);
    double t0 = now();
    if (write(fd, out, 8) != 8) break;
    int got = 0;
    while (got < 8) {
      ssize_t n = read(fd, in + got, 8 - got);
      if (n <= 0) break;
      got += n;
    }
    rtt[j] = (now() - t0) * 1e6;
    if (got < 8 || memcmp(in, out, 8) != 0) bad++;
  }
  close(fd);
  for (int a = 1; a < k; a++) {  // insertion sort: K is small
    double v = rtt[a];
    int b = a - 1;
    while (b >= 0 && rtt[b] > v) rtt[b + 1] = rtt[b], b--;
    rtt[b + 1] = v;
  }
  printf("probe %.0f %.0f %.0f\n", rtt[k / 2], rtt[(int)(k * 0.99)], rtt[k - 1]);
  fflush(stdout);
  free(rtt);
}

static void command(char *line) {
  if (strncmp(line, "ping", 4) == 0) {
    ping_start = now();
    pinging = 0;
    for (int i = 0; i < count; i++) {
      if (conns[i].fd >= 0 && conns[i].open && !conns[i].waiting) {
        pinging++;
        send_next(i, 2);
      }
    }
  } else if (strncmp(line, "probe", 5) == 0) {
    probe(atoi(line + 6) > 0 ? atoi(line + 6) : 1000);
  } else if (strncmp(line, "stats", 5) == 0) {
    printf("stats %ld %ld %ld %.3f\n", held, lost, bad, cpu());
    fflush(stdout);
  } else if (strncmp(line, "close", 5) == 0) {
    double t0 = now();
    for (int i = 0; i < count; i++)
      if (conns[i].fd >= 0) close(conns[i].fd);
    printf("closed %.0f\n", (now() - t0) * 1e6);
    fflush(stdout);
    exit(0);
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: conns_load PORT COUNT SLICE [INTERVAL_SECONDS]\n");
    return 2;
  }
  port = atoi(argv[1]);
  count = atoi(argv[2]);
  slice = atoi(argv[3]);
  double interval = argc > 4 ? atof(argv[4]) : 0;
  conns = calloc(count, sizeof *conns);
  for (int i = 0; i < count; i++) conns[i].fd = -1;
  ep = epoll_create1(0);
  struct epoll_event in = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in);
  double t0 = now(), next_beat = interval > 0 ? t0 + interval : 0;
  int reported = 0, next = 0;
  struct epoll_event events[256];
  char line[256];
  size_t line_len = 0;
  for (;;) {
    while (next < count && opening < IN_FLIGHT) start(next++);
    if (!reported && next == count && opening == 0) {
      printf("open %ld %ld %.0f\n", held, failed, (now() - t0) * 1e6);
      fflush(stdout);
      reported = 1;
    }
    int timeout = 1000;
    if (next_beat > 0) {
      double left = next_beat - now();
      if (left <= 0) {
        for (int i = 0; i < count; i++)
          if (conns[i].fd >= 0 && conns[i].open && !conns[i].waiting) send_next(i, 1);
        next_beat += interval;
        left = interval;
      }
      timeout = (int)(left * 1000) + 1;
    }
    int n = epoll_wait(ep, events, 256, timeout);
    for (int e = 0; e < n; e++) {
      uint32_t i = events[e].data.u32;
      if (i == STDIN_TAG) {
        ssize_t r = read(0, line + line_len, sizeof line - 1 - line_len);
        if (r <= 0) return 0;
        line_len += r;
        char *nl;
        while ((nl = memchr(line, '\n', line_len)) != NULL) {
          *nl = 0;
          command(line);
          size_t used = nl + 1 - line;
          memmove(line, nl + 1, line_len - used);
          line_len -= used;
        }
        continue;
      }
      struct conn *c = &conns[i];
      if (c->fd < 0) continue;
      if (!c->open && !c->waiting && (events[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          drop(i, 0);
          continue;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        uint8_t out[8];
        message(i, 0, out);
        c->waiting = 1;
        if (write(c->fd, out, 8) != 8) drop(i, 0);
        continue;
      }
      if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) readable(i);
    }
    if (pinging == 0 && ping_start > 0) {
      printf("pong %ld %ld %.0f\n", held, bad, (now() - ping_start) * 1e6);
      fflush(stdout);
      ping_start = 0;
    }
  }
}
