// The C peer of the ring buffer benchmark: libbpf's ring_buffer__poll on a pinned ring buffer map.
// Compiled by ringbuf_bench.ts at bench time (never committed as a binary).
// Usage: ringbuf_consumer <pinned map path> <seconds> [records]: polls for <seconds> and prints
// "<records> <checksum>"; with [records], drains an already filled ring with ring_buffer__consume
// until that many records were read and prints "<records> <checksum> <seconds taken>".
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static unsigned long long records, checksum;

static int handle(void *ctx, void *data, size_t size)
{
	records++;
	checksum += *(unsigned int *)data; // touch the record, as the TypeScript consumer does
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: %s <pinned ring buffer map> <seconds> [records]\n", argv[0]);
		return 2;
	}
	int fd = bpf_obj_get(argv[1]);
	if (fd < 0) {
		perror("bpf_obj_get");
		return 1;
	}
	struct ring_buffer *rb = ring_buffer__new(fd, handle, NULL, NULL);
	if (!rb) {
		perror("ring_buffer__new");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	double deadline = now() + atof(argv[2]);
	if (argc == 4) {
		unsigned long long expect = strtoull(argv[3], NULL, 10);
		double start = now();
		while (records < expect && now() < deadline)
			ring_buffer__consume(rb);
		printf("%llu %llu %.9f\n", records, checksum, now() - start);
		ring_buffer__free(rb);
		return 0;
	}
	while (now() < deadline)
		ring_buffer__poll(rb, 50);
	ring_buffer__consume(rb);
	printf("%llu %llu\n", records, checksum);
	ring_buffer__free(rb);
	return 0;
}
