"""Reading a mitigation as a trade-off: task A kept against task B learned.

A mitigation of forgetting is only worth something if it keeps more of the old task *for the same* new-task
accuracy: plain fine-tuning at a lower learning rate already keeps more of task A by learning less of task B.
`bracket_knob` chooses each mitigation's setting on task-B validation data alone (the strongest setting that keeps
task B within a tolerance of plain fine-tuning), widening its grid until the choice is inside it;
`tradeoff_plot` draws every method against the frontier of plain fine-tuning's LR sweep; `mitigation_notes`
writes one sentence per method from the numbers.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

__all__ = ["matched_choice", "bracket_knob", "mitigation_notes", "tradeoff_plot", "lr_sweep_plot"]


def matched_choice(rows: Sequence[Mapping], reference_val_b: float, tolerance: float = 0.03,
                   rule: str = "strongest") -> Mapping | None:
    """The knob setting a mitigation is judged at, chosen on task-B validation data only (never task A's).

    rows: one per setting, ordered from the weakest to the strongest protection of task A, each with 'val_b'.
    rule "strongest": the strongest setting whose task-B validation accuracy is at most `tolerance` below the
    reference's (plain fine-tuning at the chosen LR), so the mitigation is read at about the same task-B accuracy
    and "keeps more of task A" cannot mean "learned less of task B"; None when no setting stays that close.
    rule "best-b": the setting with the best task-B validation accuracy (for a knob that is not a strength, e.g.
    LP-FT's probe LR).
    """
    if not rows:
        raise ValueError("matched_choice needs at least one row.")
    if rule == "best-b":
        return max(rows, key=lambda r: float(r["val_b"]))
    if rule != "strongest":
        raise ValueError(f"rule must be 'strongest' or 'best-b', got {rule!r}.")
    close = [r for r in rows if float(r["val_b"]) >= float(reference_val_b) - tolerance]
    return close[-1] if close else None


def bracket_knob(run: Callable, grid: Sequence, *, reference_val_b: float, weaker: Callable | None = None,
                 stronger: Callable | None = None, tolerance: float = 0.03, rule: str = "strongest",
                 max_extra: int = 2) -> tuple[list, Mapping, str]:
    """Run `run(value)` (a dict with 'val_b') for every value of `grid` (weakest to strongest), then widen the grid
    until the choice of `matched_choice` is inside it, at most `max_extra` more runs: for "strongest", until the
    next stronger setting was tried and lost too much of task B; for "best-b", a tried neighbour on each side.

    weaker(v) / stronger(v): the next value beyond an end of the grid, or None where nothing lies beyond it (e.g.
    the last depth). Returns (rows in strength order, the chosen row, a note saying whether the choice is
    bracketed). When no setting keeps task B close enough, the weakest is chosen and the note says so.
    """
    rows = [run(v) for v in grid]
    values = list(grid)
    for _ in range(max_extra):
        chosen = matched_choice(rows, reference_val_b, tolerance, rule)
        grow = None
        if chosen is None or (rule == "best-b" and chosen is rows[0]):
            grow = ("weaker", weaker(values[0]) if weaker else None)
        elif chosen is rows[-1]:
            grow = ("stronger", stronger(values[-1]) if stronger else None)
        if grow is None or grow[1] is None:
            break
        if grow[0] == "weaker":
            values.insert(0, grow[1])
            rows.insert(0, run(grow[1]))
        else:
            values.append(grow[1])
            rows.append(run(grow[1]))
    chosen = matched_choice(rows, reference_val_b, tolerance, rule)
    if chosen is None:
        return rows, rows[0], (f"no setting kept task-B validation within {tolerance:.2f} of plain fine-tuning: "
                               "judged at the weakest")
    i = next(j for j, r in enumerate(rows) if r is chosen)
    # "strongest": the boundary that matters is above the choice (the next stronger setting loses task B)
    if i < len(rows) - 1 and (rule == "strongest" or i > 0):
        return rows, chosen, "bracketed"
    end = "strongest" if i == len(rows) - 1 else "weakest"
    can_grow = (stronger if end == "strongest" else weaker)
    beyond = can_grow(values[i]) if can_grow else None
    return rows, chosen, (f"the {end} setting tried" + ("" if beyond is None else " (widening stopped after "
                                                           f"{max_extra} more runs)"))


def mitigation_notes(rows: Sequence[Mapping], baseline: str, min_gain: float = 0.01, method_key: str = "method"
                     ) -> list[str]:
    """One sentence per method, built from the numbers: did it keep more task A than `baseline`, at what cost on B?

    rows: dicts with method_key, 'a_acc' and 'b_acc'. A gain below `min_gain` counts as no help.
    """
    base = next((r for r in rows if r[method_key] == baseline), None)
    if base is None:
        raise KeyError(f"No row named {baseline!r}; the rows are {[r[method_key] for r in rows]}.")
    notes = []
    for r in rows:
        if r is base:
            continue
        gain, cost = r["a_acc"] - base["a_acc"], base["b_acc"] - r["b_acc"]
        if gain < min_gain:
            notes.append(f"{r[method_key]}: did not help - task A {r['a_acc']:.3f} vs {base['a_acc']:.3f} for "
                         f"{baseline} ({gain:+.3f}).")
            continue
        trade = (f"at a cost of {cost:.3f} on task B" if cost >= min_gain else "at no real cost on task B")
        notes.append(f"{r[method_key]}: kept {gain:+.3f} more task-A accuracy than {baseline}, {trade}.")
    return notes


def tradeoff_plot(rows: Sequence[Mapping], ax=None, method_key: str = "method", reference: Mapping | None = None,
                  labels: str = "legend", frontier: Sequence[Mapping] | None = None, tried: Sequence[Mapping] = ()):
    """Task-A accuracy (kept) against task-B accuracy (learned): one point per row.

    labels="legend" (default): each point gets its own marker and colour and is named in a legend *outside* the
    axes (right of them), so no label overprints another and no point hides under the legend; "annotate": the
    name is written next to each point (fine for a few well-separated points). reference: the model before
    fine-tuning ({'a_acc': ...}), drawn as a dotted line. frontier: plain fine-tuning at each LR of a sweep
    ({'lr', 'a_acc', 'b_acc'}), drawn as a grey line with its LRs written on it: a point above and right of the
    line keeps more of task A than plain fine-tuning does for the same task B. tried: every other setting tried,
    drawn as small grey dots.
    """
    import matplotlib.pyplot as plt

    if labels not in ("legend", "annotate"):
        raise ValueError(f"labels must be 'legend' or 'annotate', got {labels!r}.")
    ax = ax or plt.gca()
    if frontier:
        line = sorted(frontier, key=lambda r: r["b_acc"])
        ax.plot([r["b_acc"] for r in line], [r["a_acc"] for r in line], color="0.45", lw=1.2, ls="-", zorder=1,
                label="plain fine-tuning, LR sweep")
        for r in line:
            ax.annotate(f"lr {r['lr']:g}", (r["b_acc"], r["a_acc"]), fontsize=7, color="0.35", xytext=(3, -9),
                        textcoords="offset points")
    if tried:
        ax.scatter([r["b_acc"] for r in tried], [r["a_acc"] for r in tried], s=10, color="0.6", zorder=2,
                   label="other settings tried")
    markers = "osD^vP*XhpH<>d"
    colours = plt.get_cmap("tab20").colors
    for i, r in enumerate(rows):
        ax.scatter(r["b_acc"], r["a_acc"], s=45, marker=markers[i % len(markers)], color=colours[i % len(colours)],
                   edgecolors="k", linewidths=0.5, label=str(r[method_key]), zorder=3)
        if labels == "annotate":
            ax.annotate(str(r[method_key]), (r["b_acc"], r["a_acc"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    if reference is not None:
        ax.axhline(reference["a_acc"], color="k", ls=":", lw=1, label="task A before fine-tuning")
    if labels == "legend" or reference is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, borderaxespad=0.0)
    ax.set_xlabel("task B accuracy (learned)")
    ax.set_ylabel("task A accuracy (kept)")
    ax.grid(alpha=0.3)
    return ax


def lr_sweep_plot(curves: Mapping[str, Sequence[Mapping]], *, before_a: float, stats_only_a: float, chance_b: float,
                  learnt: str = "learnt"):
    """Task A (head A and the refitted probe) and task B against the LR, one colour per curve (name -> rows with
    lr, a_acc, a_probe, b_acc and status); runs whose status is not `learnt` are ringed in red. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for (name, rows), colour in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green")):
        x = [r["lr"] for r in rows]
        axes[0].semilogx(x, [r["a_acc"] for r in rows], marker="o", color=colour, label=f"head A, {name}")
        axes[0].semilogx(x, [r["a_probe"] for r in rows], marker="s", ls="--", color=colour,
                         label=f"refitted probe, {name}")
        axes[1].semilogx(x, [r["b_acc"] for r in rows], marker="o", color=colour, label=f"task B, {name}")
        bad = [r for r in rows if r["status"] != learnt]
        for ax, key in ((axes[0], "a_acc"), (axes[1], "b_acc")):
            ax.scatter([r["lr"] for r in bad], [r[key] for r in bad], s=140, facecolors="none", edgecolors="red",
                       linewidths=1.5, zorder=4)
    axes[0].axhline(before_a, color="k", ls="--", lw=1, label="head A before fine-tuning")
    axes[0].axhline(stats_only_a, color="grey", ls=":", lw=1.5, label="head A at lr = 0 (statistics only)")
    axes[0].set(xlabel="learning rate", ylabel="task A accuracy (test)", ylim=(0, 1), title="task A after fine-tuning")
    axes[1].axhline(chance_b, color="grey", ls=":", lw=1, label="chance")
    axes[1].set(xlabel="learning rate", ylabel="task B accuracy (test)", ylim=(0, 1), title="task B after fine-tuning")
    axes[1].scatter([], [], s=140, facecolors="none", edgecolors="red", label="diverged / did not learn task B")
    for ax in axes:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
