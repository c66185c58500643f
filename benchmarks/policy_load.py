"""How long `load_policy` takes on the default policy and on the worst files the limits let in.

Each case is written to a temporary file and loaded through `load_policy` (read, decode, compose,
validate, cross-check) with each YAML parser the loader can use: libyaml (used whenever PyYAML has
it, as PyPI's wheels do) and PyYAML's own. Each figure is the best of `--repeat` runs, in
milliseconds, followed by the outcome. The cases: the default policy, the same saved as GBK, an alias bomb, nesting
500 levels deep, an impossible date, files just under the size limit (one long scalar, one long
escaped string, comments), lists just over the node limit, and a valid policy just under it.

    .venv/bin/python -m benchmarks.policy_load [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from config import loader
from config.loader import MAX_NODES, MAX_POLICY_SIZE, PolicyError, read_policy

SOP_TEXT = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")
HOLIDAYS_LINE = "      holidays: {country: CN}\n"
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def _with_holidays(count: int) -> str:
    days = ", ".join(f"2030-01-{1 + i % 28:02d}" for i in range(count))
    return SOP_TEXT.replace(HOLIDAYS_LINE, f"{HOLIDAYS_LINE}      extra_holidays: [{days}]\n")


def cases() -> dict[str, bytes]:
    room = MAX_POLICY_SIZE - 16
    return {
        "default policy": SOP_TEXT.encode(),
        "default policy saved as GBK": SOP_TEXT.encode("gbk"),
        "alias bomb (billion laughs)": (SOP_TEXT + ALIAS_BOMB).encode(),
        "nesting 500 levels deep": (SOP_TEXT + "deep: " + "[" * 500 + "]" * 500 + "\n").encode(),
        "extra_holidays: [2024-02-30]": SOP_TEXT.replace(
            HOLIDAYS_LINE, HOLIDAYS_LINE + "      extra_holidays: [2024-02-30]\n"
        ).encode(),
        "one scalar, size limit": ("x: " + "a" * room + "\n").encode(),
        "one escaped string, size limit": ('x: "' + "\\n" * (room // 2) + '"\n').encode(),
        "default + comments, size limit": (SOP_TEXT + "#" * (room - len(SOP_TEXT.encode())) + "\n").encode(),
        "flow list past the node limit": ("x: [" + "1," * (room // 2) + "]\n").encode(),
        "block list past the node limit": ("x:\n" + "- a\n" * (room // 4)).encode(),
        f"valid, {MAX_NODES - 1_500:,} holidays (node limit)": _with_holidays(MAX_NODES - 1_500).encode(),
    }


def measure(data: bytes, repeat: int) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policy.yaml"
        path.write_bytes(data)
        best, outcome = float("inf"), ""
        for _ in range(repeat):
            start = time.perf_counter()
            try:
                outcome = "valid" + "".join(f"; {w.split(': ', 1)[1]}" for w in read_policy(path).warnings)
            except PolicyError as error:
                outcome = f"{len(error.problems)} problem(s): {str(error.problems[0]).split(': ', 1)[1]}"
            best = min(best, time.perf_counter() - start)
    return best * 1000, outcome


def main() -> None:
    arguments_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments_parser.add_argument("--repeat", type=int, default=3)
    arguments = arguments_parser.parse_args()
    read_policy()  # the JSON Schema and the validators are built once per process
    parsers = {"libyaml": loader._LOADER, "PyYAML": loader._PythonPolicyLoader}
    print(f"{'case':<42} {'size':>11} {'libyaml':>10} {'PyYAML':>10}  outcome")
    for name, data in cases().items():
        figures = []
        for parser in parsers.values():
            loader._LOADER = parser
            milliseconds, outcome = measure(data, arguments.repeat)
            figures.append(f"{milliseconds:>7.1f} ms")
        print(f"{name:<42} {len(data):>9,} B {' '.join(figures)}  {outcome[:80]}")
    loader._LOADER = parsers["libyaml"]


if __name__ == "__main__":
    main()
