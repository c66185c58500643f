"""Whatever bytes a policy file holds, loading it gives a policy or `PATH:LINE:COLUMN` problems.

Each example is the default `config/sop.yaml` with a few random mutations: flipped bytes, deleted or
duplicated lines, YAML syntax characters, tabs, control characters, deep nesting, alias bombs,
impossible dates, bytes that are not UTF-8, or the whole file saved as GBK. `load_policy` must
return a Policy or raise `PolicyError`, and every problem must point inside the file. The named
cases, with their exact messages, are in tests/test_policy_language.py.

Run more examples locally with `FUZZ_EXAMPLES=2000 pytest tests/test_policy_fuzz.py`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import loader
from config.loader import PolicyError, decode_policy, load_policy, parse_policy
from config.schema import Policy

SOP_BYTES = (Path(__file__).parents[1] / "config" / "sop.yaml").read_bytes()
SOP_LINES = SOP_BYTES.splitlines(keepends=True)
YAML_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),
    deadline=None,
    # The one fixture that varies per test, `yaml_parser`, is the same for every example.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

SYNTAX = [":", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!", "!!int ", "|", ">", "'", '"', "#", "?"]
SYNTAX += ["%", "@", "`", "<<: ", "\t", "\n", "\r", "  ", "\x00", "\x01", "\x1b", "\x7f", "\u2028", "\ufeff"]
ODD_VALUES = ["2024-02-30", "2023-13-01", "0000-01-01", "2024-02-29T25:00:00", "9" * 5000, "0x_", "0b_", "._"]
ODD_VALUES += ["!!bool maybe", "!!timestamp noon", "!!binary ???", "!!python/object:os.system x", "!!set [a]"]
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=False)
)


def _insert(data: bytes, at: int, piece: bytes) -> bytes:
    at %= len(data) + 1
    return data[:at] + piece + data[at:]


@st.composite
def mutation(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(
        st.sampled_from(
            ["flip", "delete", "duplicate", "syntax", "value", "nesting", "bomb", "bytes", "holiday"]
        )
    )
    at = draw(st.integers(0, max(len(data) - 1, 0)))
    lines = data.splitlines(keepends=True) or [b""]
    line = at % len(lines)
    if kind == "flip" and data:
        return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
    if kind == "delete":
        return b"".join(lines[:line] + lines[line + 1 :])
    if kind == "duplicate":
        return b"".join(lines[: line + 1] + lines[line:])
    if kind == "syntax":
        return _insert(data, at, draw(st.sampled_from(SYNTAX)).encode())
    if kind == "value":
        return _insert(data, at, f" {draw(st.sampled_from(ODD_VALUES))}\n".encode())
    if kind == "nesting":
        depth, indent = draw(st.integers(40, 400)), draw(st.sampled_from([0, 2, 4]))
        flow = "[" * depth + "1" + "]" * depth
        nested = draw(st.sampled_from([flow, "\n" + " " * indent + "- " * depth + "1"]))
        return b"".join([*lines[:line], f"{' ' * indent}deep: {nested}\n".encode(), *lines[line:]])
    if kind == "bomb":
        return data + b"\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + ALIAS_BOMB.encode()
    if kind == "bytes":
        high = draw(st.tuples(st.integers(0x80, 0xFF), st.binary(max_size=3)))
        return _insert(data, at, bytes([high[0]]) + high[1])
    day = draw(st.sampled_from(["2024-02-30", "2024-02-29", "2024-04-31", "not-a-date", "2024-2-3"]))
    return data.replace(b"      holidays: {country: CN}\n", f"      extra_holidays: [{day}]\n".encode())


@st.composite
def mutated_policies(draw: st.DrawFn) -> bytes:
    data = SOP_BYTES
    for _ in range(draw(st.integers(1, 4))):
        data = draw(mutation(data))
    if draw(st.booleans()):
        data = data.decode("utf-8", errors="ignore").encode("gb18030")
    return data


def _text_as_read(data: bytes) -> str:
    """The text the problems' positions refer to: as decoded, or the readable UTF-8 before a bad byte."""
    try:
        return decode_policy(data, "p")[0]
    except PolicyError:
        return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")


def _assert_inside(error: PolicyError, text: str, path: str) -> None:
    assert error.problems
    lines = YAML_LINE_BREAK.split(text)
    for problem in error.problems:
        assert problem.path == path
        assert 1 <= problem.line <= len(lines), problem
        assert 1 <= problem.column <= len(lines[problem.line - 1]) + 1, problem
        assert problem.message


@pytest.fixture(params=["libyaml", "python"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both parsers the loader may use: libyaml where PyYAML has it, else PyYAML's own."""
    if request.param == "python":
        monkeypatch.setattr(loader, "_LOADER", loader._PythonPolicyLoader)
    elif loader._LOADER is loader._PythonPolicyLoader:
        pytest.skip("PyYAML was built without libyaml")


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "policy.yaml"


@FUZZ
@given(mutated_policies())
def test_any_file_gives_a_policy_or_problems_inside_it(
    yaml_parser: None, policy_file: Path, data: bytes
) -> None:
    policy_file.write_bytes(data)
    try:
        assert isinstance(load_policy(policy_file), Policy)
    except PolicyError as error:
        _assert_inside(error, _text_as_read(data), str(policy_file))


@FUZZ
@given(mutated_policies().map(lambda data: data.decode("utf-8", errors="replace")))
def test_any_text_gives_a_policy_or_problems_inside_it(yaml_parser: None, text: str) -> None:
    try:
        assert isinstance(parse_policy(text, "policy.yaml"), Policy)
    except PolicyError as error:
        _assert_inside(error, text, "policy.yaml")
