// The native floor of a cache miss, for dnsproxy/bench: a single-threaded epoll UDP forwarder with
// no cache and no policy, doing only the system calls a miss needs. Compiled by dnsperf_bench.ts.
//
//   udp_forwarder PORT UPSTREAM_PORT port-per-query   each upstream query from its own socket on
//       a new kernel-chosen random port (what @triad/dnsproxy does, and what its issue asks for):
//       a kept socket is connected for the query, and disconnected (connect AF_UNSPEC: the port
//       is released) and drained after the reply, as netloop's dial pool does;
//   udp_forwarder PORT UPSTREAM_PORT one-socket       every upstream query over one connected
//       socket, told apart by random ID only (dnsdist's default backend sockets).
//
// Both: random 16-bit ID per upstream query, a reply accepted only if its ID and question match
// (on the connected socket the kernel checks the source), queries read with recvmmsg, answers
// sent with sendto, 4 MiB socket buffers, 2 s timeout. Loopback upstream (127.0.0.1) only.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define MAX_PENDING 65536
#define LISTENER UINT64_MAX
#define TIMEOUT_NS 2000000000LL

struct pending {
  int used;
  int fd;                   // port-per-query: this query's socket
  uint16_t id;              // the upstream query's ID
  uint16_t client_id;
  struct sockaddr_in client;
  uint16_t qlen;            // the question, as sent (name, type, class)
  uint8_t question[260];
  long long started;
};

static struct pending table[MAX_PENDING]; // one-socket: indexed by ID; port-per-query: by slot
static int free_slots[MAX_PENDING], free_count;
static int pool[MAX_PENDING], pool_count; // port-per-query: disconnected sockets to reuse
static int slot_of_fd[MAX_PENDING + 1024];  // port-per-query: the slot a socket serves
static int listener, upstream_fd, ep, per_query;
static struct sockaddr_in upstream;
static uint64_t rng[2];

static uint64_t next_random(void) { // xorshift128+, seeded from getrandom
  uint64_t s1 = rng[0], s0 = rng[1];
  rng[0] = s0;
  s1 ^= s1 << 23;
  rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
  return rng[1] + s0;
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void big_buffers(int fd) {
  int size = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
}

// The question's length (name, type, class) from offset 12, or -1 (compression is not expected
// in a query's question).
static int question_length(const uint8_t *p, int n) {
  int at = 12;
  while (at < n && p[at] != 0) {
    if (p[at] > 63) return -1;
    at += p[at] + 1;
  }
  at += 5;
  return at <= n && at - 12 <= 260 ? at - 12 : -1;
}

static int same_question(const struct pending *q, const uint8_t *p, int n) {
  if (n < 12 + q->qlen) return 0;
  for (int i = 0; i < q->qlen; i++) {
    uint8_t a = q->question[i], b = p[12 + i];
    if (a >= 'A' && a <= 'Z') a += 32;
    if (b >= 'A' && b <= 'Z') b += 32;
    if (a != b) return 0;
  }
  return 1;
}

static void release(struct pending *q, int slot) {
  q->used = 0;
  if (!per_query) return;
  struct sockaddr unspec = {.sa_family = AF_UNSPEC};
  connect(q->fd, &unspec, sizeof unspec);
  uint8_t drop[512];
  while (recv(q->fd, drop, sizeof drop, MSG_DONTWAIT) >= 0) {
  }
  pool[pool_count++] = q->fd;
  free_slots[free_count++] = slot;
}

static void forward(uint8_t *p, int n, struct sockaddr_in *client, long long now) {
  int qlen = n >= 12 ? question_length(p, n) : -1;
  if (qlen < 0 || (p[2] & 0x80) != 0) return;
  uint16_t id = (uint16_t)next_random();
  struct pending *q;
  int fd;
  if (per_query) {
    if (free_count == 0) return; // full: dropped, like a full socket buffer
    int slot = free_slots[--free_count];
    q = &table[slot];
    if (pool_count > 0) {
      fd = pool[--pool_count];
    } else {
      fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
      if (fd < 0 || fd >= MAX_PENDING + 1024) {
        if (fd >= 0) close(fd);
        free_slots[free_count++] = slot;
        return;
      }
      struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)fd};
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev); // stays registered while pooled
    }
    slot_of_fd[fd] = slot;
    connect(fd, (struct sockaddr *)&upstream, sizeof upstream); // a new random local port
    q->fd = fd;
  } else {
    q = &table[id];
    if (q->used) return; // ID in use: dropped (rare at 500 in flight)
    fd = upstream_fd;
  }
  q->used = 1;
  q->id = id;
  q->client_id = (uint16_t)(p[0] << 8 | p[1]);
  q->client = *client;
  q->qlen = (uint16_t)qlen;
  memcpy(q->question, p + 12, qlen);
  q->started = now;
  p[0] = id >> 8;
  p[1] = id & 0xff;
  send(fd, p, n, 0);
}

static void answer(struct pending *q, uint8_t *p, int n) {
  p[0] = q->client_id >> 8;
  p[1] = q->client_id & 0xff;
  sendto(listener, p, n, 0, (struct sockaddr *)&q->client, sizeof q->client);
}

static void on_reply(uint64_t fd) {
  uint8_t p[4096];
  if (per_query) {
    int slot = slot_of_fd[fd];
    struct pending *q = &table[slot];
    for (;;) {
      int n = recv(q->fd, p, sizeof p, MSG_DONTWAIT);
      if (n < 0) return;
      if (!q->used || q->fd != (int)fd || n < 12 || (p[0] << 8 | p[1]) != q->id ||
          !same_question(q, p, n)) {
        continue;
      }
      answer(q, p, n);
      release(q, slot);
      return;
    }
  }
  for (;;) {
    int n = recv(upstream_fd, p, sizeof p, MSG_DONTWAIT);
    if (n < 0) return;
    if (n < 12) continue;
    struct pending *q = &table[p[0] << 8 | p[1]];
    if (!q->used || !same_question(q, p, n)) continue;
    answer(q, p, n);
    q->used = 0;
  }
}

static void expire(long long now) {
  for (int i = 0; i < MAX_PENDING; i++) {
    if (table[i].used && now - table[i].started > TIMEOUT_NS) release(&table[i], i);
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: udp_forwarder PORT UPSTREAM_PORT port-per-query|one-socket\n");
    return 2;
  }
  per_query = strcmp(argv[3], "port-per-query") == 0;
  if (getrandom(rng, sizeof rng, 0) != sizeof rng) return 1;
  upstream = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
  inet_pton(AF_INET, "127.0.0.1", &upstream.sin_addr);
  ep = epoll_create1(0);
  listener = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  big_buffers(listener);
  struct sockaddr_in at = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &at.sin_addr);
  if (bind(listener, (struct sockaddr *)&at, sizeof at) != 0) {
    perror("bind");
    return 1;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = LISTENER};
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  if (per_query) {
    for (int i = 0; i < MAX_PENDING; i++) free_slots[free_count++] = MAX_PENDING - 1 - i;
  } else {
    upstream_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    big_buffers(upstream_fd);
    connect(upstream_fd, (struct sockaddr *)&upstream, sizeof upstream);
    ev.data.u64 = 0;
    epoll_ctl(ep, EPOLL_CTL_ADD, upstream_fd, &ev);
  }
  static uint8_t bufs[BATCH][512];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_in from[BATCH];
  struct epoll_event events[64];
  long long last_expire = now_ns();
  for (;;) {
    int n = epoll_wait(ep, events, 64, 100);
    long long now = now_ns();
    for (int e = 0; e < n; e++) {
      if (events[e].data.u64 != LISTENER) {
        on_reply(events[e].data.u64);
        continue;
      }
      for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
        msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i],
                                          .msg_iov = &iov[i], .msg_iovlen = 1};
      }
      int got = recvmmsg(listener, msgs, BATCH, MSG_DONTWAIT, NULL);
      for (int i = 0; i < got; i++) forward(bufs[i], msgs[i].msg_len, &from[i], now);
    }
    if (now - last_expire > 1000000000LL) {
      expire(now);
      last_expire = now;
    }
  }
}
