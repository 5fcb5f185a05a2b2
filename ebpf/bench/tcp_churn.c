// SPDX-License-Identifier: MIT
// A loopback TCP connection churner for the tracer benchmark (trace_bench.ts compiles it with
// clang -O2). One thread plays both sides as fast as the machine allows: connect, accept, client
// closes, server closes — the full state machine, so a tracer sees connect, accept and two closes
// per connection. Listeners on 127.0.0.1..127.0.0.8 spread the 4-tuples so TIME_WAIT on the client
// side (reused on loopback: net.ipv4.tcp_tw_reuse=2) does not exhaust the ephemeral ports.
// Usage: tcp_churn SECONDS  -> prints "<connections> <elapsed seconds>"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LISTENERS 8

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3;
	int listeners[LISTENERS];
	struct sockaddr_in addrs[LISTENERS];
	for (int i = 0; i < LISTENERS; i++) {
		struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = 0 };
		addr.sin_addr.s_addr = htonl(0x7f000001 + i);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		socklen_t len = sizeof(addr);
		if (fd < 0 || bind(fd, (struct sockaddr *)&addr, len) || listen(fd, 4096) ||
		    getsockname(fd, (struct sockaddr *)&addr, &len)) {
			perror("listen on 127.0.0.x");
			return 1;
		}
		listeners[i] = fd;
		addrs[i] = addr;
	}
	unsigned long connections = 0, failures = 0;
	double start = now(), end = start + seconds, t = start;
	while (t < end) {
		for (int i = 0; i < LISTENERS; i++) {
			int client = socket(AF_INET, SOCK_STREAM, 0);
			if (client < 0 || connect(client, (struct sockaddr *)&addrs[i], sizeof(addrs[i]))) {
				failures++;
				if (client >= 0)
					close(client);
				continue;
			}
			int server = accept(listeners[i], NULL, NULL);
			close(client);
			if (server >= 0)
				close(server);
			connections++;
		}
		if ((connections & 255) < LISTENERS)
			t = now();
	}
	printf("%lu %.3f %lu\n", connections, now() - start, failures);
	return failures > connections / 100;
}
