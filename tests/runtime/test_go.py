"""uprobes on a Go binary (tests/workloads/go, built here with Go >= 1.17): arguments follow Go's
register ABI, Go symbol names are written in quotes, strings come with gostr(), and uretprobes are
uprobes on the function's RET instructions. Every value checked is one the kernel's uprobe read from the running program."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.root, pytest.mark.bpf]

PROGRAM = """
uprobe:{go}:main.handle
{{
	printf("handle n=%d name=%s id=%d weight=%d\\n", arg0, gostr(arg1, arg2), *(int64 *)arg3, *(int64 *)(arg3 + 8));
}}

uprobe:{go}:"main.(*server).serve"
{{
	printf("serve n=%d calls=%d\\n", arg1, *(int64 *)arg0);
}}
"""


def test_int_string_and_struct_pointer_arguments(pytrace, go_workload):
    t = pytrace("-e", PROGRAM.format(go=go_workload), "-c", f"{go_workload} 5 20")
    assert t.finish(timeout=120) == 0, t.stderr
    handles = re.findall(r"^handle n=(\d+) name=(\S+) id=(\d+) weight=(\d+)$", t.stdout, re.M)
    # handle(i, "caller-"+i, &request{ID: 1000+i, Weight: 7*i}), as goserver.go calls it
    assert handles == [(str(i), f"caller-{i}", str(1000 + i), str(7 * i)) for i in range(1, 6)], t.stdout
    serves = re.findall(r"^serve n=(\d+) calls=(\d+)$", t.stdout, re.M)
    # (*server).serve(i): the receiver in RAX (arg0), its calls field before the increment
    assert serves == [(str(i), str(i - 1)) for i in range(1, 6)], t.stdout


def test_str_keeps_bpftraces_meaning_and_gostr_the_whole_string(pytrace, go_workload):
    prog = (f'uprobe:{go_workload}:main.handle /arg0 == 12/ {{ printf("[%s] [%s]\\n", str(arg1, arg2), '
            f'gostr(arg1, arg2)); exit(); }}')
    t = pytrace("-e", prog, "-c", f"{go_workload} 12 5")
    assert t.finish(timeout=120) == 0, t.stderr
    assert "[caller-1] [caller-12]\n" in t.stdout  # str(p, n): n bytes with the NUL, as bpftrace 0.27


def test_uretprobe_on_a_go_function_fires_at_each_return_with_its_result(pytrace, go_workload):
    # handle(i, "caller-"+i, &request{ID: 1000+i}) returns i + len(name) + 1000 + i; serve(i) returns
    # calls * i = i * i: uprobes on their RET instructions, the results in RAX as Go's ABI puts them
    prog = (f'uretprobe:{go_workload}:main.handle {{ printf("handle -> %d %s\\n", retval, probe); }}\n'
            f'uretprobe:{go_workload}:"main.(*server).serve" {{ printf("serve -> %d\\n", retval); }}\n'
            f'uprobe:{go_workload}:main.handle {{ @depth = 1; }}')
    t = pytrace("-e", prog, "-c", f"{go_workload} 5 20")
    assert t.finish(timeout=120) == 0, t.stderr
    handles = re.findall(r"^handle -> (\d+) (\S+)$", t.stdout, re.M)
    name_len = [len(f"caller-{i}") for i in range(1, 6)]
    assert handles == [(str(i + name_len[i - 1] + 1000 + i), f"uretprobe:{go_workload}:main.handle")
                       for i in range(1, 6)], t.stdout
    assert re.findall(r"^serve -> (\d+)$", t.stdout, re.M) == [str(i * i) for i in range(1, 6)], t.stdout


def test_uretprobe_on_a_go_function_whose_stack_moves(pytrace, go_workload):
    # grow(64) recurses on a new goroutine whose stack Go copies to a larger one meanwhile: a kernel
    # uretprobe's planted return address kills the program there ("fatal error: unknown caller pc",
    # as bpftrace's does); uprobes on the RET instructions leave the stack alone
    prog = (f'uretprobe:{go_workload}:main.grow {{ @returns = count(); @max = max(retval); }}')
    t = pytrace("-e", prog, "-c", f"{go_workload} 5 20")
    assert t.finish(timeout=120) == 0, t.stderr
    assert "call 5" in t.stdout and "fatal error" not in t.stdout + t.stderr, t.stdout + t.stderr
    assert "@returns: 325\n" in t.stdout  # 65 returns (depth 64 .. 0) per call, 5 calls
    assert "@max: 32\n" in t.stdout  # grow(64): the odd depths


def test_uretprobe_at_an_address_of_a_go_binary_and_on_stack_abi_is_refused(pytrace, go_workload):
    t = pytrace("-e", f"uretprobe:{go_workload}:0x401000 {{ print(retval); }}")
    assert t.finish(timeout=60) == 1
    assert "uretprobes on an address of a Go binary are refused" in t.stderr
    t = pytrace("-e", f"uretprobe:{go_workload}:main.sum3.abi0 {{ print(retval); }}")
    assert t.finish(timeout=60) == 1
    assert "uretprobes are not supported on functions of Go's stack ABI" in t.stderr
    assert f"uprobe:{go_workload}:0xADDRESS" in t.stderr


def test_stack_abi_arguments_of_an_abi0_function(pytrace, go_workload):
    # sum3 is written in Go's assembler: ABI0, its arguments on the stack (as every Go function's
    # before 1.17) above the return address, in a binary whose other functions use registers
    prog = (f'uprobe:{go_workload}:main.sum3.abi0 {{ printf("sum3 %d %d %d\\n", arg0, arg1, arg2); }}\n'
            f'uprobe:{go_workload}:main.handle {{ printf("handle %d\\n", arg0); }}')
    t = pytrace("-e", prog, "-c", f"{go_workload} 4 20")
    assert t.finish(timeout=120) == 0, t.stderr
    sums = re.findall(r"^sum3 (\d+) (\d+) (\d+)$", t.stdout, re.M)
    assert sums == [(str(i), str(10 * i), str(100 * i)) for i in range(1, 5)], t.stdout
    assert re.findall(r"^handle (\d+)$", t.stdout, re.M) == [str(i) for i in range(1, 5)], t.stdout


def test_return_sites_agree_with_objdump(go_workload):
    # Capstone's RETs of main.grow and main.handle, against binutils' disassembly of the same bytes
    import shutil
    import subprocess
    from kubectl_pytrace.host.elf import open_elf
    from kubectl_pytrace.host.env import HostEnvironment
    if not shutil.which("objdump"):
        pytest.skip("needs objdump (binutils)")
    env = HostEnvironment()
    for func in ("main.grow", "main.handle"):
        start = open_elf(str(go_workload)).symbol_address(func)
        dump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--disassemble={func}", str(go_workload)],
                              capture_output=True, text=True, check=True).stdout
        rets = [int(m.group(1), 16) - start for m in re.finditer(r"^\s*([0-9a-f]+):\s+ret", dump, re.M)]
        assert rets and env.return_sites(str(go_workload), func) == rets, dump
