"""The estimator behind every verdict: the mean effect over an items x seeds matrix and its 95 % interval.

One function, `estimate`, for one seed or many. The data are the per-item scores of A (and B, for a comparison)
on the same test items in the same order, one column per seed (training run):

* **One seed, paired 0/1 scores** (two models right or wrong on each item): Tango's score interval for a difference
  of paired proportions. It is built on the discordant items (those the two models disagree on), keeps its
  coverage when there are few of them, and never has zero width: two models that agree on every one of n items get
  an interval of about +-3.8 / n. It generalises over *the population of test items like these, for this training
  run*.
* **One seed, one model's 0/1 scores** (an accuracy against a stated number): Wilson's score interval.
* **k seeds**: a two-way random-effects split of the variance of d_ij (item i, seed j) into an item part (some items
  are easy for A and hard for B, whatever the seed), a seed part (a whole run is luckier) and churn (which items a
  retrained model happens to flip): Var(mean) = s2_item / n + s2_seed / k + s2_churn / (n k), each part estimated
  from the mean squares of the matrix (negative estimates set to 0), with Satterthwaite's degrees of freedom. For 0/1
  scores the score interval of the pooled n k pairs is widened by the design effect (that variance over the naive
  one, at least 1) and by t / z, so one seed is the special case k = 1. It generalises over *the population of test
  items and the population of training seeds*.
* **Seeds that scored different items** (a test set redrawn per seed): items cannot be paired across seeds, so the
  interval is Student's t over the seed means (each already carries its own item noise).
* **Plain numbers** (a memory ratio, a mean over seeds of numbers without items): Student's t over the seeds, or the
  stated standard error for one run.

`power_hint` solves the same variance split for the test items (at the current seeds) and then the seeds (with the
whole pool) that would settle a verdict with 80 % power, and says so when the pool cannot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from labkit.metrics import Z95

__all__ = ["Estimate", "estimate", "tango_interval", "wilson_interval", "variance_parts", "power_hint",
           "Z80", "t_quantile"]

Z80 = 0.8416212335729143  # one-sided normal quantile for 80 % power

_GENERALISES = {
    "items": "the population of test items like these, for this training run",
    "items and seeds": "the population of test items and of training seeds",
    "seeds": "the population of training seeds (each seed scored its own test items)",
    "number": "this measurement's stated standard error",
    "number over seeds": "the population of training seeds",
}


def t_quantile(df: float) -> float:
    """Two-sided 95 % quantile of Student's t (the normal one for df = inf)."""
    if not math.isfinite(df) or df > 1e6:
        return Z95
    from scipy import stats

    return float(stats.t.ppf(0.975, max(df, 1.0)))


@dataclass
class Estimate:
    """The mean effect, its 95 % interval, and the variance split it came from."""

    effect: float
    low: float
    high: float
    se: float
    df: float
    n: int  # test items (per seed)
    k: int  # seeds
    basis: str  # one of _GENERALISES' keys
    var_item: float = 0.0  # per-item variance parts (not yet divided by n or k)
    var_seed: float = 0.0
    var_churn: float = 0.0
    kind: str = "scores"  # "paired" (0/1 pairs), "proportion" (0/1 of one model), "scores" or "number"
    notes: list[str] = field(default_factory=list)

    @property
    def generalises(self) -> str:
        return _GENERALISES[self.basis]


# ----------------------------------------------------------------------------------------------------------------
# Score intervals for 0/1 data


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion."""
    if n <= 0:
        raise ValueError("wilson_interval needs at least one item.")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _tango_z(delta: float, b: float, c: float, n: float) -> float:
    """Tango's score statistic for H0: p_A - p_B = delta (b: A right, B wrong; c: A wrong, B right)."""
    w = -b - c + (2 * n - b + c) * delta
    q21 = (math.sqrt(max(w * w + 8 * n * c * delta * (1 + delta), 0.0)) - w) / (4 * n)
    var = n * (2 * q21 + delta * (1 - delta))
    num = b - c - n * delta
    if var <= 0:
        return math.copysign(math.inf, num) if num else 0.0
    return num / math.sqrt(var)


def tango_interval(b: float, c: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Tango's (1998) score interval for a difference of paired proportions, from the discordant counts.

    b: items A got right and B wrong; c: the reverse; n: all paired items. Never zero width, even for b = c = 0.
    """
    from scipy.optimize import brentq

    if n <= 0:
        raise ValueError("tango_interval needs at least one item.")
    est = (b - c) / n
    eps = 1e-12
    lo_end, hi_end = -1 + eps, 1 - eps

    def f(target):
        return lambda d: _tango_z(d, b, c, n) - target

    low = lo_end if _tango_z(lo_end, b, c, n) <= z else brentq(f(z), lo_end, min(est, hi_end), xtol=1e-10)
    high = hi_end if _tango_z(hi_end, b, c, n) >= -z else brentq(f(-z), max(est, lo_end), hi_end, xtol=1e-10)
    return low, high


# ----------------------------------------------------------------------------------------------------------------
# The variance split


def variance_parts(d: np.ndarray) -> tuple[float, float, float, float, float]:
    """(var of the mean, s2_item, s2_seed, s2_churn, Satterthwaite df) of an n x k matrix (k >= 2, n >= 2)."""
    n, k = d.shape
    grand = d.mean()
    rows, cols = d.mean(axis=1), d.mean(axis=0)
    ms_i = k * float(((rows - grand) ** 2).sum()) / (n - 1)
    ms_s = n * float(((cols - grand) ** 2).sum()) / (k - 1)
    resid = d - rows[:, None] - cols[None, :] + grand
    ms_e = float((resid ** 2).sum()) / ((n - 1) * (k - 1))
    s2_i = max(0.0, (ms_i - ms_e) / k)
    s2_s = max(0.0, (ms_s - ms_e) / n)
    s2_e = ms_e
    # REML's rule for a balanced two-way layout: a part whose mean square falls below churn's is 0, and its sum of
    # squares is pooled into churn's; what remains is a combination of mean squares with non-negative weights
    df_i, df_s, df_e = n - 1, k - 1, (n - 1) * (k - 1)
    if ms_s <= ms_e and ms_i <= ms_e:  # neither items nor seeds stand out from churn
        pooled = float(((d - grand) ** 2).sum()) / (n * k - 1)
        var, df = pooled / (n * k), float(n * k - 1)
        s2_i = s2_s = 0.0
        s2_e = pooled
    elif ms_s <= ms_e:  # no seed part: the item means carry everything
        var, df = ms_i / (n * k), float(df_i)
        s2_s = 0.0
        s2_e = (ms_e * df_e + ms_s * df_s) / (df_e + df_s)
    elif ms_i <= ms_e:  # no item part: the seed means carry everything
        var, df = ms_s / (n * k), float(df_s)
        s2_i = 0.0
        s2_e = (ms_e * df_e + ms_i * df_i) / (df_e + df_i)
    else:
        combo = ms_i + ms_s - ms_e
        var = combo / (n * k)
        df = combo * combo / (ms_i ** 2 / df_i + ms_s ** 2 / df_s + ms_e ** 2 / df_e)
    return var, s2_i, s2_s, s2_e, df


def _as_matrix(x) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    return arr.reshape(-1, 1) if arr.ndim == 1 else arr


def _binary(*arrays) -> bool:
    return all(a is not None and np.isin(a, (0.0, 1.0)).all() for a in arrays)


def estimate(a, b=None, *, aligned: bool = True) -> Estimate:
    """Mean effect (A - B, or A alone) and its 95 % interval over an items x seeds matrix.

    a, b: per-item scores, shape (n,) for one seed or (n, k) for k seeds (same items in the same order in every
    column when `aligned`); b=None judges A's own mean (an accuracy against a stated number).
    aligned=False: each column scored its own test items (e.g. redrawn per seed); pairing across seeds is refused.
    """
    A = _as_matrix(a)
    B = None if b is None else _as_matrix(b)
    if B is not None and A.shape != B.shape:
        raise ValueError(f"A and B must be scored on the same items and seeds: A is {A.shape}, B is {B.shape}.")
    n, k = A.shape
    if n < 1:
        raise ValueError("An estimate needs at least one test item.")
    d = A if B is None else A - B
    effect = float(d.mean())
    kind = ("paired" if _binary(A, B) else "scores") if B is not None else ("proportion" if _binary(A) else "scores")
    if not aligned and k > 1:
        means = d.mean(axis=0)
        se = float(means.std(ddof=1)) / math.sqrt(k)
        t = t_quantile(k - 1)
        return Estimate(effect, effect - t * se, effect + t * se, se, float(k - 1), n, k, "seeds",
                        var_seed=float(means.var(ddof=1)), kind=kind,
                        notes=["the seeds scored different test items, so items are not paired across seeds"])
    if k == 1:
        var_i = float(d[:, 0].var(ddof=1)) if n > 1 else 0.0
        var_i = max(var_i, (1.0 / n) * (1 - 1.0 / n) if n > 1 else 0.25)  # at least one discordant item's worth
        var_mean, s2_i, s2_s, s2_e, df = var_i / n, var_i, 0.0, 0.0, float(max(n - 1, 1))
        basis = "items"
    else:
        if n < 2:
            raise ValueError("A several-seed estimate needs at least two test items.")
        var_mean, s2_i, s2_s, s2_e, df = variance_parts(d)
        var_mean = max(var_mean, 1.0 / (n * k) ** 2)
        basis = "items and seeds"
    se = math.sqrt(var_mean)
    if kind in ("paired", "proportion"):
        pairs = n * k
        if kind == "paired":
            bb = float((d > 0).sum())
            cc = float((d < 0).sum())
            lo, hi = tango_interval(bb, cc, pairs)
        else:
            lo, hi = wilson_interval(float(A.sum()), pairs)
        naive = float(d.var(ddof=1)) / pairs if pairs > 1 else 0.0
        scale = 1.0
        if k > 1:
            deff = var_mean / naive if naive > 0 else 1.0
            scale = math.sqrt(deff) * t_quantile(df) / Z95
        low, high = effect - (effect - lo) * scale, effect + (hi - effect) * scale
    else:
        t = t_quantile(df)
        low, high = effect - t * se, effect + t * se
    return Estimate(effect, low, high, se, df, n, k, basis, s2_i, s2_s, s2_e, kind)


def estimate_numbers(values, ses=None) -> Estimate:
    """A plain number per seed (no items): t over seeds, or the stated standard error of one run."""
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 0:
        raise ValueError("estimate_numbers needs at least one value.")
    mean = float(v.mean())
    if v.size == 1:
        se = float(np.asarray(ses if ses is not None else [0.0], dtype=float).reshape(-1)[0])
        return Estimate(mean, mean - Z95 * se, mean + Z95 * se, se, math.inf, 0, 1, "number", kind="number")
    se = float(v.std(ddof=1)) / math.sqrt(v.size)
    t = t_quantile(v.size - 1)
    return Estimate(mean, mean - t * se, mean + t * se, se, float(v.size - 1), 0, int(v.size), "number over seeds",
                    var_seed=float(v.var(ddof=1)), kind="number")


# ----------------------------------------------------------------------------------------------------------------
# What would settle it


def power_hint(est: Estimate, region, pool: int | None = None) -> str:
    """The test items (at these seeds), else the seeds (with the whole pool), that would settle it 80 % of the time.

    Uses the same variance split as the interval: an unresolved claim needs its standard error at most
    gap / (1.96 + 0.84), where gap is the distance from the effect to the nearest boundary inside the interval.
    """
    bounds = [x for x in region if x is not None and est.low < x < est.high]
    if not bounds:
        return ""
    gap = min(abs(est.effect - x) for x in bounds)
    if gap == 0:
        return "no number of items or seeds can settle it (the effect sits on the claim's boundary)"
    target = (gap / (Z95 + Z80)) ** 2  # the variance of the mean that settles it with 80 % power
    if est.kind == "number" or est.n == 0:
        if est.k > 1 and est.var_seed > 0:
            k_need = math.ceil(est.var_seed / target)
            return f"about {k_need} seeds would settle it 80 % of the time (here {est.k})"
        return "nothing can settle it (a measurement without test items or seeds to add)"
    k = est.k
    per_item = est.var_item + est.var_churn / k
    if est.basis == "seeds":
        k_need = math.ceil(est.var_seed / target) if target > 0 else math.inf
        return f"about {k_need} seeds would settle it 80 % of the time (here {k}, each seed with its own test items)"
    cap = pool if pool else None
    if k > 1:
        return _several_seeds_hint(est, gap, cap)
    room = target - est.var_seed / k
    if room > 0:
        n_need = math.ceil(per_item / room)
        if cap is None or n_need <= cap:
            if n_need <= est.n:
                n_need = est.n + 1
            return f"about {n_need:,} test items would settle it 80 % of the time (here {est.n:,})"
    n_use = cap or est.n
    if k == 1:
        where = f"all {cap:,} items of the pool" if cap else f"{est.n:,} items"
        return (f"{where} would not settle it at one seed, though more seeds might if part of the item noise is "
                "churn (one run cannot tell)")
    room_s = target - est.var_item / n_use
    if room_s > 0 and (est.var_seed > 0 or est.var_churn > 0):
        k_need = math.ceil((est.var_seed + est.var_churn / n_use) / room_s)
        with_items = f"all {cap:,} items of the pool" if cap else f"these {est.n:,} items"
        return f"about {k_need} seeds with {with_items} would settle it 80 % of the time (here {k})"
    if cap:
        return (f"the test pool of {cap:,} items cannot settle it with any number of seeds (the effect is within "
                f"{gap:.3f} of the claim's boundary)")
    return (f"it would take more test items and seeds than this setting has (the effect is within {gap:.3f} of the "
            "boundary)")


def _settles(est: Estimate, n: int, k: int, gap: float) -> bool:
    """Would n items x k seeds, with this variance split, put the interval clear of the boundary 80 % of the time?"""
    ms_i = est.var_churn + k * est.var_item
    ms_s = est.var_churn + n * est.var_seed
    ms_e = est.var_churn
    combo = ms_i + ms_s - ms_e
    denom = ms_i ** 2 / (n - 1) + ms_s ** 2 / (k - 1) + ms_e ** 2 / ((n - 1) * (k - 1))
    df = combo * combo / denom if denom > 0 else math.inf
    var = est.var_item / n + est.var_seed / k + est.var_churn / (n * k)
    return (t_quantile(df) + Z80) * math.sqrt(var) <= gap


def _several_seeds_hint(est: Estimate, gap: float, cap: int | None) -> str:
    """For k seeds: the test items at these seeds, else the seeds with all items, that settle it (t at their df)."""
    k, n = est.k, est.n
    top = cap or 10 ** 6
    if top > n and _settles(est, top, k, gap):
        lo, hi = n, top  # _settles(lo) is false, _settles(hi) is true
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if _settles(est, mid, k, gap) else (mid, hi)
        return f"about {hi:,} test items would settle it 80 % of the time (here {n:,})"
    n_use = cap or n
    with_items = f"all {cap:,} items of the pool" if cap else f"these {n:,} items"
    for seeds in range(k + 1, 1001):
        if _settles(est, n_use, seeds, gap):
            return f"about {seeds} seeds with {with_items} would settle it 80 % of the time (here {k})"
    if cap:
        return (f"the test pool of {cap:,} items cannot settle it with any number of seeds (the effect is within "
                f"{gap:.3f} of the claim's boundary)")
    return (f"it would take more test items and seeds than this setting has (the effect is within {gap:.3f} of the "
            "boundary)")
