/* libpytracetest.so.1: a library with a USDT probe, installed in the container outside the host's
 * library paths (/opt/pytrace/lib, registered in the container's ld.so.cache). */
#include <sys/sdt.h>

#include "pytracetest.h"

long pytracetest_work(int tag, long i)
{
    /* No semaphore: the probe is always armed, so it can be attached by path without a PID. */
    DTRACE_PROBE2(pytracetest, work, tag, i);
    return i * 2 + tag;
}
