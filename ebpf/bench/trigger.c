// The benchmark's trigger: calls getppid() in a loop for some seconds, optionally paced to a
// number of calls per second. Compiled by ringbuf_bench.ts at bench time.
// Usage: trigger <seconds> [calls per second]; waits for a line on stdin before starting.
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = atof(argv[1]);
	double rate = argc > 2 ? atof(argv[2]) : 0;
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	double start = now(), end = start + seconds;
	unsigned long long calls = 0;
	for (double t = start; t < end; t = now()) {
		if (rate > 0 && calls > (t - start) * rate)
			continue; // ahead of the pace: spin
		for (int i = 0; i < 16; i++)
			syscall(SYS_getppid);
		calls += 16;
	}
	printf("%llu\n", calls);
	return 0;
}
