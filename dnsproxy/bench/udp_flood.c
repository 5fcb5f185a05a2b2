// A UDP DNS query flood for `deno task bench:dns --flood`: from COUNT source addresses
// (BASE .. BASE+COUNT-1, already on an interface), to DST:PORT, at RATE packets/s for SECONDS,
// with sendmmsg in batches. Prints the packets sent and its own CPU time.
// Usage: udp_flood BASE COUNT DST PORT RATE SECONDS
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: udp_flood BASE COUNT DST PORT RATE SECONDS\n");
    return 2;
  }
  struct in_addr base;
  inet_pton(AF_INET, argv[1], &base);
  int count = atoi(argv[2]);
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[4]))};
  inet_pton(AF_INET, argv[3], &dst.sin_addr);
  double rate = atof(argv[5]), seconds = atof(argv[6]);
  int socks[256];
  if (count < 1 || count > 256) return 2;
  for (int i = 0; i < count; i++) {
    socks[i] = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(ntohl(base.s_addr) + i);
    if (bind(socks[i], (struct sockaddr *)&src, sizeof src) < 0) {
      perror("bind");
      return 1;
    }
    connect(socks[i], (struct sockaddr *)&dst, sizeof dst);
  }
  // A query for q.flood.bench A, no EDNS.
  unsigned char query[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'q', 5, 'f', 'l', 'o', 'o',
                           'd', 5, 'b', 'e', 'n', 'c', 'h', 0, 0, 1, 0, 1};
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = query;
    iov[i].iov_len = sizeof query;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  double start = now(), end = start + seconds;
  unsigned long long sent = 0;
  int next = 0;
  for (double t = start; t < end; t = now()) {
    double due = (t - start) * rate;
    if (sent + BATCH > due) {
      struct timespec pause = {0, 200000};
      nanosleep(&pause, NULL);
      continue;
    }
    int n = sendmmsg(socks[next], msgs, BATCH, 0);
    if (n > 0) sent += n;
    next = (next + 1) % count;
  }
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
               usage.ru_stime.tv_usec / 1e6;
  printf("{\"sent\":%llu,\"seconds\":%.3f,\"cpu\":%.3f}\n", sent, now() - start, cpu);
  return 0;
}
