"""Judge candidate weights against a selection rule written before they ran (docs/selection-rules/).

    python scripts/check_candidates.py \
        --reference stage11=/tmp/ho_s14a/rs_holdout/table.json \
        --candidate s17a=/tmp/ho_s17a/rs_holdout/table.json --candidate s17b=/tmp/ho_s17b/rs_holdout/table.json \
        --bound 'HA<=0.8' --bound 'VIF>=0.99' --bound 'Qabf>=0.99' --bound 'SCD>=0.98' --bound 'SSIM>=0.99' \
        --bound 'FA<=1.25'

    python scripts/check_candidates.py --reference 'stage11=/tmp/uv17/means.json#x1/stage11' \
        --candidate 's17a=/tmp/uv17/means.json#x1/s17a' --other 'max=/tmp/uv17/means.json#x1/max' \
        --bound 'VIF>=0.99' --bound 'Qabf>=0.99' --bound 'FA<=1.0@max'

Each entry is ``LABEL=PATH[#KEY/KEY...]``: a JSON file and the path of keys to a ``{metric: value}``
object in it (default ``measured/refinefuse``, the network's row of a ``refinefuse reproduce``
``table.json``; ``scripts/upscaled_validation.py``'s ``means.json`` needs ``#x1/LABEL``). A bound
``METRIC>=F`` or ``METRIC<=F`` compares a candidate with ``F`` times the reference's value, or with
``F`` times the entry ``LABEL`` of ``--other`` when written ``METRIC<=F@LABEL``. Prints a Markdown
table (value, bound, met) and one verdict line per candidate: eligible iff every bound is met.
Exit status 0 when at least one candidate is eligible, 1 when none is, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import NamedTuple

DEFAULT_KEYS = "measured/refinefuse"
_BOUND = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w]*)\s*(?P<op><=|>=)\s*(?P<factor>[0-9.eE+-]+)\s*(?:@(?P<other>\S+))?$")


class BadInput(Exception):
    """A one-line message about the command line or a JSON file."""


class Bound(NamedTuple):
    metric: str
    op: str
    factor: float
    other: str | None = None  # None: the reference

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.factor:g}" + (f"@{self.other}" if self.other else "")


def parse_bound(text: str) -> Bound:
    match = _BOUND.match(text)
    if match is None:
        raise BadInput(f"bound {text!r}: expected METRIC>=FACTOR or METRIC<=FACTOR[@LABEL], e.g. 'VIF>=0.99'")
    try:
        factor = float(match["factor"])
    except ValueError:
        raise BadInput(f"bound {text!r}: {match['factor']!r} is not a number") from None
    return Bound(match["metric"], match["op"], factor, match["other"])


def load_entry(spec: str) -> tuple[str, dict[str, float]]:
    """``LABEL=PATH[#KEY/KEY...]`` -> (label, {metric: value})."""
    label, sep, rest = spec.partition("=")
    if not sep or not label or not rest:
        raise BadInput(f"entry {spec!r}: expected LABEL=PATH[#KEY/KEY...]")
    path_text, _, keys = rest.partition("#")
    path = Path(path_text).expanduser()
    try:
        node = json.loads(path.read_text())
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    for key in (keys or DEFAULT_KEYS).split("/"):
        if not isinstance(node, dict) or key not in node:
            raise BadInput(f"{path}: no key {key!r} on the path {keys or DEFAULT_KEYS!r}")
        node = node[key]
    if not isinstance(node, dict) or not all(isinstance(v, (int, float)) for v in node.values()):
        raise BadInput(f"{path}: {keys or DEFAULT_KEYS!r} is not a {{metric: number}} object")
    return label, {k: float(v) for k, v in node.items()}


def judge(
    candidates: dict[str, dict[str, float]],
    reference: dict[str, float],
    others: dict[str, dict[str, float]],
    bounds: list[Bound],
) -> tuple[list[str], dict[str, list[str]]]:
    """Markdown table rows and, per candidate, the bounds it misses (empty: eligible)."""
    rows = ["| candidate | bound | value | limit | met |", "|---|---|---:|---:|---|"]
    misses: dict[str, list[str]] = {}
    for label, values in candidates.items():
        misses[label] = []
        for bound in bounds:
            base = reference if bound.other is None else others.get(bound.other)
            if base is None:
                raise BadInput(f"bound {bound}: no --other entry labelled {bound.other!r}")
            for name, entry in (("candidate " + label, values), ("the base of " + str(bound), base)):
                if bound.metric not in entry:
                    raise BadInput(f"bound {bound}: {name} has no {bound.metric!r} (has {', '.join(sorted(entry))})")
            limit = bound.factor * base[bound.metric]
            value = values[bound.metric]
            met = value >= limit if bound.op == ">=" else value <= limit
            if not met:
                misses[label].append(f"{bound.metric} {value:.6f} vs {bound.op} {limit:.6f}")
            rows.append(f"| {label} | {bound} | {value:.6f} | {bound.op} {limit:.6f} | {'yes' if met else '**no**'} |")
    return rows, misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="LABEL=PATH[#KEYS]: the weights the bounds are relative to")
    parser.add_argument("--candidate", action="append", required=True, help="LABEL=PATH[#KEYS], repeatable")
    parser.add_argument("--other", action="append", default=[], help="LABEL=PATH[#KEYS] for bounds written F@LABEL")
    parser.add_argument("--bound", action="append", required=True, help="METRIC>=F or METRIC<=F[@LABEL], repeatable")
    args = parser.parse_args(argv)
    try:
        bounds = [parse_bound(b) for b in args.bound]
        ref_label, reference = load_entry(args.reference)
        candidates = dict(load_entry(c) for c in args.candidate)
        others = dict(load_entry(o) for o in args.other)
        rows, misses = judge(candidates, reference, others, bounds)
    except BadInput as exc:
        print(f"check_candidates: {exc}", file=sys.stderr)
        return 2
    print(f"Bounds relative to {ref_label} unless marked @LABEL.\n")
    print("\n".join(rows) + "\n")
    for label, missed in misses.items():
        print(f"{label}: " + ("eligible" if not missed else "not eligible (" + "; ".join(missed) + ")"))
    return 0 if any(not m for m in misses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
