"""``routeiq``: the seed guide's commands over the same core as the Dagster assets."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from routeiq_assets.settings import REPO_ROOT, RouteIQSettings


def _cmd_info(args: argparse.Namespace) -> int:
    settings = RouteIQSettings()
    described = settings.describe()
    described["dagster_home"] = os.environ.get("DAGSTER_HOME", str(REPO_ROOT / "dagster_home"))
    if args.json:
        print(json.dumps(described, indent=2, sort_keys=True))
    else:
        width = max(map(len, described))
        for key, value in described.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from routeiq_assets.telemetry.simulator import (
        load_table,
        replay_table,
        simulate_requests,
        write_otlp_files,
    )

    if args.from_table:
        if not args.prices:
            raise SystemExit("--from-table needs --prices (an llm_candidates.json)")
        records, catalog = load_table(Path(args.from_table), Path(args.prices))
        requests = replay_table(
            records, catalog, args.seed, args.epsilon, limit=args.requests or None
        )
        prefix = f"replay-s{args.seed}"
    else:
        requests = simulate_requests(args.requests, args.seed, epsilon=args.epsilon)
        prefix = f"sim-s{args.seed}"
    files = write_otlp_files(requests, Path(args.out), prefix, args.requests_per_file)
    print(json.dumps({"files": [str(f) for f in files], "out": str(args.out)}, indent=2))
    return 0


def _cmd_materialize(args: argparse.Namespace) -> int:
    """Run the asset graph (or a selection) with the real `dagster asset materialize` CLI."""
    env = dict(os.environ)
    env.setdefault("DAGSTER_HOME", str(REPO_ROOT / "dagster_home"))
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "routeiq_assets.definitions",
        "--select",
        args.select,
    ]
    return subprocess.call(cmd, env=env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routeiq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print every location and service in use")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_cmd_info)

    sim = sub.add_parser("simulate", help="write simulated gateway telemetry as OTLP JSON files")
    sim.add_argument("--out", required=True, help="output folder (e.g. the landing folder)")
    sim.add_argument(
        "--requests",
        type=int,
        default=2000,
        help="requests to simulate (with --from-table: at most this many rows; 0 = all)",
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--epsilon", type=float, default=0.2, help="logging policy's exploration rate")
    sim.add_argument("--from-table", help="replay a full-information table (LLMRouter train.json)")
    sim.add_argument(
        "--prices", help="llm_candidates.json with per-model prices (for --from-table)"
    )
    sim.add_argument("--requests-per-file", type=int, default=5000)
    sim.set_defaults(func=_cmd_simulate)

    mat = sub.add_parser("materialize", help="run the asset graph with `dagster asset materialize`")
    mat.add_argument("--select", default="*", help="Dagster asset selection (default: everything)")
    mat.set_defaults(func=_cmd_materialize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"routeiq {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
