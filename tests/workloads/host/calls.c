/* calls N [SLEEP_MS]: uprobe/uretprobe target with a known call sequence.
 *
 * For i in 0..N-1, in this order:
 *   outer(i)            -> work(i) + 1
 *   work(i)             -> i * 2
 *   neg(i)              -> -(long)i * 1000
 *   add3(i, -i, 7)      -> 7
 *   greet(name_of(i))   -> strlen(name): "alpha" for i = 0, "beta" for 1-2, "gamma" for 3-5,
 *                          "delta-epsilon" from 6 on (N = 10: 1, 2, 3 and 4 calls: no ties)
 * then sleeps SLEEP_MS milliseconds (so user stacks can still be resolved) and exits 0.
 * Prints nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, used))

static const char *NAMES[] = {"alpha", "beta", "gamma", "delta-epsilon"};

static const char *name_of(int i) { return NAMES[i < 1 ? 0 : i < 3 ? 1 : i < 6 ? 2 : 3]; }

NOINLINE int work(int i) { __asm__ volatile("" ::: "memory"); return i * 2; }
NOINLINE int outer(int i) { __asm__ volatile("" ::: "memory"); return work(i) + 1; }
NOINLINE long neg(long i) { __asm__ volatile("" ::: "memory"); return -i * 1000; }
NOINLINE int add3(int a, int b, int c) { __asm__ volatile("" ::: "memory"); return a + b + c; }
NOINLINE int greet(const char *name) { __asm__ volatile("" ::: "memory"); return (int)strlen(name); }

int main(int argc, char **argv)
{
    /* Fault the strings' page in now: a probe reading a string from a page never touched
     * gets an empty string (bpf_probe_read_user cannot fault pages in). */
    volatile size_t touched = 0;
    for (int k = 0; k < 4; k++)
        touched += strlen(NAMES[k]);
    int n = argc > 1 ? atoi(argv[1]) : 10;
    long sink = 0;
    for (int i = 0; i < n; i++) {
        sink += outer(i);
        sink += neg(i);
        sink += add3(i, -i, 7);
        sink += greet(name_of(i));
    }
    if (argc > 2)
        usleep((useconds_t)atoi(argv[2]) * 1000);
    return sink == 42424242 ? 1 : 0;
}
