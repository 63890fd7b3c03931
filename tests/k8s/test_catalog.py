"""The programs library: headers, typed parameters, and what reaches the compiler."""
from __future__ import annotations

import pytest

from kubectl_pytrace import catalog
from kubectl_pytrace.errors import UsageError

PROGRAM = """#!/usr/bin/env bpftrace
// description: Slow things, slower than a threshold
// arg: binary string /usr/bin/x  The binary
// param: threshold duration 100ms  Slower than this
// param: pid int 0  Only this process
// param: verbose bool false  Say more
// needs: usdt
usdt:$1:p:start { }
// param: ignored int 1  (not in the header: after the first line of code)
"""


@pytest.fixture
def library(tmp_path):
    (tmp_path / "slow.bt").write_text(PROGRAM)
    (tmp_path / "plain.bt").write_text("BEGIN { }\n")
    (tmp_path / "notes.txt").write_text("not a program")
    return str(tmp_path)


def test_headers(library):
    progs = {p.name: p for p in catalog.programs(library)}
    assert sorted(progs) == ["plain", "slow"]
    slow = progs["slow"]
    assert slow.description == "Slow things, slower than a threshold"
    assert [a.name for a in slow.args] == ["binary"]
    assert [(p.name, p.type, p.default) for p in slow.params] == [
        ("threshold", "duration", "100ms"), ("pid", "int", "0"), ("verbose", "bool", "false")]
    assert slow.needs == ["usdt"]
    assert progs["plain"].params == [] and progs["plain"].description == ""


def test_arguments_are_typed_values(library):
    slow = catalog.find("slow", library)
    assert slow.arguments({}) == ["/usr/bin/x", "--threshold=100000000", "--pid=0", "--verbose=false"]
    assert slow.arguments({"threshold": "2s", "pid": "0x10", "verbose": "yes", "binary": "/opt/y"}) == [
        "/opt/y", "--threshold=2000000000", "--pid=16", "--verbose=true"]


@pytest.mark.parametrize("given, message", [
    ({"threshold": "soon"}, "--param threshold=soon: expects a duration"),
    ({"pid": "one"}, "--param pid=one: expects an integer"),
    ({"verbose": "maybe"}, "--param verbose=maybe: expects true or false"),
    ({"nope": "1"}, "program slow has no parameter 'nope'"),
])
def test_bad_parameters(library, given, message):
    with pytest.raises(UsageError) as e:
        catalog.find("slow", library).arguments(given)
    assert message in e.value.message


def test_unknown_program_and_bad_pairs(library):
    with pytest.raises(UsageError) as e:
        catalog.find("nope", library)
    assert "no program named 'nope'" in e.value.message and "slow" in e.value.hint
    with pytest.raises(UsageError):
        catalog.parse_params(["novalue"])
    assert catalog.parse_params(["a=b=c", "d="]) == {"a": "b=c", "d": ""}


def test_a_bad_header_names_the_file(tmp_path):
    (tmp_path / "bad.bt").write_text("// param: threshold seconds 1\nBEGIN { }\n")
    with pytest.raises(ValueError) as e:
        catalog.programs(str(tmp_path))
    assert "programs/bad.bt: bad parameter line" in str(e.value)


def test_a_parameter_without_default_is_required(tmp_path):
    (tmp_path / "count.bt").write_text("// arg: binary string -  The binary\n// param: n int 1  N\nBEGIN { }\n")
    prog = catalog.find("count", str(tmp_path))
    with pytest.raises(UsageError) as e:
        prog.arguments({})
    assert e.value.message == "program count needs --param binary=VALUE"
    assert prog.arguments({"binary": "/opt/x"}) == ["/opt/x", "--n=1"]


def test_the_shipped_programs_have_valid_headers():
    progs = catalog.programs()
    assert progs
    for p in progs:
        p.arguments({x.name: "1" for x in p.args + p.params if x.required})  # every default is valid
    assert {"tcpretrans", "opensnoop", "execsnoop", "syscount", "biolatency", "funccount", "filewatch",
            "slowqueries", "pygc"} <= {p.name for p in progs}
