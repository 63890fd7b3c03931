/* loop N: calls the noinline function target(i) N times and prints the mean ns per call.
 * The benchmark target for uprobe overhead (benchmarks/uprobe_overhead.py). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline, used)) int target(int i)
{
    __asm__ volatile("" ::: "memory");
    return i + 1;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct timespec a, b;
    long sink = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        sink += target((int)i);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("%.1f\n", ns / n);
    return sink == 42 ? 1 : 0;
}
