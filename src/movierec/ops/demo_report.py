"""The demo's report: the timeline, every release decision with its interval, and a plot of
each decision's interval against the line it is judged by.

`reports/demo_release.png`: (1) each canary decision's always-valid interval of the CTR lift
(canary / stable - 1) against -margin: RAMP and PROMOTE need the whole interval above the
line, ABORT on evidence needs it all below; (2) each shadow decision's interval of the ratio
candidate hits / stable hits against the shadow gate; (3) the canary percentage after each
decision. `reports/demo_report.md`: the timeline and a table of the decisions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from movierec.core.settings import Settings
from movierec.core.vocabulary import Stage
from movierec.release.looks import ReleaseResult

if TYPE_CHECKING:  # matplotlib is imported when the report draws
    from matplotlib.axes import Axes

_COLORS = {"RAMP": "tab:green", "PROMOTE": "tab:blue", "HOLD": "tab:gray", "ABORT": "tab:red"}


def write_report(
    settings: Settings, timeline: list[tuple[float, str]], decisions: list[ReleaseResult]
) -> Path:
    folder = settings.reports_path
    folder.mkdir(parents=True, exist_ok=True)
    plot = folder / "demo_release.png"
    _plot(settings, decisions, plot)
    lines = [
        "# movierec demo",
        "",
        f"Run at {datetime.now(UTC).isoformat()}.",
        "",
        "## Timeline",
        "",
        *[f"- `{t:6.1f}s` {text}" for t, text in timeline],
        "",
        "## Decisions",
        "",
        "| # | decision | stage | candidate | before | after | interval | users c/s | reason |",
        "|---|---|---|---|---|---|---|---|---|",
        *[_row(i, d) for i, d in enumerate(decisions, 1)],
        "",
        f"![release]({plot.name})",
        "",
    ]
    path = folder / "demo_report.md"
    path.write_text("\n".join(lines))
    return path


def _row(i: int, d: ReleaseResult) -> str:
    if d.stage is Stage.SHADOW:
        s = d.shadow
        low, high = (_num(s.ratio_low), _num(s.ratio_high)) if s else ("n/a", "n/a")
        interval = f"hits ratio {_num(s.ratio if s else None)} [{low}, {high}]"
        users = f"{s.users if s else 0} (paired)"
    else:
        lift = d.lift
        interval = f"lift {_pct(lift.value)} [{_pct(lift.low)}, {_pct(lift.high)}]"
        users = "/".join(str(d.arms[a].users) if a in d.arms else "0" for a in ("canary", "stable"))
    reason = d.reasons[0].replace("|", "/") if d.reasons else ""
    return (
        f"| {i} | {d.decision} | {d.stage} | {str(d.candidate)[-8:]} | {d.pct_before}% "
        f"| {d.pct_after}% | {interval} | {users} | {reason} |"
    )


def _plot(settings: Settings, decisions: list[ReleaseResult], path: Path) -> None:
    import matplotlib  # lazy: only the report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rel = settings.release
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    xs = list(range(1, len(decisions) + 1))
    lifts = {i: (d.lift.value, d.lift.low, d.lift.high) for i, d in enumerate(decisions, 1)}
    _intervals(axes[0], decisions, Stage.CANARY, -rel.noninferiority_margin, lifts)
    axes[0].set_title(f"canary: CTR lift interval vs -margin ({rel.noninferiority_margin:.0%})")
    ratios = {
        i: (d.shadow.ratio, d.shadow.ratio_low, d.shadow.ratio_high)
        for i, d in enumerate(decisions, 1)
        if d.shadow is not None
    }
    _intervals(axes[1], decisions, Stage.SHADOW, rel.shadow_min_ratio, ratios)
    axes[1].set_title(f"shadow: hit-ratio interval vs gate ({rel.shadow_min_ratio:g})")
    axes[2].step(xs, [d.pct_after for d in decisions], where="post", marker="o")
    axes[2].set_title("canary percentage after each decision")
    axes[2].set_ylim(-5, 105)
    for ax in axes:
        ax.set_xlabel("decision #")
        ax.set_xlim(0.5, max(1, len(decisions)) + 0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


Bounds = tuple[float | None, float | None, float | None]  # point, low, high


def _intervals(
    ax: Axes,
    decisions: list[ReleaseResult],
    stage: Stage,
    line: float,
    bounds: dict[int, Bounds],
) -> None:
    """Each decision of `stage` as its point and interval (`bounds`, by decision number),
    colored by the decision."""
    for i, d in enumerate(decisions, 1):
        if d.stage is not stage or i not in bounds:
            continue
        value, low, high = bounds[i]
        color = _COLORS.get(d.decision, "black")
        if low is not None and high is not None:
            ax.plot([i, i], [low, high], color=color, linewidth=3, alpha=0.7)
        if value is not None:
            ax.plot([i], [value], "o", color=color)
        ax.annotate(d.decision[0], (i, high if high is not None else 0), fontsize=7,
                    ha="center", va="bottom")  # fmt: skip
    ax.axhline(line, color="black", linestyle="--", linewidth=1)
    ax.axhline(0 if stage is Stage.CANARY else 1, color="gray", linestyle=":", linewidth=1)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1%}"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"
