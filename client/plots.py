"""The benchmark's PNG plots (matplotlib, Agg backend: no display needed).

* ``lookup_latency.png`` and ``trade_latency.png``: p50 (solid) and p99
  (dashed) latency against p, cache on and off (linear scale from zero); the
  lookup plot also draws the bare route's p50 (median over the baseline
  rounds) for scale;
* ``throughput.png``: requests per second of each kind against p;
* ``capacity.png`` (open loop): p50 and p99 from due time against the
  offered rate, for the bare route, cached lookups and trades.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIGSIZE_IN = (6.4, 4.0)
DPI = 100
COLORS = {True: "tab:blue", False: "tab:orange"}


def _series(phases: list[dict[str, Any]], cache: bool, kind: str, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for ph in sorted((ph for ph in phases if ph["cache"] == cache), key=lambda ph: ph["p"]):
        value = ph["kinds"].get(kind, {}).get(key)
        if value is not None:
            xs.append(ph["p"])
            ys.append(value)
    return xs, ys


def latency_plot(path: Path, phases: list[dict[str, Any]], kind: str, title: str,
                 reference: tuple[str, float] | None = None) -> None:
    """p50 and p99 of ``kind`` against p, one line each per cache mode.

    :param reference: ``(label, ms)`` drawn as a horizontal line.
    """
    fig, ax = plt.subplots(figsize=FIGSIZE_IN)
    for cache in (True, False):
        label = "cache on" if cache else "cache off"
        for key, style in (("p50_ms", "-"), ("p99_ms", "--")):
            xs, ys = _series(phases, cache, kind, key)
            if xs:
                ax.plot(xs, ys, style, marker="o", color=COLORS[cache], label=f"{label}, {key[:3]}")
    if reference is not None and reference[1] is not None:
        ax.axhline(reference[1], color="grey", linestyle=":", label=reference[0])
    ax.set_xlabel("p (probability of a trade after a lookup)")
    ax.set_ylabel("latency, ms")
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.3)  # room for the legend above the lines
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def throughput_plot(path: Path, phases: list[dict[str, Any]], title: str) -> None:
    """Requests per second of each kind against p, per cache mode."""
    fig, ax = plt.subplots(figsize=FIGSIZE_IN)
    styles = {"lookup": "-", "trade": "--", "order": ":"}
    for cache in (True, False):
        for kind, style in styles.items():
            xs, ys = _series(phases, cache, kind, "throughput_rps")
            if xs:
                ax.plot(xs, ys, style, marker="o", color=COLORS[cache],
                        label=f"{kind}, cache {'on' if cache else 'off'}")
    ax.set_xlabel("p (probability of a trade after a lookup)")
    ax.set_ylabel("requests/s")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def write_plots(out_dir: Path, sweep: list[dict[str, Any]], bare_p50_ms: float | None, subtitle: str) -> list[Path]:
    """Every plot of a benchmark run; returns the files written."""
    paths = [out_dir / "lookup_latency.png", out_dir / "trade_latency.png", out_dir / "throughput.png"]
    latency_plot(paths[0], sweep, "lookup", f"Lookup latency against p\n{subtitle}",
                 ("bare Flask route p50 (p = 0)", bare_p50_ms))
    latency_plot(paths[1], [ph for ph in sweep if ph["p"] > 0], "trade", f"Trade latency against p\n{subtitle}")
    throughput_plot(paths[2], sweep, f"Throughput against p\n{subtitle}")
    return paths


# Marker and colour of each open-loop kind on the capacity plot.
OPEN_STYLE = {"bare route": ("tab:grey", "s"), "cached lookup": ("tab:blue", "o"), "trade": ("tab:red", "^")}


def capacity_plot(path: Path, capacity: dict[str, Any], subtitle: str) -> Path:
    """p50 (solid) and p99 (dashed) latency from due time against the offered
    rate, one colour per kind (its capacity in the legend), with the p99
    bound as a horizontal line; a rate a kind failed (errors, or p99 over the
    bound) has a hollow marker. Both axes logarithmic: the rates of a sweep
    usually double, and latency past capacity grows by orders of magnitude."""
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    bound = capacity["bound_ms"]
    for label, k in capacity["kinds"].items():
        color, marker = OPEN_STYLE.get(label, ("tab:green", "D"))
        cap = ("none" if k["capacity_rps"] is None
               else f"{'>= ' if k['censored'] else ''}{k['capacity_rps']:g}/s")
        for key, style, name in (("p50_ms", "-", "p50"), ("p99_ms", "--", "p99")):
            pts = [(p["rate_rps"], p[key], p["passed"]) for p in k["points"] if p[key] is not None]
            if not pts:
                continue
            ax.plot([x for x, _, _ in pts], [y for _, y, _ in pts], style, color=color,
                    label=f"{label} {name}" + (f" (capacity {cap})" if name == "p99" else ""))
            for x, y, ok in pts:
                ax.plot([x], [y], marker, color=color, markerfacecolor=color if ok else "white", markersize=5)
    ax.axhline(bound, color="black", linestyle=":", linewidth=1, label=f"p99 bound, {bound:g} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    rates = sorted({p["rate_rps"] for k in capacity["kinds"].values() for p in k["points"]})
    ax.set_xticks(rates)
    low, high = ax.get_ylim()
    ax.set_ylim(low, max(high, bound) * 4)  # the bound in view, and room for the legend above the lines
    ax.set_xlabel("offered rate, requests/s (open loop)")
    ax.set_ylabel("latency from due time, ms")
    ax.set_title("Latency against offered load; capacity = highest rate with p99 under the bound and no "
                 "errors\n" + subtitle + "\n(hollow marker: the rate failed)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
