/* usdt_probes N: USDT probes with integer and string arguments (sys/sdt.h, systemtap-sdt-dev).
 *
 * For i in 0..N-1:
 *   pytrace:tick(i, name)                    arg0 int, arg1 char*: name is "zero" for i = 0,
 *                                            "one" for 1-2, "two" from 3 on (N = 10: 1, 2, 7)
 *   pytrace:pair(i, -i, (long)i * 1000000000) int, int, long
 * and once at the end: pytrace:done(N). Prints nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/sdt.h>

static const char *NAMES[] = {"zero", "one", "two"};

int main(int argc, char **argv)
{
    /* Fault the strings' page in now: a probe reading a string from a page never touched
     * gets an empty string (bpf_probe_read_user cannot fault pages in). */
    volatile size_t touched = 0;
    for (int k = 0; k < 3; k++)
        touched += strlen(NAMES[k]);
    int n = argc > 1 ? atoi(argv[1]) : 10;
    for (int i = 0; i < n; i++) {
        const char *name = NAMES[i < 1 ? 0 : i < 3 ? 1 : 2];
        int m = -i;
        long big = (long)i * 1000000000L;
        DTRACE_PROBE2(pytrace, tick, i, name);
        DTRACE_PROBE3(pytrace, pair, i, m, big);
    }
    DTRACE_PROBE1(pytrace, done, n);
    return 0;
}
