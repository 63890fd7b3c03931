/* sysload MODE N [PATH]: a known number of one system call, for tracepoint tests.
 *   sysload open N PATH   openat(AT_FDCWD, PATH, O_RDONLY) N times (each fd closed again);
 *                         PATH may not exist (the calls still happen, returning -ENOENT)
 *   sysload read N        read(fd of /dev/zero, buf, k) for k = 1..N (sizes 1, 2, ..., N)
 *   sysload getppid N     getppid() N times
 * Prints nothing; exits 0. Filter on comm == "sysload" or pid == cpid.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int n = atoi(argv[2]);
    if (strcmp(argv[1], "open") == 0 && argc > 3) {
        for (int i = 0; i < n; i++) {
            int fd = (int)syscall(SYS_openat, AT_FDCWD, argv[3], O_RDONLY);
            if (fd >= 0)
                close(fd);
        }
    } else if (strcmp(argv[1], "read") == 0) {
        static char buf[1 << 16];
        int fd = open("/dev/zero", O_RDONLY);
        if (fd < 0)
            return 1;
        for (int k = 1; k <= n && k <= (int)sizeof(buf); k++)
            if (read(fd, buf, (size_t)k) < 0)
                return 1;
        close(fd);
    } else if (strcmp(argv[1], "getppid") == 0) {
        for (int i = 0; i < n; i++)
            syscall(SYS_getppid);
    } else {
        return 2;
    }
    return 0;
}
