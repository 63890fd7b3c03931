"""Valid programs the fuzzer mutates (each must compile with FakeEnv; test_fuzz checks that)."""

CORPUS = [
    'BEGIN { printf("hello %s %d\\n", "world", 42); exit(); }',
    'BEGIN { @c = count(); @s = sum(5); @a = avg(3); @mn = min(1); @mx = max(2); @st = stats(9); }',
    'BEGIN { @h = hist(10); @l = lhist(15, 0, 100, 10); @k[1, "a"] = hist(3); }',
    'BEGIN { $x = 1; $x += 2; $x++; --$x; @m[$x] = $x * 2 + 3 << 1; print(@m); clear(@m); }',
    'BEGIN { $t = (1, "two", (3, -4)); print($t); printf("%d %s\\n", $t.0, $t.1); @t = $t; }',
    'BEGIN { if (1 == 2) { printf("a\\n"); } else if (3 > 2) { printf("b\\n"); } else { exit(); } }',
    'BEGIN { $i = 0; while ($i < 10) { $i++; if ($i == 3) { continue; } if ($i > 7) { break; } } }',
    'BEGIN { unroll(3) { @u = @u + 1; } @v = @u ? 5 : 6; return; }',
    'END { print(@late); } BEGIN { @late["k"] = 1; }',
    'tracepoint:syscalls:sys_enter_openat /pid / 2 == 1/ { printf("%s %s\\n", comm, str(args.filename)); }',
    'tracepoint:syscalls:sys_enter_openat, tracepoint:syscalls:sys_enter_read { @[probe] = count(); }',
    't:syscalls:sys_enter_* { @[args.__syscall_nr] = count(); }',
    'tracepoint:sched:sched_switch { @[args.prev_comm, args.next_pid] = count(); if (args.prev_comm == "swapper/0") { @sw++; } }',
    'tracepoint:sched:sched_process_exec { printf("%s\\n", str(args.filename)); }',
    'tracepoint:syscalls:sys_exit_read /args.ret > 0/ { @bytes = hist(args.ret); @r[tid] = args.ret; delete(@r[tid]); }',
    'uprobe:/bin/x:foo { @start[tid] = nsecs; printf("%d %d\\n", arg0, arg1); }',
    'uprobe:/bin/x:foo { @start[tid] = nsecs; } uretprobe:/bin/x:foo /@start[tid]/ { @lat = hist(nsecs - @start[tid]); delete(@start[tid]); @ret = retval; }',
    'uprobe:/bin/x:"ns::f" { @[ustack] = count(); @u = usym(arg0); print(func); }',
    'uprobe:/bin/x:0x1234 { printf("%s\\n", str(arg0, 8)); }',
    'u:/bin/x:foo* { @[func] = count(); }',
    'usdt:/bin/x:prov:start { printf("%d %d\\n", arg0, arg1); }',
    'usdt:/bin/x:stop { @stops = count(); }',
    'U:/bin/x:prov:* { @[probe] = count(); }',
    'profile:hz:99 { @[kstack] = count(); @k[kstack(5)] = count(); @p[ustack(perf, 3)] = count(); }',
    'interval:ms:100 { @n++; if (@n > 10) { exit(); } }',
    'i:s:1 { time("%H:%M:%S\\n"); print(@n, 3, 10); zero(@n); } BEGIN { @n = count(); }',
    'kfunc:vfs_read { @[args.count] = count(); @f = ((struct file *)args.file)->f_flags; }',
    'kretfunc:vfs_read { @r = hist(retval); }',
    'BEGIN { $p = (struct task_struct *)curtask; printf("%d %s\\n", $p->pid, $p->comm); @pp = $p->real_parent->tgid; }',
    'BEGIN { $s = (struct sock *)0; printf("%s\\n", ntop(2, $s->sk_daddr)); @a = ntop($s->sk_v6_daddr); }',
    'BEGIN { @b = (uint8)300 + (int16)-1 + (uint32)5 + (int64)7 + (bool)2; @c = ~0 & 0xff | 0b101 ^ 010; }',
    'BEGIN { @x = 1_000 + 1e3 - -5 % 3 / 2; @y = !@x || @x && 1; @z = @x >= 1 != 0 <= 1; }',
    'BEGIN { @s["a\\tb\\x41\\101\\\\\\""] = "v"; if (strncmp(comm, "bpf", 3) == 0) { printf("%s\\n", @s["x"]); } }',
    'BEGIN { @k = ksym(0); @st = kstack; printf("%s %s\\n", ksym(0), usym(0)); }',
    'BEGIN { printf("%d %d %s\\n", $#, $1, $2); }',
    '// comment\n#include <linux/sched.h>\nBEGIN /* block */ { /* inner */ @x = 1; // end\n}',
    'BEGIN { $a = "short"; $a = "a much longer string"; @m[$a] = 1; printf("%s %s\\n", $a, str($a)); }',
    'BEGIN { @[pid, tid, uid, gid, cpu, cgroup, rand, elapsed] = count(); printf("%s\\n", comm); }',
    'BEGIN { print((1, "a")); print(5); print("s"); @q = (pid, comm); }',
    'BEGIN { @i = 0; @i -= 1; @i *= 3; @i /= 2; @i %= 7; @i &= 3; @i |= 8; @i ^= 1; @i <<= 2; @i >>= 1; }',
    # bpftrace 0.27's language
    'config = { max_strlen = 32; missing_probes = "warn"; print_maps_on_exit = false } BEGIN { @a = 1; }',
    'let @l = lruhash(100); macro twice(x) { x * 2 } begin { @l[1] = twice(pid); $k = (1, "a"); @t[$k] = 1; '
    'if (has_key(@t, (1, "a"))) { $d = delete(@t, $k); } } end { print(len(@l)); }',
    'BEGIN { let $x: uint8 = 5; let $s; { let $z = "inner"; } $s = $x + 1; print(($s, true, false, 1s + 2ms + 3us + 4ns)); }',
    'BEGIN { @m[1] = "a"; for ($kv : @m) { printf("%d %s\\n", $kv.0, $kv.1); } for ($i : 0..5) { if ($i == 3) '
    '{ break; } if ($i == 1) { continue; } @n += $i; } }',
    'BEGIN { $t = curtask; $c = $t->comm[1]; $p = $t.real_parent.pid; $s = "abc"[1]; $u = (1, 2)[0]; '
    'print(($c, $p, $s, $u, sizeof(struct task_struct), offsetof(struct task_struct, comm))); }',
    'BEGIN { @c = count(); @s = sum(3); @a = avg(2); print(@c + @s + @a); @h = hist(5, 2); '
    'print((strlen("ab"), strstr("abc", "c"), strcontains("abc", "d"), memcmp("ab", "ac", 2))); }',
    'BEGIN { errorf("e %d", 1); warnf("w"); assert(pid > 0, "positive"); static_assert(sizeof(int32) == 4, "4"); '
    'exit(2); }',
    'BEGIN { print((strftime("%H:%M", nsecs), nsecs(monotonic), jiffies, ncpus, ppid, pcomm, pid(init), '
    'tid(curr_ns), username, cgroup_path(cgroup), strerror(2), syscall_name(0), signal_name(9))); }',
    'BEGIN { $o = getopt("depth", 3); print(($o, macaddr(comm), pid > 0 ? 1 : 0)); } '
    'END { print(*curtask); }',
    'struct Foo { int a; char b[4]; unsigned long c : 3; }; enum color { RED, GREEN = 5 }; '
    'BEGIN { $f = (struct Foo *)0; print(($f->a, $f->b, GREEN, (enum color)5, sizeof(struct Foo))); }',
    'rawtracepoint:sched_switch { @[args.next->pid] = count(); @p = arg1; } software:faults:100 { @f = count(); } '
    'hardware:cycles { @h = count(); }',
    'uprobe:/bin/x:main { $n = uaddr("names"); print((reg("ip"), *($n + 1), kptr(curtask), uptr($n))); '
    'print(buf("abcdef", 3)); }',
    'tracepoint:sched:sched_switch { @a = args; $a = args; print($a.prev_pid); interval_ok(); } '
    'macro interval_ok() { 1 } interval:1s { exit(); }',
]
