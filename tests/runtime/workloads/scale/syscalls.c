/* syscalls N: a known number of several system calls, for the syscall wildcard's tests.
 *   getppid N times, sched_yield 2N, uname 3N (tracepoint sys_enter_newuname: its entry point is
 *   not its uapi name), close(-1) N, and N 32-bit getpid calls through int $0x80 (number 20, which
 *   is writev's on x86_64): syscalls:* tracepoints ignore 32-bit system calls, so must the
 *   dispatcher. Prints nothing; exits 0. Filter on pid == cpid (-c) and comm == "syscalls" (after exec).
 */
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

static long ia32_getpid(void)
{
    long ret = 20; /* __NR_getpid of the i386 table */
    __asm__ volatile("int $0x80" : "+a"(ret) : : "memory");
    return ret;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1;
    struct utsname u;
    for (int i = 0; i < n; i++) {
        syscall(SYS_getppid);
        syscall(SYS_sched_yield);
        syscall(SYS_sched_yield);
        for (int k = 0; k < 3; k++)
            syscall(SYS_uname, &u);
        syscall(SYS_close, -1);
        ia32_getpid();
    }
    return 0;
}
