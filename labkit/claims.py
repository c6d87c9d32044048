"""Claims: one rule that turns an experiment into a verdict (holds / fails / unresolved).

A claim is declared before it is judged: an id, the sentence it checks, where it comes from (the article by title),
what is compared (A vs B, or A against a stated number or range) and which way. The same rule judges every claim
in the course:

* **within one run**, a *paired* comparison over the shared test items: both models are scored on the same images
  or texts, so the effect is the mean of the per-item differences d_i = correct_A(i) - correct_B(i) and its
  standard error is sd(d) / sqrt(n) (the normal form of McNemar's test: only the items the two models disagree on
  carry information, so a tie is called a tie and a real gap on a small test set still resolves);
* **across seeds**, the 95 % interval adds the spread between seeds (Student's t on the seed means) to the item
  noise of one run: half-width = sqrt((1.96 se_items)^2 + (t_{k-1} s_seeds / sqrt(k))^2);
* the claim names the region its effect must fall in ("A beats B": effect > 0; "3-8 points": [0.03, 0.08];
  "close to": [-0.05, 0.05]). **holds**: the whole interval is inside the region; **fails**: the whole interval is
  outside it; **unresolved**: the interval straddles a boundary, and the verdict says about how many test items
  (or seeds) would settle it.

A check that cannot fail (a fact of the architecture, a max taken over the test set) is not a claim: declare it
with `Ledger.demonstrate`, and it is shown without a verdict.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["ARTICLE", "Accuracy", "Scores", "difference", "accuracy", "paired_difference", "unpaired_difference",
           "mean_and_se", "half_width",
           "interval", "verdict_for", "judge", "Judgement", "Ledger", "aggregate", "count_line", "ledger_rows",
           "VERDICTS", "Z95", "ledger_markdown", "write_ledger_csv"]

# The article most of the course's claims come from; quote it by title, never as "the seed".
ARTICLE = "Transfer Learning Explained (Abstract Algorithms)"
VERDICTS = ("holds", "fails", "unresolved")
Z95 = 1.959963984540054  # two-sided 95 % normal quantile
# An interval end this many test items (in effect units, EDGE_ITEMS / n) from a boundary is "at the edge": the
# rounding of another CPU moves a trained model by a few items, enough to tip such a verdict.
EDGE_ITEMS = 2
TIE_FACTOR = 20  # an unresolved claim that would need more than 20x the test items is called practically a tie


# ----------------------------------------------------------------------------------------------------------------
# Per-item scores


class Scores(float):
    """Per-item scores (e.g. the item-by-item difference of two accuracies): their mean, keeping the items."""

    correct: np.ndarray

    def __new__(cls, values: Iterable[float]):
        arr = np.asarray(values, dtype=float).reshape(-1)
        if arr.size == 0:
            raise ValueError("Scores need at least one test item.")
        self = super().__new__(cls, float(arr.mean()))
        self.correct = arr
        return self

    @property
    def n(self) -> int:
        return int(self.correct.size)

    def __reduce__(self):
        return (type(self), (self.correct,))


def difference(a, b) -> Scores:
    """Item-by-item A - B of two accuracies on the same test items (to compare two gaps with `Ledger.compare`)."""
    x, y = _items(a, "A"), _items(b, "B")
    if x.shape != y.shape:
        raise ValueError(f"difference() needs the same test items: A has {x.size}, B has {y.size}.")
    return Scores(x - y)


class Accuracy(Scores):
    """An accuracy (a float) that remembers which test items were right, for paired comparisons.

    It prints, rounds and adds like the float it is; `correct` is the boolean array behind it, one entry per
    test item in a fixed order, so two Accuracy values on the same test set can be compared item by item.
    """

    def __new__(cls, correct: Iterable[bool]):
        arr = np.asarray(correct, dtype=bool).reshape(-1)
        if arr.size == 0:
            raise ValueError("An accuracy needs at least one test item.")
        self = float.__new__(cls, float(arr.mean()))
        self.correct = arr
        return self


def accuracy(predictions, targets) -> Accuracy:
    """Accuracy of class predictions (or logits/probabilities, argmax is taken) against targets, item by item."""
    pred = np.asarray(predictions.detach().cpu() if hasattr(predictions, "detach") else predictions)
    true = np.asarray(targets.detach().cpu() if hasattr(targets, "detach") else targets).reshape(-1)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    pred = pred.reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"predictions ({pred.shape[0]}) and targets ({true.shape[0]}) must cover the same items.")
    return Accuracy(pred == true)


def _items(value, name: str) -> np.ndarray:
    correct = getattr(value, "correct", value)
    arr = np.asarray(correct, dtype=float).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} has no test items.")
    return arr


# ----------------------------------------------------------------------------------------------------------------
# Effects and intervals


def paired_difference(a, b) -> tuple[float, float, int]:
    """Effect A - B over shared test items and its standard error: (mean of d_i, sd(d) / sqrt(n), n).

    a, b: `Accuracy` values (or per-item scores, 0/1 or real) on the *same* items in the same order.
    """
    x, y = _items(a, "A"), _items(b, "B")
    if x.shape != y.shape:
        raise ValueError(f"A paired comparison needs the same test items: A has {x.size}, B has {y.size}. "
                         "Score both models on one test set.")
    d = x - y
    n = d.size
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf")
    return float(d.mean()), se, n


def unpaired_difference(a, b) -> tuple[float, float, int]:
    """Effect A - B as if the two test sets were independent (what you get without per-item pairing)."""
    x, y = _items(a, "A"), _items(b, "B")
    se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size) if min(x.size, y.size) > 1 else float("inf")
    return float(x.mean() - y.mean()), se, int(min(x.size, y.size))


def mean_and_se(a) -> tuple[float, float, int]:
    """Mean of per-item scores (an accuracy) and its standard error."""
    x = _items(a, "A")
    se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("inf")
    return float(x.mean()), se, int(x.size)


def half_width(a, n: int | None = None) -> float:
    """Half the width of one accuracy's 95 % interval over its test items: the error bar a plot draws.

    a: an Accuracy (or per-item scores), whose items give the standard error; or a plain accuracy with n, the
    number of test items it was measured on (the binomial standard error sqrt(p (1 - p) / n)).
    """
    if hasattr(a, "correct") or (not isinstance(a, (int, float)) and np.ndim(a) > 0):
        return Z95 * mean_and_se(a)[1]
    if n is None:
        raise TypeError("half_width needs an Accuracy (which keeps its test items) or a plain accuracy with n=, the "
                        "number of test items it was measured on.")
    if n < 2:
        raise ValueError(f"half_width needs at least 2 test items, got n={n}.")
    p = float(a)
    if not 0 <= p <= 1:
        raise ValueError(f"half_width with n= takes an accuracy between 0 and 1, got {p}.")
    return Z95 * math.sqrt(p * (1 - p) / (n - 1))  # ddof=1, as mean_and_se: the same bar as from the items


def _t95(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def interval(effects: Sequence[float], ses: Sequence[float]) -> tuple[float, float, float, float]:
    """(effect, low, high, seed share) from one effect per seed and each run's item standard error.

    One seed: effect +- 1.96 se. k seeds: the mean effect, with the item noise of one run and the spread between
    seeds (t with k - 1 degrees of freedom) added in quadrature. `seed share` is the seeds' part of the variance.
    """
    e = np.asarray(effects, dtype=float)
    s = np.asarray(ses, dtype=float)
    if e.size == 0 or e.size != s.size:
        raise ValueError("interval() needs one standard error per effect, and at least one effect.")
    mean = float(e.mean())
    item_half = Z95 * float(np.sqrt(np.mean(s ** 2)))
    seed_half = _t95(e.size - 1) * float(e.std(ddof=1)) / math.sqrt(e.size) if e.size > 1 else 0.0
    half = math.hypot(item_half, seed_half)
    share = seed_half ** 2 / half ** 2 if half > 0 else 0.0
    return mean, mean - half, mean + half, share


def verdict_for(low: float, high: float, region: tuple[float | None, float | None]) -> str:
    """holds: [low, high] lies inside the region; fails: wholly outside it; else unresolved."""
    lo = -math.inf if region[0] is None else region[0]
    hi = math.inf if region[1] is None else region[1]
    if low > lo and high < hi:
        return "holds"
    if high <= lo or low >= hi:
        return "fails"
    return "unresolved"


def _resolve_hint(effect: float, low: float, high: float, region, n_items: int, n_seeds: int,
                  seed_share: float) -> str:
    """About how many test items or seeds would shrink the interval enough to settle the verdict."""
    bounds = [b for b in region if b is not None and low < b < high]
    if not bounds:
        return ""
    gap = min(abs(effect - b) for b in bounds)
    half = (high - low) / 2
    factor = (half / gap) ** 2 if gap > 0 else math.inf
    if factor > TIE_FACTOR:
        nearest = min(bounds, key=lambda b: abs(effect - b))
        what = "seeds" if seed_share > 0.5 and n_seeds > 1 else "test items"
        where = "a tie" if nearest == 0 else f"on the claim's boundary ({nearest:+g})"
        return f"practically {where}: settling it would take over {TIE_FACTOR} times as many {what}"
    if seed_share > 0.5 and n_seeds > 1:
        return f"about {math.ceil(n_seeds * factor)} seeds would settle it (here {n_seeds})"
    need = math.ceil(n_items * factor)
    extra = " and more seeds" if n_seeds > 1 and seed_share > 0.2 else ""
    return f"about {need:,} test items{extra} would settle it (here {n_items:,})"


# ----------------------------------------------------------------------------------------------------------------
# One claim's judgement


@dataclass
class Judgement:
    """A declared claim with what one or more runs measured and its verdict (one ledger row)."""

    id: str
    claim: str
    source: str
    kind: str  # "compare" (A vs B), "value" (A against a stated number or range) or "demonstration"
    article: str = ""  # the article's number for this claim, quoted ("88 %"), or ""
    compared: str = ""  # "feature extraction vs scratch"
    region: tuple[float | None, float | None] = (None, None)
    expect: str = ""  # the region in words: "> 0", "in [0.03, 0.08]"
    unit: str = "accuracy"
    measured: str = ""  # this run's numbers in words ("0.800 vs 0.580")
    a_value: float | None = None  # A's own number (its accuracy, or the measured value)
    b_value: float | None = None  # B's, for a comparison
    effect: float | None = None
    low: float | None = None
    high: float | None = None
    se: float | None = None
    n_items: int = 0
    n_seeds: int = 1
    seed_share: float = 0.0
    verdict: str = "demonstration"
    edge: bool = False  # an interval end within two test items of the claim's boundary: another CPU may tip it
    resolve: str = ""
    note: str = ""
    effects: list[float] = field(default_factory=list)  # per seed, when aggregated
    ses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["region"] = list(self.region)
        return d


def _describe_region(region, unit: str) -> str:
    lo, hi = region
    pts = unit in ("accuracy", "points")

    def f(v):
        return f"{v:+.3f}" if pts else f"{v:g}"
    if lo is not None and hi is not None:
        return f"in [{f(lo)}, {f(hi)}]"
    if lo is not None:
        return f"> {f(lo)}"
    if hi is not None:
        return f"< {f(hi)}"
    return "any"


def _region(expect: str, margin: float, within: tuple[float, float] | None):
    if within is not None:
        lo, hi = within
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"within=({lo}, {hi}): the low end must not exceed the high end.")
        return (lo, hi)
    if expect == "greater":
        return (margin, None)
    if expect == "less":
        return (None, -margin)
    raise ValueError(f"expect must be 'greater' or 'less' (or give within=(low, high)), got {expect!r}.")


def judge(id: str, claim: str, *, source: str, effects: Sequence[float], ses: Sequence[float], n_items: int,
          region: tuple[float | None, float | None], kind: str = "compare", article: str = "", compared: str = "",
          unit: str = "accuracy", measured: str = "", note: str = "", a_value: float | None = None,
          b_value: float | None = None) -> Judgement:
    """The one rule: effect and 95 % interval over items (and seeds), then holds / fails / unresolved."""
    effect, low, high, share = interval(effects, ses)
    verdict = verdict_for(low, high, region)
    edge = n_items > 0 and any(b is not None and min(abs(low - b), abs(high - b)) < EDGE_ITEMS / n_items
                               for b in region)
    resolve = _resolve_hint(effect, low, high, region, n_items, len(effects), share) if verdict == "unresolved" else ""
    return Judgement(id=id, claim=claim, source=source, kind=kind, article=article, compared=compared,
                     region=tuple(region), expect=_describe_region(region, unit), unit=unit, measured=measured,
                     effect=effect, low=low, high=high, se=float(np.sqrt(np.mean(np.square(ses)))),
                     n_items=int(n_items), n_seeds=len(effects), seed_share=share, verdict=verdict, edge=edge,
                     resolve=resolve, note=note, a_value=a_value, b_value=b_value,
                     effects=[float(e) for e in effects], ses=[float(s) for s in ses])


# ----------------------------------------------------------------------------------------------------------------
# A notebook's ledger


def _fmt(value: float, unit: str) -> str:
    if unit in ("accuracy", "points"):
        return f"{value:.3f}"
    return f"{value:.3g}{unit if unit == 'x' else ''}"


class Ledger:
    """A notebook's claims, each declared and judged by the one rule; `table()` is its "claims checked" table.

    ledger = Ledger("02_freeze_strategies")
    ledger.compare("fe-beats-scratch", "A frozen backbone + head beats training from scratch", source=ARTICLE,
                   a=("feature extraction", acc_fe), b=("scratch", acc_scratch), article="88 % vs 61 %")
    ledger.table()
    """

    def __init__(self, notebook: str):
        self.notebook = notebook
        self.judgements: list[Judgement] = []

    def _add(self, j: Judgement) -> Judgement:
        if any(k.id == j.id for k in self.judgements):
            raise ValueError(f"Claim id {j.id!r} is declared twice in {self.notebook}: give each claim its own id.")
        self.judgements.append(j)
        return j

    def compare(self, id: str, claim: str, *, source: str, a: tuple[str, Any], b: tuple[str, Any],
                expect: str = "greater", margin: float = 0.0, within: tuple[float, float] | None = None,
                article: str = "", note: str = "") -> Judgement:
        """A vs B on the same test items: effect = A - B (paired), judged against `expect`/`margin` or `within`.

        a, b: (label, Accuracy) pairs; the Accuracy values must come from the same test items in the same order.
        expect: "greater" (A - B > margin) or "less" (A - B < -margin); within=(low, high) for "close to" or
        a stated range of the difference (e.g. the article's "3-8 points": within=(0.03, 0.08)).
        """
        (a_label, a_val), (b_label, b_val) = a, b
        effect, se, n = paired_difference(a_val, b_val)
        region = _region(expect, margin, within)
        return self._add(judge(id, claim, source=source, effects=[effect], ses=[se], n_items=n, region=region,
                               kind="compare", article=article, compared=f"{a_label} vs {b_label}",
                               measured=f"{float(a_val):.3f} vs {float(b_val):.3f}", note=note,
                               a_value=float(a_val), b_value=float(b_val)))

    def value(self, id: str, claim: str, *, source: str, a: tuple[str, Any], within: tuple[float | None, float | None],
              article: str = "", unit: str = "accuracy", se: float | None = None, n_items: int | None = None,
              note: str = "") -> Judgement:
        """A against a stated number or range: an Accuracy (its item noise is used) or a measured number.

        within: the region the claim puts A in, e.g. (0.91, 0.95) for "about 93 %", (4, None) for "at least 4x".
        se: the standard error of a plain number (0 for a deterministic measurement such as memory); n_items: how
        many items it came from (for the "what would settle it" hint).
        """
        label, val = a
        if hasattr(val, "correct"):
            mean, s, n = mean_and_se(val)
        else:
            if se is None:
                raise ValueError(f"Claim {id!r}: a plain number needs se= (0 for a deterministic measurement).")
            mean, s, n = float(val), float(se), int(n_items or 0)
        return self._add(judge(id, claim, source=source, effects=[mean], ses=[s], n_items=n, region=within,
                               kind="value", article=article, compared=label, unit=unit,
                               measured=f"{label} {_fmt(mean, unit)}", note=note, a_value=mean))

    def demonstrate(self, id: str, claim: str, *, source: str, shown: str, article: str = "") -> Judgement:
        """A check that cannot fail (a fact of the architecture, a number chosen on the test set): no verdict."""
        return self._add(Judgement(id=id, claim=claim, source=source, kind="demonstration", article=article,
                                   measured=shown, verdict="demonstration"))

    def not_measured(self, id: str, claim: str, *, source: str, why: str, article: str = "") -> Judgement:
        """A claim this run cannot reach (e.g. it needs the full tier online): listed, with why, and no verdict."""
        return self._add(Judgement(id=id, claim=claim, source=source, kind="not measured", article=article,
                                   measured=why, verdict="not measured"))

    def __iter__(self):
        return iter(self.judgements)

    def __len__(self) -> int:
        return len(self.judgements)

    def __getitem__(self, id: str) -> Judgement:
        for j in self.judgements:
            if j.id == id:
                return j
        raise KeyError(f"No claim {id!r} in {self.notebook}; declared: {[j.id for j in self.judgements]}.")

    def records(self) -> list[dict]:
        """The claims as plain dicts, for `labkit.record(..., claims=ledger)`."""
        return [j.to_dict() for j in self.judgements]

    def table(self, show: bool = True):
        """The "claims checked" table (the article's number beside ours); displayed, and returned when show=False."""
        rows = ledger_rows(self.judgements)
        if not show:
            return rows
        from labkit.viz import show_table

        return show_table(rows)

    def counts(self) -> str:
        return count_line(self.judgements)


def _effect_text(j) -> str:
    get = j.get if isinstance(j, Mapping) else lambda k, d=None: getattr(j, k, d)
    if get("kind") in ("demonstration", "not measured") or get("effect") is None:
        return ""
    unit = get("unit") or "accuracy"
    if unit in ("accuracy", "points"):
        sign = "+" if get("kind") == "compare" else ""
        return f"{get('effect'):{sign}.3f} [{get('low'):{sign}.3f}, {get('high'):{sign}.3f}]"
    return f"{_fmt(get('effect'), unit)} [{_fmt(get('low'), unit)}, {_fmt(get('high'), unit)}]"


def ledger_rows(judgements: Iterable, notebook: bool = False) -> list[dict]:
    """Table rows: claim, source, the article's number, what was measured, effect [95 % interval], verdict."""
    rows = []
    for j in judgements:
        get = j.get if isinstance(j, Mapping) else lambda k, d=None, j=j: getattr(j, k, d)
        verdict = get("verdict")
        if get("edge"):
            verdict = f"{verdict} (at the edge)"
        if get("verdict") == "unresolved" and get("resolve"):
            verdict = f"{verdict}: {get('resolve')}"
        row = {}
        if notebook:
            row["notebook"] = get("notebook", "")
        row.update({"claim": get("claim"), "source": get("source"), "article": get("article") or "",
                    "this run" if not notebook else "measured": get("measured") or "",
                    "expected": get("expect") or "", "effect [95 % CI]": _effect_text(j), "verdict": verdict})
        if get("n_seeds", 1) and get("n_seeds", 1) > 1:
            row["seeds"] = get("n_seeds")
        rows.append(row)
    return rows


def ledger_markdown(judgements: Sequence, extra: Mapping[str, str] | None = None) -> str:
    """A ledger (one row per claim, a notebook column) as Markdown, then its count line in bold.

    extra: more columns from each judgement, {column title: key}, e.g. {"single runs": "note"} over seeds.
    """
    from labkit._tables import markdown_table

    rows = ledger_rows(judgements, notebook=True)
    if not rows:
        return "(no notebook recorded any claims)"
    get = [j.get if isinstance(j, Mapping) else (lambda k, d=None, j=j: getattr(j, k, d)) for j in judgements]
    for row, g in zip(rows, get):
        for title, key in (extra or {}).items():
            row[title] = g(key, "")
    header = list(dict.fromkeys(k for r in rows for k in r))
    return markdown_table(header, [[r.get(k, "") for k in header] for r in rows]) + f"\n\n**{count_line(judgements)}**"


def write_ledger_csv(judgements: Sequence, path) -> None:
    """Every field of every claim as one CSV row (the per-seed lists left out)."""
    import pandas as pd

    records = [j if isinstance(j, Mapping) else j.to_dict() for j in judgements]
    pd.DataFrame(records).drop(columns=["effects", "ses"], errors="ignore").to_csv(path, index=False)


def count_line(judgements: Iterable) -> str:
    """'N hold, M fail, K unresolved' (+ demonstrations)."""
    verdicts = [j.get("verdict") if isinstance(j, Mapping) else j.verdict for j in judgements]
    c = {v: verdicts.count(v) for v in VERDICTS + ("demonstration", "not measured")}
    line = f"{c['holds']} hold, {c['fails']} fail, {c['unresolved']} unresolved"
    extra = []
    if c["demonstration"]:
        extra.append(f"{c['demonstration']} demonstration{'s' if c['demonstration'] != 1 else ''}")
    if c["not measured"]:
        extra.append(f"{c['not measured']} not measured")
    if extra:
        line += f" ({' and '.join(extra)}, without a verdict)"
    return line


# ----------------------------------------------------------------------------------------------------------------
# Across seeds


def aggregate(claim_runs: Sequence[Mapping]) -> dict:
    """Judge one claim over several runs (seeds) with the same rule; each run is a recorded claim dict."""
    without = ("demonstration", "not measured")
    measured = [r for r in claim_runs if r.get("kind") not in without]
    if not measured:  # every run showed or skipped it: nothing to judge
        out = dict(claim_runs[0])
        out["n_seeds"] = len(claim_runs)
        return out
    if len(measured) < len(claim_runs):
        # a claim a run could not measure (its precondition failed there, e.g. a run diverged) is judged over the
        # runs that measured it, and the row says how many those were
        row = aggregate(measured)
        row["note"] = (f"measured in {len(measured)} of {len(claim_runs)} runs (the others: not measured); "
                       + row.get("note", ""))
        return row
    first = claim_runs[0]
    ids = {r.get("id") for r in claim_runs}
    if len(ids) != 1:
        raise ValueError(f"aggregate() needs runs of one claim, got ids {sorted(map(str, ids))}.")
    effects = [float(r["effect"]) for r in claim_runs]
    ses = [float(r["se"]) for r in claim_runs]
    region = tuple(first.get("region") or (None, None))
    j = judge(first["id"], first["claim"], source=first.get("source", ""), effects=effects, ses=ses,
              n_items=int(first.get("n_items") or 0), region=region, kind=first.get("kind", "compare"),
              article=first.get("article", ""), compared=first.get("compared", ""),
              unit=first.get("unit", "accuracy"), note=first.get("note", ""))
    mean = {k: statistics.fmean(r[k] for r in claim_runs) if all(r.get(k) is not None for r in claim_runs) else None
            for k in ("a_value", "b_value")}
    j.a_value, j.b_value = mean["a_value"], mean["b_value"]
    unit = first.get("unit", "accuracy")
    if j.kind == "compare" and None not in mean.values():
        j.measured = f"{mean['a_value']:.3f} vs {mean['b_value']:.3f}"
    elif mean["a_value"] is not None:
        j.measured = f"{first.get('compared', '')} {_fmt(mean['a_value'], unit)}".strip()
    single = [r.get("verdict") for r in claim_runs]
    j.note = "single runs: " + ", ".join(f"{single.count(v)} {v}" for v in VERDICTS if single.count(v))
    return j.to_dict()
