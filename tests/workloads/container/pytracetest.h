/* libpytracetest: the shared library of the container test workload. */
#ifndef PYTRACETEST_H
#define PYTRACETEST_H

/* Fires the USDT probe pytracetest:work(tag, i) and returns a value the caller uses. */
long pytracetest_work(int tag, long i);

#endif
