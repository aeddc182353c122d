"""The comparison report: markdown and a quality-against-cost PNG, from per-router evaluations.

Every figure says what it is: off-policy (SNIPS/DR on logged test telemetry, with bootstrap
intervals) or full information (every candidate's score known for the test queries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from routeiq_assets import strict_json

REPORT_MD, REPORT_PNG, REPORT_JSON = "report.md", "quality_vs_cost.png", "evaluation.json"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def comparison_table(evaluations: list[dict[str, Any]]) -> str:
    lines = [
        "| policy | quality (SNIPS) | 95% interval | quality (DR) | cost / query (USD) | ESS "
        "| route p50 ms | route p99 ms |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    baselines: dict[str, dict] = {}
    for ev in evaluations:
        router_row, *others = ev["rows"]
        for row in others:
            baselines.setdefault(row["policy"], row)
        lat = ev.get("latency") or {}
        lines.append(_row_line(router_row, lat))
    lines += [_row_line(row, {}) for row in baselines.values()]
    return "\n".join(lines)


def _row_line(row: dict, latency: dict) -> str:
    iv = row.get("quality_intervals", {})
    snips, dr = iv.get("snips"), iv.get("dr")
    interval = f"[{_fmt(snips['low'])}, {_fmt(snips['high'])}]" if snips else "-"
    return (
        f"| {row['policy']} | {_fmt(row['quality']['snips'])} | {interval} | "
        f"{_fmt(dr['value']) if dr else '-'} | {_fmt(row['cost']['snips'], 6)} | "
        f"{_fmt(row['quality']['effective_sample_size'], 1)} | "
        f"{_fmt(latency.get('route_p50_ms'), 3)} | {_fmt(latency.get('route_p99_ms'), 3)} |"
    )


def full_information_table(evaluations: list[dict[str, Any]]) -> str | None:
    rows = [
        (ev["router"], ev["full_information"]) for ev in evaluations if ev.get("full_information")
    ]
    if not rows:
        return None
    lines = [
        "| router | best quality | its cost (USD) | AIQ | APGR | CPT(50%) | CPT(80%) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, fi in rows:
        lines.append(
            f"| {name} | {_fmt(fi['best'][1])} | {_fmt(fi['best'][0], 6)} | "
            f"{_fmt(fi['aiq'])} | {_fmt(fi['apgr'])} | {_fmt(fi['cpt50'], 3)} | "
            f"{_fmt(fi['cpt80'], 3)} |"
        )
    fi = rows[0][1]
    lines.append(f"| oracle | {_fmt(fi['oracle'][1])} | {_fmt(fi['oracle'][0], 6)} | | | | |")
    for model, (cost, quality) in fi["single_models"].items():
        lines.append(f"| always {model} | {_fmt(quality)} | {_fmt(cost, 6)} | | | | |")
    return "\n".join(lines)


def _plot_gate(ax, gate: dict[str, Any]) -> None:
    """Each router's lambda sweep with its operating point starred, and the baselines, all valued
    by the gate on the same held-out queries (the numbers in gate.json)."""
    for name, curve in gate["curves"].items():
        if not curve:
            continue
        xs, ys = zip(*sorted((c, q) for _, c, q in curve), strict=True)
        [line] = ax.plot(xs, ys, marker=".", markersize=3, linewidth=1, label=f"{name} (sweep)")
        point = gate["points"][name]
        ax.scatter(
            [point["cost"]],
            [point["quality"]],
            marker="*",
            s=220,
            color=line.get_color(),
            edgecolors="black",
            zorder=5,
            label=f"{name} at its operating point (lambda {point['lambda']:.3g})",
        )
    for (name, point), marker in zip(gate["baselines"].items(), "XPDs^v", strict=False):
        ax.scatter(
            [point["cost"]],
            [point["quality"]],
            marker=marker,
            s=70,
            color="black",
            zorder=4,
            label=name,
        )
    ax.set_title(
        f"Quality against cost: {gate['estimate']}, {gate['queries']} held-out queries"
        + (
            ""
            if gate["estimate"] == "full information"
            else " (estimates: intervals in the report)"
        ),
        fontsize=9,
    )


def plot(evaluations: list[dict[str, Any]], path: Path, gate: dict[str, Any] | None = None) -> Path:
    import matplotlib.pyplot as plt

    fig = figure(evaluations, gate)
    fig.savefig(path)
    plt.close(fig)
    return path


def figure(evaluations: list[dict[str, Any]], gate: dict[str, Any] | None = None):
    """The quality-against-cost figure: the gate's curves, operating points and baselines when
    it valued them, else each evaluation's points (and full-information curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
    if gate and gate.get("curves"):
        _plot_gate(ax, gate)
        evaluations = []
    else:
        ax.set_title("Routers: quality against cost (held-out split)")
    seen_baselines = set()
    for ev in evaluations:
        router_row, *others = ev["rows"]
        fi = ev.get("full_information")
        if fi:
            xs, ys = zip(*sorted(fi["curve"]), strict=True)
            ax.plot(xs, ys, marker=".", label=f"{ev['router']} (full information)")
        ax.scatter(
            [router_row["cost"]["snips"]],
            [router_row["quality"]["snips"]],
            marker="o",
            s=60,
            label=f"{ev['router']} (off-policy SNIPS)",
        )
        for row in others:
            if row["policy"] not in seen_baselines:
                seen_baselines.add(row["policy"])
                ax.scatter(
                    [row["cost"]["snips"]],
                    [row["quality"]["snips"]],
                    marker="x",
                    label=row["policy"],
                )
    ax.set_xlabel("cost per query (USD)")
    ax.set_ylabel("quality")
    ax.grid(alpha=0.3)
    # outside the axes: a legend inside hides the points it names
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def write_report(
    evaluations: list[dict[str, Any]],
    out_dir: Path,
    gate_markdown: str | None = None,
    gate: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """report.md, quality_vs_cost.png and evaluation.json in ``out_dir``. With the deployment
    gate's result, the report opens with its headline and verdict, and the PNG draws its curves,
    operating points and baselines."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / REPORT_JSON,
        "markdown": out_dir / REPORT_MD,
        "png": out_dir / REPORT_PNG,
    }
    paths["json"].write_text(strict_json.dumps(evaluations))
    plot(evaluations, paths["png"], gate)
    n = evaluations[0]["test_examples"] if evaluations else 0
    parts = ["# Router evaluation", ""]
    if gate and gate.get("headline"):
        parts += [f"**{gate['headline']}**", ""]
    if gate_markdown:
        parts += ["## Deployment gate", "", gate_markdown, ""]
    if gate and gate.get("curves"):
        parts += [f"![quality against cost]({REPORT_PNG})", ""]
    parts += [
        f"## Off-policy: {n} logged test examples (SNIPS and doubly robust, 95% bootstrap "
        "intervals; each router at its operating point)",
        "",
        comparison_table(evaluations),
        "",
    ]
    fi_table = full_information_table(evaluations)
    if fi_table:
        parts += [
            "## Full information: test queries with every candidate's score",
            "",
            fi_table,
            "",
        ]
    else:
        parts += [
            "No full-information test data (no `full_information` tables in "
            "labeling.yaml cover the test split): quality/cost curves, AIQ and APGR need it.",
            "",
        ]
    if not (gate and gate.get("curves")):
        parts += [f"![quality against cost]({REPORT_PNG})", ""]
    for ev in evaluations:
        parts += [f"## {ev['router']} ({ev['router_type']})", "", ev["markdown"], ""]
        if ev.get("per_task"):
            parts += [
                "Per task (off-policy SNIPS of this router):",
                "",
                "| task | examples | matched | quality | cost / query (USD) |",
                "|---|---:|---:|---:|---:|",
            ]
            parts += [
                f"| {task} | {t['examples']} | {t['matched']} | "
                f"{_fmt(t['quality_snips'])} | {_fmt(t['cost_snips'], 6)} |"
                for task, t in ev["per_task"].items()
            ]
            parts.append("")
    paths["markdown"].write_text("\n".join(parts))
    return paths
