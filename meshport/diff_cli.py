"""`meshport diff MODEL@A MODEL@B`: parity and latency changes per artifact between two published
versions, as a table, JSON (`--json`) or a JUnit-style verdict (`--junit FILE`) for CI; exit 1
when any artifact fails or regressed. A thin layer over `artifacts.diff`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_diff(args: argparse.Namespace) -> int:
    from artifacts import Store
    from artifacts.diff import diff_versions
    from runtime.files import write_bytes_atomic

    d = diff_versions(Store(args.store), args.old, args.new, max_slowdown=args.max_slowdown,
                      max_error_growth=args.max_error_growth)
    if args.junit:
        write_bytes_atomic(args.junit, d.junit_xml())
    print(json.dumps(d.to_json(), indent=2) if args.json else d.format())
    return 0 if d.passed else 1


def add_diff_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from artifacts.diff import MAX_ERROR_GROWTH, MAX_SLOWDOWN
    p = subparsers.add_parser("diff", help="what changed between two published versions (parity, latency)",
                              description=__doc__.splitlines()[0])
    p.add_argument("old", metavar="MODEL@OLD", help="e.g. attention_mesh@1.0.0")
    p.add_argument("new", metavar="MODEL@NEW", help="e.g. attention_mesh@1.1.0 or attention_mesh@latest")
    p.add_argument("--store", default=None, help="store URL (default: $MESHPORT_STORE or the local store)")
    p.add_argument("--max-slowdown", type=float, default=MAX_SLOWDOWN,
                   help=f"a median latency growing by more than this factor regresses (default: {MAX_SLOWDOWN:g})")
    p.add_argument("--max-error-growth", type=float, default=MAX_ERROR_GROWTH,
                   help=f"a worst error growing by more than this fraction regresses (default: {MAX_ERROR_GROWTH:g})")
    p.add_argument("--junit", type=Path, metavar="FILE", help="also write a JUnit XML verdict (one case per artifact)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_diff)
    return p
