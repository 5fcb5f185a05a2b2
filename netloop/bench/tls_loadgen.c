// TLS load generator for netloop/bench --tls (OpenSSL, blocking sockets, PROCS forked processes).
//   full:    new connection, full TLS 1.3 handshake, 1-byte round trip, close (RST), repeat
//   resumed: the same, resuming the session from the first connection's ticket
//   echo:    one connection per process, DEPTH messages of SIZE bytes in flight
// Compiled by run_tls.ts at bench time (needs libssl-dev). Usage:
//   tls_loadgen full|resumed|echo HOST PORT PROCS DEPTH SIZE SECONDS WARMUP CAFILE
// Prints: ops=<operations in the window> cpu=<CPU seconds the processes used in the window>
// reused=<handshakes that resumed>
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct result {
  long ops, reused;
  double cpu;
};

static double clock_of(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sockaddr_in addr;

static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct linger linger = {1, 0};  // close with RST: no TIME_WAIT piling up on the client
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    perror("connect");
    exit(1);
  }
  return fd;
}

static void fail(const char *what) {
  fprintf(stderr, "%s failed\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

static int read_all(SSL *ssl, char *buf, int n) {
  for (int got = 0; got < n;) {
    int r = SSL_read(ssl, buf + got, n - got);
    if (r <= 0) return 0;
    got += r;
  }
  return 1;
}

static void run(const char *mode, int depth, int size, double start, double end, SSL_CTX *ctx,
                struct result *out) {
  double cpu0 = -1;
  char *msg = malloc(size), *in = malloc((size_t)size * depth);
  memset(msg, 'x', size);
  SSL_SESSION *session = NULL;
  SSL *ssl = NULL;
  int fd = -1;
  if (strcmp(mode, "echo") == 0) {
    fd = dial();
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (SSL_connect(ssl) != 1) fail("SSL_connect");
  }
  for (;;) {
    double t = clock_of(CLOCK_MONOTONIC);
    if (t >= end) break;
    if (t >= start && cpu0 < 0) cpu0 = clock_of(CLOCK_PROCESS_CPUTIME_ID);
    if (ssl != NULL) {
      for (int i = 0; i < depth; i++) {
        if (SSL_write(ssl, msg, size) != size) fail("SSL_write");
      }
      if (!read_all(ssl, in, size * depth)) fail("SSL_read");
      if (t >= start) out->ops += depth;
      continue;
    }
    int c = dial();
    SSL *s = SSL_new(ctx);
    SSL_set_fd(s, c);
    SSL_set_tlsext_host_name(s, "localhost");
    if (session != NULL) SSL_set_session(s, session);
    if (SSL_connect(s) != 1) fail("SSL_connect");
    // A round trip: the server has finished its side, and the tickets have arrived.
    if (SSL_write(s, "x", 1) != 1 || !read_all(s, in, 1)) fail("round trip");
    if (strcmp(mode, "resumed") == 0 && session == NULL) session = SSL_get1_session(s);
    if (t >= start) {
      out->ops++;
      out->reused += SSL_session_reused(s);
    }
    SSL_shutdown(s);  // close_notify: a session freed without it is no longer resumable
    SSL_free(s);
    close(c);
  }
  if (cpu0 >= 0) out->cpu = clock_of(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
}

int main(int argc, char **argv) {
  if (argc != 10) {
    fprintf(stderr,
            "usage: %s full|resumed|echo HOST PORT PROCS DEPTH SIZE SECONDS WARMUP CAFILE\n",
            argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(atoi(argv[3]));
  inet_pton(AF_INET, argv[2], &addr.sin_addr);
  int procs = atoi(argv[4]), depth = atoi(argv[5]), size = atoi(argv[6]);
  double start = clock_of(CLOCK_MONOTONIC) + atof(argv[8]);
  double end = start + atof(argv[7]);
  struct result *results = mmap(NULL, sizeof(struct result) * procs, PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  for (int p = 0; p < procs; p++) {
    if (fork() == 0) {
      SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
      if (SSL_CTX_load_verify_locations(ctx, argv[9], NULL) != 1) fail("CA");
      run(argv[1], depth, size, start, end, ctx, &results[p]);
      _exit(0);
    }
  }
  int ok = 1, status;
  while (wait(&status) > 0) ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
  struct result sum = {0};
  for (int p = 0; p < procs; p++) {
    sum.ops += results[p].ops;
    sum.reused += results[p].reused;
    sum.cpu += results[p].cpu;
  }
  printf("ops=%ld cpu=%.3f reused=%ld\n", sum.ops, sum.cpu, sum.reused);
  return ok ? 0 : 1;
}
