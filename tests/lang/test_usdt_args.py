"""lang/usdt.py: USDT argument specs as notes write them, read into C the program runs; checked by
compiling the C with gcc against a pt_regs filled by hand (no kernel needed)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from kubectl_pytrace.lang.usdt import UsdtArg, UsdtArgError, parse_arg, parse_args


def test_forms():
    assert parse_arg("8@%rbx") == UsdtArg(8, False, "reg", reg="bx")
    assert parse_arg("-4@%edi") == UsdtArg(4, True, "reg", reg="di")
    assert parse_arg("-4@$5") == UsdtArg(4, True, "const", value=5)
    assert parse_arg("8@$0x10") == UsdtArg(8, False, "const", value=16)
    assert parse_arg("-4@112(%rsp)") == UsdtArg(4, True, "mem", reg="sp", value=112)
    assert parse_arg("8@-144(%rbp)") == UsdtArg(8, False, "mem", reg="bp", value=-144)
    assert parse_arg("4@8(%rax,%rdx,4)") == UsdtArg(4, False, "mem", reg="ax", value=8, index="dx", scale=4)
    assert parse_arg("2@(%r12)") == UsdtArg(2, False, "mem", reg="r12", value=0)
    assert parse_arg("1@%r9b") == UsdtArg(1, False, "reg", reg="r9")
    assert [a.kind for a in parse_args("-4@%edi 8@-24(%rbp) -8@$3")] == ["reg", "mem", "const"]


@pytest.mark.parametrize("bad", ["8%rax", "3@%rax", "8@%xmm0", "8@foo(%rip)", "8@sym", "8@$x", "8@8(%rip)"])
def test_refused(bad):
    with pytest.raises(UsdtArgError):
        parse_arg(bad)


C_TEST = r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>
typedef int8_t s8; typedef uint8_t u8; typedef int16_t s16; typedef uint16_t u16;
typedef int32_t s32; typedef uint32_t u32; typedef int64_t s64; typedef uint64_t u64;
#define PYTRACE_REG(ctx, i) (((u64 *)(ctx))[i])
static long bpf_probe_read_user(void *dst, int size, const void *src) { memcpy(dst, src, size); return 0; }
int main(void) {
    u64 regs[21] = {0};
    s64 stack[4] = {-7, 123456789012LL, 0, 0};
    int32_t arr[4] = {10, 20, -30, 40};
    regs[5] = 0xffffffff00000005ULL;        /* bx */
    regs[14] = (u64)(int32_t)-3;             /* di */
    regs[4] = (u64)&stack[2];                /* bp: stack[0] is at bp - 16 */
    regs[10] = (u64)&arr[0];                 /* ax */
    regs[12] = 2;                            /* dx */
%s
    return 0;
}
"""


def test_the_c_reads_what_the_spec_says(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    specs = ["8@%rbx", "-4@%ebx", "-4@%edi", "4@%edi", "-8@-16(%rbp)", "8@-8(%rbp)", "-4@(%rax,%rdx,4)",
             "-4@4(%rax)", "-2@$-2", "8@$42"]
    body = []
    for i, spec in enumerate(specs):
        stmts, expr = parse_arg(spec).c("regs", f"t{i}")
        body.append("    { " + " ".join(stmts) + f' printf("%lld\\n", (long long){expr}); }}')
    src = tmp_path / "t.c"
    src.write_text(C_TEST % "\n".join(body))
    subprocess.run([cc, "-w", "-o", str(tmp_path / "t"), str(src)], check=True)
    got = subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, check=True).stdout.split()
    assert got == [str(0xffffffff00000005 - 2 ** 64), "5", "-3", str(2 ** 32 - 3), "-7", "123456789012", "-30", "20", "-2", "42"]
