/* vecfirst N [SLEEP_MS]: calls two functions N times and checks what they computed; prints
 * "ok N" or "WRONG k of N". bcast begins with vpbroadcastb (%rsi),%ymm1 (AVX2, VEX, opcode byte
 * 0x78: "js" to x86 uprobes, which emulate it as that jump instead of running it); plain begins
 * with an ordinary instruction. Needs AVX2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline, naked)) void bcast(unsigned char *dst, const unsigned char *src)
{
    __asm__("vpbroadcastb (%rsi), %ymm1\n"
            "vmovdqu %ymm1, (%rdi)\n"
            "vzeroupper\n"
            "ret\n");
}

__attribute__((noinline)) void plain(unsigned char *dst, const unsigned char *src)
{
    memset(dst, *src, 32);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1, wrong = 0;
    unsigned char dst[32], want[32];
    for (int i = 0; i < n; i++) {
        unsigned char b = (unsigned char)(i * 13 + 1);
        memset(want, b, sizeof want);
        memset(dst, 0, sizeof dst);
        bcast(dst, &b);
        wrong += memcmp(dst, want, sizeof dst) != 0;
        memset(dst, 0, sizeof dst);
        plain(dst, &b);
        wrong += memcmp(dst, want, sizeof dst) != 0;
    }
    if (argc > 2)
        usleep(atoi(argv[2]) * 1000);
    if (wrong)
        printf("WRONG %d of %d\n", wrong, 2 * n);
    else
        printf("ok %d\n", 2 * n);
    return 0;
}
