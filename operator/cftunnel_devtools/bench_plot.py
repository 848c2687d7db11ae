"""The benchmark's picture: objects Ready over time, and Cloudflare calls against the budget.

Kept apart from :mod:`cftunnel_devtools.bench` so that the benchmark runs (and writes its JSON
and Markdown) where matplotlib is not installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot"]


def plot(result: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings, create = result["settings"], result["create"]
    timeline = create["timeline"]
    converged = create["seconds"]
    budget, window = settings["operator_rate_limit"], settings["rate_window"]

    figure, (objects, calls) = plt.subplots(2, 1, sharex=True, figsize=(9, 7))
    objects.step(timeline["t"], timeline["tunnels_ready"], where="post", label="Tunnels Ready")
    objects.step(timeline["t"], timeline["services_ready"], where="post", label="VPCServices Ready")
    objects.axvline(converged, color="grey", linestyle=":", label=f"converged {converged:.0f}s")
    objects.set_ylabel("objects")
    objects.set_title(
        f"{settings['tunnels']} Tunnels + {settings['services']} VPCServices, budget "
        f"{budget}/{window:g}s"
    )
    objects.legend(loc="lower right")

    curve = [t for t in create["cloudflare_curve"] if t <= converged * 1.05]
    calls.step(curve, range(1, len(curve) + 1), where="post", label="Cloudflare calls")
    end = max([converged, *curve]) if curve else converged
    # What a sliding window allows from a standing start: a budget at once, then one per window.
    steps = [0.0]
    allowed = [float(budget)]
    moment = 0.0
    while moment < end:
        moment += window
        steps.append(moment)
        allowed.append(allowed[-1] + budget)
    calls.step(steps, allowed, where="post", linestyle="--", label="budget (sliding window)")
    calls.plot(
        [0, end],
        [0, end * budget / window],
        linestyle=":",
        label="allowed rate (the floor's slope)",
    )
    calls.set_xlim(0, end * 1.05)
    calls.set_xlabel("seconds since the objects were created")
    calls.set_ylabel("calls (cumulative)")
    calls.set_ylim(0, max(len(curve), 1) * 1.3)
    calls.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
