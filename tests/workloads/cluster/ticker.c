/*
 * ticker: the test workload of the cluster tests (image localhost/kubectl-pytrace/workload).
 *
 *   ticker [-n COUNT] [-i INTERVAL_MS] [-f FILE]
 *
 * Every INTERVAL_MS (default 500) it calls pytrace_tick(n), which opens, reads and closes FILE
 * (default /etc/hostname) and prints "tick N" on stdout; after COUNT ticks (default 0: forever) it
 * exits 0. That gives tracers known events to observe: openat/read/write/close syscalls, and a
 * uprobe target (pytrace_tick, kept out of line) in a static binary built with symbols.
 * It exits on SIGTERM/SIGINT promptly even as PID 1 of a container.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

__attribute__((noinline)) long pytrace_tick(long n, const char *path)
{
	char buf[256];
	long got = -1;
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		got = read(fd, buf, sizeof(buf));
		close(fd);
	}
	printf("tick %ld\n", n);
	fflush(stdout);
	return got;
}

int main(int argc, char **argv)
{
	long count = 0, interval_ms = 500;
	const char *path = "/etc/hostname";
	int opt;
	while ((opt = getopt(argc, argv, "n:i:f:")) != -1) {
		switch (opt) {
		case 'n': count = strtol(optarg, NULL, 10); break;
		case 'i': interval_ms = strtol(optarg, NULL, 10); break;
		case 'f': path = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-n COUNT] [-i INTERVAL_MS] [-f FILE]\n", argv[0]);
			return 2;
		}
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	for (long n = 1; !stop && (count == 0 || n <= count); n++) {
		pytrace_tick(n, path);
		if (count != 0 && n == count)
			break;
		struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
		while (!stop && nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
	}
	return 0;
}
