"""Claims: one rule that turns an experiment into a verdict (holds / fails / unresolved).

A claim is declared before it is judged: an id, the sentence it checks, its source (a registered source by title and
section, `labkit.sources`), what is compared (A vs B, or A against a stated number or range), which way, and the
**smallest effect that matters** (`min_effect`, with its reason; one point of accuracy unless the claim says more).
The same rule judges every claim in the course, for one run or many:

* the evidence is the per-item scores of A and B on the same test items (one column per seed), never summaries;
* `labkit.estimate` gives the mean effect and its 95 % interval: for one seed the paired comparison (Tango's score
  interval for paired 0/1 scores, never zero width), for k seeds an items x seeds variance split (item, seed and
  churn parts, Satterthwaite's degrees of freedom); the row says what the interval generalises over;
* the claim names the region its effect must fall in: "A beats B" means effect > min_effect; "3-8 points" means
  [0.03, 0.08]; "close to" means [-0.05, 0.05]. **holds**: the whole interval is inside the region; **fails**: the
  whole interval is outside it, which includes a tight tie below `min_effect` ("no gain that matters");
  **unresolved**: the interval straddles a boundary, and the row says what would settle it (test items at these
  seeds, else seeds with the whole pool, at 80 % power) or that the pool cannot;
* **edge** (its own column): the verdict changes when two test items are flipped either way, so another CPU's
  rounding may tip it. It says nothing about significance.

A check that cannot fail (a fact of the architecture, a max taken over the test set) is not a claim: declare it with
`Ledger.demonstrate`, and it is shown without a verdict. Over seeds (`aggregate`), a claim whose precondition failed
in some seeds gets no verdict over the survivors, and runs that scored different test items are not paired.
"""
from __future__ import annotations

import base64
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from labkit import sources
from labkit.claim_tables import (
    EDGE_ITEMS,
    EDGE_TEXT,
    VERDICTS,
    _effect_text,
    count_line,
    declarations_fingerprint,
    format_number,
    ledger_markdown,
    ledger_rows,
    published_ledger,
    write_ledger_csv,
)
from labkit.estimate import Estimate, estimate, estimate_numbers, power_hint
from labkit.metrics import (
    Z95,
    Accuracy,
    Scores,
    accuracy,
    difference,
    half_width,
    mean_and_se,
    paired_difference,
    unpaired_difference,
)
from labkit.viz import show_table

__all__ = ["ARTICLE", "Accuracy", "Scores", "difference", "accuracy", "paired_difference", "unpaired_difference",
           "mean_and_se", "half_width", "MIN_EFFECT", "MIN_EFFECT_WHY",
           "interval", "verdict_for", "judge", "Judgement", "Ledger", "aggregate", "count_line", "ledger_rows",
           "VERDICTS", "Z95", "ledger_markdown", "write_ledger_csv", "published_ledger", "declarations_fingerprint",
           "pack_items", "unpack_items", "EDGE_TEXT", "EDGE_ITEMS"]

# The article most of the course's claims come from; cite it by title (and section), never as "the seed".
ARTICLE = "Transfer Learning Explained (Abstract Algorithms)"
# The course's default smallest effect that matters for "A beats B", and why.
MIN_EFFECT = 0.01
MIN_EFFECT_WHY = "one point of accuracy: a smaller gain would not change which recipe a practitioner picks"


# ----------------------------------------------------------------------------------------------------------------
# Per-item records, compact


def pack_items(values) -> str:
    """Per-item scores as a short string: 0/1 as bits, small integers as int8, anything else as float32."""
    arr = np.asarray(getattr(values, "correct", values), dtype=float).reshape(-1)
    if np.isin(arr, (0.0, 1.0)).all():
        return f"b{arr.size}:" + base64.b64encode(np.packbits(arr.astype(np.uint8)).tobytes()).decode()
    if np.all(arr == np.round(arr)) and np.abs(arr).max() < 128:
        return "i:" + base64.b64encode(arr.astype(np.int8).tobytes()).decode()
    return "f:" + base64.b64encode(arr.astype(np.float32).tobytes()).decode()


def unpack_items(text: str) -> np.ndarray:
    """The per-item scores `pack_items` wrote."""
    head, _, body = text.partition(":")
    raw = base64.b64decode(body)
    if head.startswith("b"):
        return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[: int(head[1:])].astype(float)
    if head == "i":
        return np.frombuffer(raw, dtype=np.int8).astype(float)
    if head == "f":
        return np.frombuffer(raw, dtype=np.float32).astype(float)
    raise ValueError(f"Not a packed item record: {text[:20]!r}.")


# ----------------------------------------------------------------------------------------------------------------
# The rule


def interval(effects: Sequence[float], ses: Sequence[float]) -> tuple[float, float, float, float]:
    """(effect, low, high, seed share) for plain numbers, one per seed, without per-item scores.

    One value: effect +- 1.96 se. k values: Student's t over the seeds (the spread between seeds already holds each
    run's measurement noise, so the runs' own standard errors are not added again).
    """
    e = np.asarray(effects, dtype=float)
    s = np.asarray(ses, dtype=float)
    if e.size == 0 or e.size != s.size:
        raise ValueError("interval() needs one standard error per effect, and at least one effect.")
    est = estimate_numbers(e, s)
    return est.effect, est.low, est.high, 1.0 if e.size > 1 else 0.0


def verdict_for(low: float, high: float, region: tuple[float | None, float | None]) -> str:
    """holds: [low, high] lies inside the region; fails: wholly outside it; else unresolved."""
    lo = -math.inf if region[0] is None else region[0]
    hi = math.inf if region[1] is None else region[1]
    if low > lo and high < hi:
        return "holds"
    if high <= lo or low >= hi:
        return "fails"
    return "unresolved"


def _flip(a: np.ndarray, b: np.ndarray | None, direction: int, count: int = EDGE_ITEMS):
    """A copy of the scores with `count` test items flipped towards A (+1) or towards B (-1)."""
    a = a.copy()
    b = None if b is None else b.copy()
    flat_a = a.reshape(-1)
    if b is None:
        idx = np.flatnonzero(flat_a == (0 if direction > 0 else 1))[:count]
        flat_a[idx] = 1 if direction > 0 else 0
        return a, b
    flat_b = b.reshape(-1)
    idx = np.flatnonzero(flat_a == flat_b)[:count]
    for i in idx:
        if direction > 0:
            if flat_a[i] >= 1:
                flat_b[i] -= 1
            else:
                flat_a[i] += 1
        elif flat_a[i] >= 1:
            flat_a[i] -= 1
        else:
            flat_b[i] += 1
    return a, b


def _is_edge(a, b, region, verdict: str, aligned: bool) -> bool:
    for direction in (1, -1):
        fa, fb = _flip(a, b, direction)
        est = estimate(fa, fb, aligned=aligned)
        if verdict_for(est.low, est.high, region) != verdict:
            return True
    return False


# ----------------------------------------------------------------------------------------------------------------
# One claim's judgement


@dataclass
class Judgement:
    """A declared claim with what one or more runs measured and its verdict (one ledger row)."""

    id: str
    claim: str
    source: str
    kind: str  # "compare" (A vs B), "value" (A against a stated number or range) or "demonstration"
    article: str = ""  # the source's number for this claim, quoted ("88 %"), or ""
    compared: str = ""  # "feature extraction vs scratch"
    region: tuple[float | None, float | None] = (None, None)
    expect: str = ""  # the region in words: "> +0.010", "in [0.03, 0.08]"
    min_effect: float | None = None  # the smallest effect that matters (a comparison's boundary)
    min_effect_why: str = ""
    unit: str = "accuracy"
    measured: str = ""  # this run's numbers in words ("0.800 vs 0.580")
    a_value: float | None = None  # A's own number (its accuracy, or the measured value)
    b_value: float | None = None  # B's, for a comparison
    effect: float | None = None
    low: float | None = None
    high: float | None = None
    se: float | None = None
    df: float | None = None
    n_items: int = 0
    n_seeds: int = 1
    var_item: float = 0.0
    var_seed: float = 0.0
    var_churn: float = 0.0
    seed_share: float = 0.0  # the seeds' part of the variance of the mean
    generalises: str = ""  # what the interval generalises over
    verdict: str = "demonstration"
    edge: bool = False  # two test items flipped either way change the verdict: another CPU may tip it
    resolve: str = ""  # for an unresolved claim: what would settle it
    note: str = ""
    pool: int | None = None  # how many test items the data set could give (caps the hint)
    fingerprint: str = ""  # which test items were scored (a hash of their labels in order)
    items_a: str = ""  # per-item scores, packed (labkit.claims.pack_items)
    items_b: str = ""
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


def _region(expect: str, min_effect: float, within: tuple[float, float] | None):
    if within is not None:
        lo, hi = within
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"within=({lo}, {hi}): the low end must not exceed the high end.")
        return (lo, hi)
    if min_effect < 0:
        raise ValueError(f"min_effect is a size, at least 0; got {min_effect}.")
    if expect == "greater":
        return (min_effect, None)
    if expect == "less":
        return (None, -min_effect)
    raise ValueError(f"expect must be 'greater' or 'less' (or give within=(low, high)), got {expect!r}.")


def _fill(j: Judgement, est: Estimate, region, pool: int | None, a=None, b=None, aligned: bool = True) -> Judgement:
    j.effect, j.low, j.high, j.se = est.effect, est.low, est.high, est.se
    j.df = est.df if math.isfinite(est.df) else None
    j.n_items, j.n_seeds = est.n, est.k
    j.var_item, j.var_seed, j.var_churn = est.var_item, est.var_seed, est.var_churn
    total = est.var_item / max(est.n, 1) + est.var_seed / est.k + est.var_churn / (max(est.n, 1) * est.k)
    j.seed_share = est.var_seed / est.k / total if total > 0 else 0.0
    j.generalises = est.generalises
    j.verdict = verdict_for(est.low, est.high, region)
    j.resolve = power_hint(est, region, pool) if j.verdict == "unresolved" else ""
    j.edge = a is not None and _is_edge(a, b, region, j.verdict, aligned)
    if est.notes:
        j.note = "; ".join(filter(None, [j.note, *est.notes]))
    return j


def judge(id: str, claim: str, *, source: str, effects: Sequence[float], ses: Sequence[float], n_items: int,
          region: tuple[float | None, float | None], kind: str = "compare", article: str = "", compared: str = "",
          unit: str = "accuracy", measured: str = "", note: str = "", a_value: float | None = None,
          b_value: float | None = None) -> Judgement:
    """The rule for plain numbers (no per-item scores): effect and 95 % interval over seeds, then the verdict."""
    est = estimate_numbers(effects, ses)
    est.n = int(n_items)
    j = Judgement(id=id, claim=claim, source=source, kind=kind, article=article, compared=compared,
                  region=tuple(region), expect=_describe_region(region, unit), unit=unit, measured=measured,
                  note=note, a_value=a_value, b_value=b_value, effects=[float(e) for e in effects],
                  ses=[float(s) for s in ses])
    _fill(j, est, region, None)
    j.n_items = int(n_items)
    return j


# ----------------------------------------------------------------------------------------------------------------
# A notebook's ledger


def _draw_columns(claim_id: str, value) -> tuple[np.ndarray, str]:
    """Per-item scores as a vector, or as an items x draws matrix for a list of scores (one per training draw on
    the same test items); and their fingerprint."""
    if isinstance(value, (list, tuple)) and value and all(hasattr(v, "correct") or np.ndim(v) == 1 for v in value):
        cols = [np.asarray(getattr(v, "correct", v), dtype=float).reshape(-1) for v in value]
        prints = {getattr(v, "fingerprint", "") for v in value} - {""}
        if not cols or len({c.size for c in cols}) != 1 or len(prints) > 1:
            raise ValueError(f"Claim {claim_id!r}: draws must all be scored on the same test items.")
        return (np.column_stack(cols) if len(cols) > 1 else cols[0]), (prints.pop() if prints else "")
    return np.asarray(getattr(value, "correct", value), dtype=float).reshape(-1), getattr(value, "fingerprint", "")


def _check_source(source: str) -> str:
    sources.resolve(source)
    return source


class Ledger:
    """A notebook's claims, each declared and judged by the one rule; `table()` is its "claims checked" table.

    ledger = Ledger("02_freeze_strategies")
    ledger.compare("fe-beats-scratch", "A frozen backbone + head beats training from scratch",
                   a=("feature extraction", acc_fe), b=("scratch", acc_scratch), article="88 % vs 61 %")

    A claim's source is looked up by its id in `labkit.sources.CLAIM_SOURCES` (or given as source="key §Section").
    ledger.table()

    min_effect / min_effect_why: the notebook's smallest effect that matters for "A beats B" claims (default one
    point of accuracy); a claim can declare its own.
    """

    def __init__(self, notebook: str, min_effect: float = MIN_EFFECT, min_effect_why: str = MIN_EFFECT_WHY):
        self.notebook = notebook
        self.min_effect = float(min_effect)
        self.min_effect_why = min_effect_why
        self.judgements: list[Judgement] = []

    def _add(self, j: Judgement) -> Judgement:
        if any(k.id == j.id for k in self.judgements):
            raise ValueError(f"Claim id {j.id!r} is declared twice in {self.notebook}: give each claim its own id.")
        if not j.source:  # the claim's source lives in one place: labkit.sources.CLAIM_SOURCES
            j.source = sources.for_claim(j.id)
        _check_source(j.source)
        self.judgements.append(j)
        return j

    def compare(self, id: str, claim: str, *, a: tuple[str, Any], b: tuple[str, Any], source: str | None = None,
                expect: str = "greater", min_effect: float | None = None, why: str = "",
                within: tuple[float, float] | None = None, article: str = "", note: str = "",
                pool: int | None = None, margin: float | None = None) -> Judgement:
        """A vs B on the same test items: effect = A - B (paired), judged against `min_effect` or `within`.

        a, b: (label, Accuracy) pairs; the Accuracy values must come from the same test items in the same order.
            A list of Accuracy values instead (several draws of the training data, each scored on the same test
            items) is judged over items x draws, so the interval also covers which training images were drawn; the
            ledger records each item's mean over the draws.
        expect: "greater" (A - B > min_effect) or "less" (A - B < -min_effect). min_effect: the smallest effect
        that matters (default: the ledger's), why: its one-line reason; within=(low, high) for "close to" or a
        stated range (e.g. "3-8 points": within=(0.03, 0.08)). pool: how many test items the data could give.
        """
        if margin is not None:  # the older name of min_effect
            min_effect = margin
        if min_effect is None:
            min_effect, why = self.min_effect, why or self.min_effect_why
        (a_label, a_val), (b_label, b_val) = a, b
        x, fa = _draw_columns(id, a_val)
        y, fb = _draw_columns(id, b_val)
        if x.shape != y.shape or x.size == 0:
            raise ValueError(f"Claim {id!r}: a paired comparison needs the same test items: A has {x.shape[0]}, B "
                             f"has {y.shape[0]} (and as many draws as A). Score both models on one test set.")
        if fa and fb and fa != fb:
            raise ValueError(f"Claim {id!r}: A and B were scored on different test items (fingerprints {fa} and "
                             f"{fb}). Score both models on one test set.")
        region = _region(expect, min_effect, within)
        j = Judgement(id=id, claim=claim, source=source, kind="compare", article=article,
                      compared=f"{a_label} vs {b_label}", region=tuple(region),
                      expect=_describe_region(region, "accuracy"),
                      min_effect=None if within is not None else float(min_effect),
                      min_effect_why="" if within is not None else why, note=note,
                      measured=f"{x.mean():.3f} vs {y.mean():.3f}", a_value=float(x.mean()),
                      b_value=float(y.mean()), pool=pool, fingerprint=fa or fb,
                      items_a=pack_items(x.mean(axis=1) if x.ndim == 2 else x),
                      items_b=pack_items(y.mean(axis=1) if y.ndim == 2 else y))
        est = estimate(x, y)
        _fill(j, est, region, pool, x, y)
        j.effects, j.ses = [est.effect], [est.se]
        if x.ndim == 2:  # draws of the training data within one run, not seeds
            j.n_seeds = 1
            j.resolve = j.resolve.replace(" seeds", " draws")
            j.note = "; ".join(filter(None, [f"mean over {x.shape[1]} draws of the training data; the interval "
                                             "covers test items and draws", j.note]))
        return self._add(j)

    def value(self, id: str, claim: str, *, a: tuple[str, Any], within: tuple[float | None, float | None],
              source: str | None = None,
              article: str = "", unit: str = "accuracy", se: float | None = None, n_items: int | None = None,
              note: str = "", pool: int | None = None) -> Judgement:
        """A against a stated number or range: an Accuracy (its items are the evidence) or a measured number.

        within: the region the claim puts A in, e.g. (0.91, 0.95) for "about 93 %", (4, None) for "at least 4x".
        se: the standard error of a plain number (0 for a deterministic measurement such as memory); n_items: how
        many items it came from.
        """
        label, val = a
        j = Judgement(id=id, claim=claim, source=source, kind="value", article=article, compared=label,
                      region=tuple(within), expect=_describe_region(within, unit), unit=unit, note=note, pool=pool)
        if hasattr(val, "correct"):
            x = np.asarray(val.correct, dtype=float).reshape(-1)
            j.items_a, j.fingerprint = pack_items(x), getattr(val, "fingerprint", "")
            est = estimate(x)
            _fill(j, est, within, pool, x, None)
        else:
            if se is None:
                raise ValueError(f"Claim {id!r}: a plain number needs se= (0 for a deterministic measurement).")
            est = estimate_numbers([float(val)], [float(se)])
            _fill(j, est, within, pool)
            j.n_items = int(n_items or 0)
        j.a_value = est.effect
        j.measured = f"{label} {format_number(est.effect, unit)}"
        j.effects, j.ses = [est.effect], [est.se]
        return self._add(j)

    def demonstrate(self, id: str, claim: str, *, shown: str, source: str | None = None,
                    article: str = "") -> Judgement:
        """A check that cannot fail (a fact of the architecture, a number chosen on the test set): no verdict."""
        return self._add(Judgement(id=id, claim=claim, source=source, kind="demonstration", article=article,
                                   measured=shown, verdict="demonstration"))

    def not_measured(self, id: str, claim: str, *, why: str, source: str | None = None, article: str = "") -> Judgement:
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
        """The claims as plain dicts (per-item scores packed), for `labkit.record(..., claims=ledger)`."""
        return [j.to_dict() for j in self.judgements]

    def published(self, id: str) -> dict | None:
        """The published over-seeds row of one of this notebook's claims (None when the ledger lacks it)."""
        return published_ledger().get((self.notebook, id))

    def verdict(self, id: str) -> str:
        """The verdict a headline sentence should read: the published one over seeds, else this run's."""
        row = self.published(id)
        return row["verdict"] if row else self[id].verdict

    def table(self, show: bool = True, published: bool = False):
        """The "claims checked" table; published=True adds the published verdict over seeds beside this run's."""
        rows = ledger_rows(self.judgements, published=published_ledger() if published else None,
                           notebook_name=self.notebook)
        if not show:
            return rows
        return show_table(rows)

    def counts(self) -> str:
        return count_line(self.judgements)

    def summary(self, n: int = 3) -> list[str]:
        """Up to n lines on what this run showed, built from the verdicts (never typed by hand): claims this run
        settled (holds, fails) first, then unresolved ones, then demonstrations, each group in declaration order.

        A judged claim whose published verdict over seeds differs from this run's comes after every claim of its
        group that agrees, and its line says the ledger's verdict: one run's word never stands alone against it.
        """
        rank = {"holds": 0, "fails": 0, "unresolved": 1, "demonstration": 2}

        def differs(j) -> dict | None:
            row = self.published(j.id) if j.verdict in ("holds", "fails", "unresolved") else None
            return row if row and row.get("verdict") and row["verdict"] != j.verdict else None

        lines = []
        for j in sorted(self.judgements, key=lambda j: (rank.get(j.verdict, 3), differs(j) is not None))[:n]:
            effect = _effect_text(j)
            numbers = "; ".join(t for t in (j.measured, f"effect {effect}" if effect else "") if t)
            verdict = "shown" if j.verdict == "demonstration" else j.verdict
            row = differs(j)
            seeds = f" in this run, {row['verdict']} over {row.get('n_seeds') or 'several'} seeds" if row else ""
            lines.append(f"{verdict}{seeds}: {j.claim}")
            lines[-1] += f" ({numbers})" if numbers else ""
        return lines


# ----------------------------------------------------------------------------------------------------------------
# Across seeds


def aggregate(claim_runs: Sequence[Mapping]) -> dict:
    """Judge one claim over several runs (seeds) with the same rule; each run is a recorded claim dict.

    The per-item scores of every run form an items x seeds matrix (runs must have scored the same test items, by
    fingerprint; otherwise the seeds are not paired item by item). A claim some runs could not measure gets no
    verdict: judging it over the survivors would select on the outcome.
    """
    ids = {r.get("id") for r in claim_runs}
    if len(ids) != 1:
        raise ValueError(f"aggregate() needs runs of one claim, got ids {sorted(map(str, ids))}.")
    without = ("demonstration", "not measured")
    measured = [r for r in claim_runs if r.get("kind") not in without]
    first = dict(claim_runs[0])
    if not measured:  # every run showed or skipped it: nothing to judge
        first["n_seeds"] = len(claim_runs)
        return first
    texts = {r.get("claim") for r in claim_runs}
    if len(measured) < len(claim_runs):
        out = dict(measured[0])
        missing = [r for r in claim_runs if r.get("kind") in without]
        out.update(kind="not measured", verdict="not measured", effect=None, low=None, high=None, resolve="",
                   edge=False, n_seeds=len(claim_runs),
                   measured=f"measured in {len(measured)} of {len(claim_runs)} seeds; in the others: "
                            f"{missing[0].get('measured', '')}",
                   note="its precondition failed in some seeds, so there is no verdict over the survivors "
                        "(that would select on the outcome)")
        return out
    m0 = measured[0]
    region = tuple(m0.get("region") or (None, None))
    unit = m0.get("unit", "accuracy")
    j = Judgement(id=m0["id"], claim=m0["claim"], source=m0.get("source", ""), kind=m0.get("kind", "compare"),
                  article=m0.get("article", ""), compared=m0.get("compared", ""), region=region,
                  expect=m0.get("expect") or _describe_region(region, unit), min_effect=m0.get("min_effect"),
                  min_effect_why=m0.get("min_effect_why", ""), unit=unit, pool=m0.get("pool"),
                  effects=[float(r["effect"]) for r in measured], ses=[float(r.get("se") or 0) for r in measured])
    has_items = all(r.get("items_a") for r in measured) and (j.kind != "compare"
                                                              or all(r.get("items_b") for r in measured))
    if has_items:
        a = [unpack_items(r["items_a"]) for r in measured]
        b = [unpack_items(r["items_b"]) for r in measured] if j.kind == "compare" else None
        prints = {r.get("fingerprint", "") for r in measured}
        sizes = {x.size for x in a}
        aligned = len(prints) == 1 and len(sizes) == 1
        if aligned:
            A = np.column_stack(a)
            B = np.column_stack(b) if b is not None else None
            j.fingerprint = prints.pop()
            _fill(j, estimate(A, B), region, j.pool, A, B)
        else:
            # items differ between seeds: compare each seed's mean only (t over seeds)
            means = [float(x.mean() - (y.mean() if b is not None else 0.0)) for x, y in zip(a, b or a)]
            est = estimate_numbers(means)
            est.basis, est.n = "seeds", int(min(sizes))
            _fill(j, est, region, j.pool)
            j.fingerprint = "differs by seed"
            j.note = "the seeds scored different test items, so items are not paired across seeds"
    else:
        _fill(j, estimate_numbers(j.effects, j.ses if len(j.effects) == 1 else None), region, j.pool)
        j.n_items = int(m0.get("n_items") or 0)
    mean = {k: statistics.fmean(r[k] for r in measured) if all(r.get(k) is not None for r in measured) else None
            for k in ("a_value", "b_value")}
    j.a_value, j.b_value = mean["a_value"], mean["b_value"]
    if j.kind == "compare" and None not in mean.values():
        j.measured = f"{mean['a_value']:.3f} vs {mean['b_value']:.3f}"
    elif mean["a_value"] is not None:
        j.measured = f"{m0.get('compared', '')} {format_number(mean['a_value'], unit)}".strip()
    single = [r.get("verdict") for r in measured]
    notes = ["single runs: " + ", ".join(f"{single.count(v)} {v}" for v in VERDICTS if single.count(v))]
    if len(texts) > 1:
        notes.append("the claim's wording differs between seeds (it names one seed's choice)")
    j.note = "; ".join(filter(None, [*notes, j.note if "not paired" in j.note else ""]))
    return j.to_dict()
