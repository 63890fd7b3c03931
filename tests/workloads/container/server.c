/* The container test workload.
 *
 *   server TAG [ITERATIONS [INTERVAL_US]]
 *
 * Each iteration calls handle(TAG) (a uprobe target), pytracetest_work(TAG, i) in libpytracetest
 * (a USDT probe target), and opens /tmp/pytrace-marker-TAG (an openat to count). ITERATIONS 0
 * (the default) loops until killed; INTERVAL_US (default 1000) is the pause between iterations.
 * TAG tells the events of one process from another's: two containers run it with different tags.
 * Prints "ready" when it starts and "done N" when it has finished N iterations.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "pytracetest.h"

volatile long sink;

__attribute__((noinline)) int handle(int tag)
{
    __asm__ volatile("" ::: "memory");   /* keep the call and its argument */
    sink += tag;
    return tag;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TAG [ITERATIONS [INTERVAL_US]]\n", argv[0]);
        return 2;
    }
    int tag = atoi(argv[1]);
    long n = argc > 2 ? atol(argv[2]) : 0;
    long interval = argc > 3 ? atol(argv[3]) : 1000;
    char marker[64];
    snprintf(marker, sizeof marker, "/tmp/pytrace-marker-%d", tag);

    printf("ready\n");
    fflush(stdout);
    long i;
    for (i = 0; n == 0 || i < n; i++) {
        handle(tag);
        sink += pytracetest_work(tag, i);
        int fd = open(marker, O_RDONLY | O_CREAT, 0644);
        if (fd >= 0)
            close(fd);
        if (interval > 0)
            usleep(interval);
    }
    printf("done %ld\n", i);
    return 0;
}
