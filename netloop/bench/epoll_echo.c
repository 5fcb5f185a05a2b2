// A single-threaded epoll echo server (TCP, or UDP with "udp"), the native peer of netloop/bench.
// Level-triggered, one read and one write per event, like the textbook server; writes that would
// block are buffered per connection. Compiled by run.ts at bench time. Usage:
//   epoll_echo PORT [udp]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 65536
static char *pending[MAXFD];
static size_t pending_len[MAXFD];

static void flush_or_keep(int ep, int fd, const char *data, size_t len) {
  if (pending_len[fd] == 0) {
    ssize_t w = write(fd, data, len);
    if (w < 0) w = 0;
    data += w;
    len -= w;
    if (len == 0) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  }
  pending[fd] = realloc(pending[fd], pending_len[fd] + len);
  memcpy(pending[fd] + pending_len[fd], data, len);
  pending_len[fd] += len;
}

int main(int argc, char **argv) {
  int udp = argc > 2 && strcmp(argv[2], "udp") == 0;
  int lfd = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    perror("bind");
    return 1;
  }
  if (!udp) listen(lfd, 4096);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  static char buf[65536];
  struct epoll_event events[1024];
  for (;;) {
    int k = epoll_wait(ep, events, 1024, -1);
    for (int e = 0; e < k; e++) {
      int fd = events[e].data.fd;
      if (fd == lfd && udp) {
        for (;;) {
          struct sockaddr_in from;
          socklen_t fl = sizeof from;
          ssize_t r = recvfrom(lfd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
          if (r < 0) break;
          sendto(lfd, buf, r, 0, (struct sockaddr *)&from, fl);
        }
      } else if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
          if (c < 0) break;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
      } else {
        if (events[e].events & EPOLLOUT && pending_len[fd] > 0) {
          ssize_t w = write(fd, pending[fd], pending_len[fd]);
          if (w > 0) {
            memmove(pending[fd], pending[fd] + w, pending_len[fd] - w);
            pending_len[fd] -= w;
          }
          if (pending_len[fd] == 0) {
            struct epoll_event cev = {.events = EPOLLIN, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
          }
        }
        if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          ssize_t r = read(fd, buf, sizeof buf);
          if (r == 0 || (r < 0 && errno != EAGAIN)) {
            close(fd);
            pending_len[fd] = 0;
            continue;
          }
          if (r > 0) flush_or_keep(ep, fd, buf, r);
        }
      }
    }
  }
}
