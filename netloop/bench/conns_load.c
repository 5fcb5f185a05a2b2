// Connection-holding load tool for netloop's bench:conns and scale test: opens COUNT TCP
// connections to 127.0.0.1:PORT from loopback source addresses of its own (127.SLICE.x.1, a new
// address every 1,000 connections, so that no source address runs out of ports), sends one 8-byte
// message on each as it opens and checks its echo, then holds them. Single-threaded epoll; run
// several, each with its own SLICE, for more. Compiled at bench/test time. Usage:
//   conns_load PORT COUNT SLICE [INTERVAL_SECONDS [dns|dot]]
// With INTERVAL_SECONDS (0: none), every connection sends one more message (checked) that often,
// the connections' turns spread evenly over the interval.
// With `dns`, a message is a DNS query over TCP (RFC 1035 framing; `h<N>.bench A`, N < 100) and
// its answer is checked by ID and the QR bit, instead of 8 bytes echoed. With `dot` (compiled with
// -DCONNS_TLS and -lssl -lcrypto), the same over TLS (DNS over TLS, ALPN `dot`, the server's
// certificate not checked), each connection's handshake done before its first query.
// Prints, once every connection has opened and echoed or failed:
//   open <held> <failed> <microseconds>
// then obeys lines on stdin:
//   ping       one message on every held connection; prints `pong <echoed> <bad> <us>` when all
//              are back (or gone)
//   probe K    K round trips, one at a time, on a connection of its own opened now; prints
//              `probe <p50 us> <p99 us> <max us>`
//   stats      prints `stats <held> <lost> <bad> <cpu seconds>`
//   active S MS  for S seconds every held connection sends a message every MS milliseconds (the
//              next once the last is answered; 0: at once), spread evenly; prints
//              `active <messages> <p50 us> <p99 us> <max us>` (round trips)
//   close      closes every connection; prints `closed <us>` and exits
// A connection the server closes counts as lost; an echo that differs as bad.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef CONNS_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#define IN_FLIGHT 512
#define STDIN_TAG 0xffffffffu

struct conn {
  int fd;
  uint32_t seq;
  uint16_t got;
  uint16_t skip;
  uint8_t waiting;
  uint8_t open;
  uint8_t hdr[5];
  double sent;
  double next;
#ifdef CONNS_TLS
  SSL *ssl;
  uint8_t handshaking;
#endif
};

static struct conn *conns;
static int count, slice, port, ep, dns, tls;
#ifdef CONNS_TLS
static SSL_CTX *ctx;
#endif
static long held, failed, lost, bad, opening, pinging, active_out, active_done;
static double ping_start, active_until, active_every;
#define HIST 200000
static uint32_t *hist;

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

// Writes a whole small message (a short write counts as a failure); returns bytes or -1.
static ssize_t io_write(struct conn *c, const uint8_t *out, int len) {
#ifdef CONNS_TLS
  if (c->ssl != NULL) return SSL_write(c->ssl, out, len) == len ? len : -1;
#endif
  return write(c->fd, out, len);
}

// Reads what is there: bytes, 0 at the end, or -1 with errno (EAGAIN: nothing more for now).
static ssize_t io_read(struct conn *c, uint8_t *in, size_t size) {
#ifdef CONNS_TLS
  if (c->ssl != NULL) {
    int n = SSL_read(c->ssl, in, (int)size);
    if (n > 0) return n;
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      errno = EAGAIN;
      return -1;
    }
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    errno = ECONNRESET;
    return -1;
  }
#endif
  return read(c->fd, in, size);
}

// The message `seq` of connection `id`; returns its length.
static int message(uint32_t id, uint32_t seq, uint8_t *out) {
  if (!dns) {
    memcpy(out, &id, 4);
    memcpy(out + 4, &seq, 4);
    return 8;
  }
  uint16_t qid = (uint16_t)(id * 7919u + seq);
  char name[16];
  int len = snprintf(name, sizeof name, "h%u", (id + seq) % 100);
  uint8_t *q = out + 2;
  q[0] = qid >> 8, q[1] = qid & 0xff, q[2] = 1, q[3] = 0;  // RD
  q[4] = 0, q[5] = 1, q[6] = q[7] = q[8] = q[9] = q[10] = q[11] = 0;
  int at = 12;
  q[at++] = len;
  memcpy(q + at, name, len);
  at += len;
  q[at++] = 5;
  memcpy(q + at, "bench", 5);
  at += 5;
  q[at++] = 0;
  q[at++] = 0, q[at++] = 1, q[at++] = 0, q[at++] = 1;  // A IN
  out[0] = at >> 8, out[1] = at & 0xff;
  return at + 2;
}

static void drop(int i, int was_lost) {
  struct conn *c = &conns[i];
  if (c->fd < 0) return;
#ifdef CONNS_TLS
  if (c->ssl != NULL) SSL_free(c->ssl);
  c->ssl = NULL;
  c->handshaking = 0;
#endif
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
  if (c->waiting == 3) active_out--;
  c->open = c->waiting = 0;
}

static void send_next(int i, int why) {
  struct conn *c = &conns[i];
  uint8_t out[64];
  int len = message(i, ++c->seq, out);
  c->got = c->skip = 0;
  c->waiting = why;
  if (why == 3) c->sent = now();
  if (io_write(c, out, len) != len) drop(i, 1);
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

// A whole reply to connection i's current message arrived.
static void answered(int i) {
  struct conn *c = &conns[i];
  int why = c->waiting;
  c->got = c->skip = 0;
  c->waiting = 0;
  if (!c->open) {
    c->open = 1;
    opening--;
    held++;
  }
  if (why == 2) pinging--;
  if (why == 3) {
    double us = (now() - c->sent) * 1e6;
    hist[us < HIST ? (int)us : HIST - 1]++;
    active_done++;
    active_out--;
    c->next = c->sent + active_every;
  }
}

static void readable(int i) {
  struct conn *c = &conns[i];
  uint8_t in[4096], want[64];
  ssize_t n = io_read(c, in, sizeof in);
  if (n == 0 || (n < 0 && errno != EAGAIN)) {
    drop(i, 1);
    return;
  }
  if (n < 0) return;
  int wlen = message(i, c->seq, want);
  for (ssize_t at = 0; at < n && c->fd >= 0;) {
    if (!dns) {  // 8 bytes, the same as sent (skip: set on a difference)
      if (in[at++] != want[c->got]) c->skip = 1;
      if (++c->got == wlen) {
        if (c->skip) bad++;
        answered(i);
      }
      continue;
    }
    if (c->got < 5) {  // length, ID, and the flags byte with QR
      c->hdr[c->got++] = in[at++];
      if (c->got == 5) {
        c->skip = (c->hdr[0] << 8 | c->hdr[1]) - 3;
        if (c->hdr[2] != want[2] || c->hdr[3] != want[3] || !(c->hdr[4] & 0x80)) bad++;
        if (c->skip == 0) answered(i);
      }
      continue;
    }
    ssize_t take = n - at < c->skip ? n - at : c->skip;
    at += take;
    c->skip -= take;
    if (c->skip == 0) answered(i);
  }
#ifdef CONNS_TLS
  // TLS may hold decrypted bytes the socket no longer signals: read until it wants more.
  if (c->fd >= 0 && c->ssl != NULL) readable(i);
#endif
}

// The first message on a connection whose TCP (and TLS) handshake is done.
static void first_message(int i) {
  struct conn *c = &conns[i];
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  uint8_t out[64];
  int size = message(i, 0, out);
  c->waiting = 1;
  if (io_write(c, out, size) != size) drop(i, 0);
}

#ifdef CONNS_TLS
// Moves connection i's TLS handshake on; sends the first query when it is done.
static void handshake(int i) {
  struct conn *c = &conns[i];
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    c->handshaking = 0;
    first_message(i);
    return;
  }
  int err = SSL_get_error(c->ssl, r);
  if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
    drop(i, 0);
    return;
  }
  c->handshaking = 1;
  struct epoll_event ev = {.events = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT,
                           .data.u32 = i};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}
#endif

static void probe(int k) {
  if (dns) {  // echo only: `active` measures DNS round trips
    printf("probe -1 -1 -1\n");
    fflush(stdout);
    return;
  }
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
  } else if (strncmp(line, "active", 6) == 0) {
    char *rest;
    double seconds = strtod(line + 7, &rest);
    active_every = strtod(rest, NULL) / 1000;
    memset(hist, 0, HIST * sizeof *hist);
    active_done = active_out = 0;
    double t = now();
    active_until = t + seconds;
    for (int i = 0; i < count; i++) conns[i].next = t + active_every * i / count;
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
    fprintf(stderr, "usage: conns_load PORT COUNT SLICE [INTERVAL_SECONDS [dns]]\n");
    return 2;
  }
  // A write to a connection the server reset (a TLS handshake it refused, say) fails with EPIPE
  // and counts as lost or failed, rather than killing the tool.
  signal(SIGPIPE, SIG_IGN);
  port = atoi(argv[1]);
  count = atoi(argv[2]);
  slice = atoi(argv[3]);
  double interval = argc > 4 ? atof(argv[4]) : 0;
  dns = argc > 5 && (strcmp(argv[5], "dns") == 0 || strcmp(argv[5], "dot") == 0);
  tls = argc > 5 && strcmp(argv[5], "dot") == 0;
#ifdef CONNS_TLS
  if (tls) {
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x03" "dot", 4);
  }
#else
  if (tls) {
    fprintf(stderr, "conns_load: `dot` needs a build with -DCONNS_TLS -lssl -lcrypto\n");
    return 2;
  }
#endif
  hist = calloc(HIST, sizeof *hist);
  conns = calloc(count, sizeof *conns);
  for (int i = 0; i < count; i++) conns[i].fd = -1;
  ep = epoll_create1(0);
  struct epoll_event in = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in);
  double t0 = now(), next_beat = interval > 0 ? t0 + interval : 0;
  int reported = 0, next = 0;
  long beat_sent = 0;
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
    if (active_until > 0) {
      double t = now();
      if (t < active_until) {
        for (int i = 0; i < count; i++) {
          struct conn *c = &conns[i];
          if (c->fd >= 0 && c->open && !c->waiting && c->next <= t) {
            active_out++;
            send_next(i, 3);
          }
        }
      }
      timeout = 1;
    }
    if (next_beat > 0) {
      // Spread over the interval: connection i sends at next_beat + interval * i / count.
      double t = now();
      long due = t < next_beat ? 0 : (long)((t - next_beat) / interval * count) + 1;
      for (; beat_sent < due; beat_sent++) {
        int i = beat_sent % count;
        if (conns[i].fd >= 0 && conns[i].open && !conns[i].waiting) send_next(i, 1);
      }
      double at = next_beat + interval * beat_sent / count;
      int wait = t < at ? (int)((at - t) * 1000) + 1 : 0;
      if (wait < timeout) timeout = wait;
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
#ifdef CONNS_TLS
      if (c->handshaking) {
        handshake(i);
        continue;
      }
#endif
      if (!c->open && !c->waiting && (events[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          drop(i, 0);
          continue;
        }
#ifdef CONNS_TLS
        if (tls) {
          c->ssl = SSL_new(ctx);
          SSL_set_fd(c->ssl, c->fd);
          SSL_set_connect_state(c->ssl);
          handshake(i);
          continue;
        }
#endif
        first_message(i);
        continue;
      }
      if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) readable(i);
    }
    if (active_until > 0 && active_out == 0 && now() >= active_until) {
      long seen = 0, p50 = -1, p99 = -1, max = 0;
      for (int b = 0; b < HIST; b++) {
        if (!hist[b]) continue;
        seen += hist[b];
        if (p50 < 0 && seen * 2 >= active_done) p50 = b;
        if (p99 < 0 && seen * 100 >= active_done * 99) p99 = b;
        max = b;
      }
      printf("active %ld %ld %ld %ld\n", active_done, p50, p99, max);
      fflush(stdout);
      active_until = 0;
    }
    if (pinging == 0 && ping_start > 0) {
      printf("pong %ld %ld %.0f\n", held, bad, (now() - ping_start) * 1e6);
      fflush(stdout);
      ping_start = 0;
    }
  }
}
