// Echo load generator for netloop/bench: N connections (or UDP sockets), each keeping DEPTH
// messages of SIZE bytes in flight; counts echoed messages after a warm-up. Single-threaded epoll.
// Compiled by run.ts at bench time. Usage:
//   loadgen tcp|udp HOST PORT CONNS DEPTH SIZE SECONDS WARMUP_SECONDS [RATE]
// RATE (TCP, messages/s over all connections; 0 or absent: as fast as the server echoes): a fixed
// rate, for comparing servers' CPU per message at the same load. Each connection then sends its
// DEPTH messages as one write once all its earlier ones are back and the rate allows DEPTH more, so
// every server sees the same pipelined bursts at the same pace.
// Prints: msgs=<echoed messages in the measured window> seconds=<window length>
// cpu=<CPU seconds this client used in that window> (near `seconds`: the client is the limit)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double clock_of(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now(void) { return clock_of(CLOCK_MONOTONIC); }

struct conn {
  int fd;
  size_t pending;   // bytes of a partial echo received (TCP)
  size_t unsent;    // bytes still to send (TCP)
  size_t due;       // bytes of echo still to come (TCP at a fixed rate)
  double last;      // last activity (UDP loss recovery)
};

int main(int argc, char **argv) {
  if (argc != 9 && argc != 10) {
    fprintf(stderr, "usage: %s tcp|udp HOST PORT CONNS DEPTH SIZE SECONDS WARMUP [RATE]\n", argv[0]);
    return 2;
  }
  int udp = strcmp(argv[1], "udp") == 0;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
  inet_pton(AF_INET, argv[2], &addr.sin_addr);
  int n = atoi(argv[4]), depth = atoi(argv[5]), size = atoi(argv[6]);
  double seconds = atof(argv[7]), warmup = atof(argv[8]);
  double rate = argc == 10 && !udp ? atof(argv[9]) : 0;
  struct conn *conns = calloc(n, sizeof *conns);
  char *out = malloc((size_t)size * depth), *in = malloc(1 << 16);
  memset(out, 'x', (size_t)size * depth);
  static struct mmsghdr rmsgs[BATCH], smsgs[BATCH];
  static struct iovec riov[BATCH], siov[BATCH];
  static char rbufs[BATCH][2048];
  for (int i = 0; i < BATCH; i++) {
    riov[i] = (struct iovec){.iov_base = rbufs[i], .iov_len = sizeof rbufs[i]};
    rmsgs[i].msg_hdr = (struct msghdr){.msg_iov = &riov[i], .msg_iovlen = 1};
    siov[i] = (struct iovec){.iov_base = out, .iov_len = (size_t)size};
    smsgs[i].msg_hdr = (struct msghdr){.msg_iov = &siov[i], .msg_iovlen = 1};
  }
  int ep = epoll_create1(0);
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
      perror("connect");
      return 1;
    }
    int one = 1;
    if (!udp) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    conns[i].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  double start = now();
  // Fixed rate: connections with nothing in flight wait here for the rate to allow a burst.
  // A FIFO, so that every connection takes its turn.
  int *idle = calloc(n, sizeof *idle), idle_n = 0, idle_head = 0;
  long long bursts = 0;
  for (int i = 0; i < n; i++) {
    conns[i].last = start;
    if (rate > 0) {
      idle[idle_n++] = i;  // (idle_head 0: slots 0..n-1)
    } else if (udp) {
      for (int d = 0; d < depth; d++) send(conns[i].fd, out, size, 0);
    } else {
      ssize_t w = write(conns[i].fd, out, (size_t)size * depth);
      conns[i].unsent = (size_t)size * depth - (w > 0 ? w : 0);
    }
  }
  long long counted = 0;
  double measure_from = start + warmup, end = measure_from + seconds;
  struct epoll_event events[512];
  double cpu_from = -1;
  for (;;) {
    double t = now();
    if (t >= end) break;
    if (cpu_from < 0 && t >= measure_from) cpu_from = clock_of(CLOCK_PROCESS_CPUTIME_ID);
    int timeout = 10;
    if (rate > 0 && idle_n > 0) {
      double next = start + (bursts + 1) * depth / rate;
      timeout = next <= t ? 0 : (int)((next - t) * 1000) + 1;
      if (timeout > 10) timeout = 10;
    }
    int k = epoll_wait(ep, events, 512, timeout);
    t = now();
    for (int e = 0; e < k; e++) {
      struct conn *c = &conns[events[e].data.u32];
      if (udp) {
        // Batched both ways (recvmmsg/sendmmsg) so the client is not what limits a UDP server.
        for (;;) {
          int r = recvmmsg(c->fd, rmsgs, BATCH, MSG_DONTWAIT, NULL);
          if (r <= 0) break;
          if (t >= measure_from) counted += r;
          sendmmsg(c->fd, smsgs, r, 0);
          c->last = t;
          if (r < BATCH) break;
        }
        continue;
      }
      ssize_t r = read(c->fd, in, 1 << 16);
      if (r == 0) {
        fprintf(stderr, "server closed a connection\n");
        return 1;
      }
      if (r < 0) continue;
      c->pending += r;
      size_t done = c->pending / size;
      c->pending %= size;
      if (t >= measure_from) counted += done;
      if (rate > 0) {
        c->due -= r;
        if (c->due == 0) idle[(idle_head + idle_n++) % n] = events[e].data.u32;
        continue;
      }
      size_t want = done * size + c->unsent;
      while (want > 0) {
        size_t chunk = want > (size_t)size * depth ? (size_t)size * depth : want;
        ssize_t w = write(c->fd, out, chunk);
        if (w <= 0) break;
        want -= w;
      }
      c->unsent = want;
    }
    while (rate > 0 && idle_n > 0 && (bursts + 1) * depth <= rate * (t - start)) {
      struct conn *c = &conns[idle[idle_head]];
      idle_head = (idle_head + 1) % n;
      idle_n--;
      size_t len = (size_t)size * depth;
      ssize_t w = write(c->fd, out, len);  // a few hundred bytes: the socket buffer takes them
      if (w != (ssize_t)len) {
        fprintf(stderr, "short write at a fixed rate\n");
        return 1;
      }
      c->due = len;
      bursts++;
    }
    if (udp) {
      // Lost datagrams would stall a socket: top it up after 50 ms of silence.
      for (int i = 0; i < n; i++) {
        if (t - conns[i].last > 0.05) {
          send(conns[i].fd, out, size, 0);
          conns[i].last = t;
        }
      }
    }
  }
  double cpu = cpu_from < 0 ? 0 : clock_of(CLOCK_PROCESS_CPUTIME_ID) - cpu_from;
  printf("msgs=%lld seconds=%.3f cpu=%.3f\n", counted, seconds, cpu);
  return 0;
}
