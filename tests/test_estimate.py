"""The estimator behind every verdict (labkit.estimate): coverage of its 95 % interval, by simulation."""
import numpy as np
import pytest

from labkit.estimate import estimate, tango_interval, wilson_interval


def simulate(rng, n, k, delta, w_item, w_seed, w_churn, rho):
    """0/1 scores of A and B on n items over k seeds.

    Each item has a base difficulty p_i (shared by A and B) and an A-specific advantage; each seed shifts A by a
    seed effect; each (item, seed) cell adds churn. rho: how often A's and B's coin is the same draw (1: they
    disagree only where their probabilities differ, i.e. few discordant items). The true effect over the item
    population is delta (plus the seed's shift, for one seed: one run generalises over items, not seeds).
    """
    p = rng.uniform(0.3, 0.7, n)
    item = rng.uniform(-w_item, w_item, n)
    seed = rng.uniform(-w_seed, w_seed, k)
    pa = p[:, None] + delta + item[:, None] + seed[None, :] + rng.uniform(-w_churn, w_churn, (n, k))
    pb = p[:, None] + rng.uniform(-w_churn, w_churn, (n, k))
    u = rng.random((n, k))
    v = np.where(rng.random((n, k)) < rho, u, rng.random((n, k)))
    true = delta + (seed[0] if k == 1 else 0.0)
    return (u < pa).astype(float), (v < pb).astype(float), true


SCENARIOS = {
    "one seed, many discordant items": dict(n=500, k=1, delta=0.03, w_item=0.1, w_seed=0.05, w_churn=0.05, rho=0.0),
    "one seed, few discordant items": dict(n=300, k=1, delta=0.01, w_item=0.0, w_seed=0.0, w_churn=0.0, rho=1.0),
    "five seeds, item variance": dict(n=500, k=5, delta=0.02, w_item=0.15, w_seed=0.01, w_churn=0.0, rho=0.5),
    "five seeds, seed variance": dict(n=500, k=5, delta=0.02, w_item=0.05, w_seed=0.08, w_churn=0.02, rho=0.5),
    "five seeds, churn": dict(n=500, k=5, delta=0.02, w_item=0.05, w_seed=0.02, w_churn=0.2, rho=0.3),
    "five seeds, few discordant items": dict(n=300, k=5, delta=0.005, w_item=0.0, w_seed=0.003, w_churn=0.0,
                                             rho=1.0),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_95_percent_interval_covers_the_true_effect_93_to_97_percent_of_the_time(name):
    rng = np.random.default_rng(20261203)
    sims = 2000
    hits = 0
    for _ in range(sims):
        a, b, true = simulate(rng, **SCENARIOS[name])
        est = estimate(a, b)
        hits += est.low <= true <= est.high
    assert 0.93 <= hits / sims <= 0.97, f"{name}: coverage {hits / sims:.3f}"


def test_one_seed_reduces_to_the_paired_comparison():
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.8).astype(float)
    b = (rng.random(400) < 0.7).astype(float)
    one = estimate(a, b)
    assert one.k == 1 and one.basis == "items" and one.kind == "paired"
    assert (one.low, one.high) == pytest.approx(tango_interval(((a - b) > 0).sum(), ((a - b) < 0).sum(), 400))
    assert "this training run" in one.generalises
    five = estimate(np.column_stack([a] * 5), np.column_stack([b] * 5))
    assert five.basis == "items and seeds" and "seeds" in five.generalises
    # five identical seeds are one seed's evidence, not five times as much
    assert five.high - five.low == pytest.approx(one.high - one.low, rel=0.1)


def test_agreement_on_every_item_has_non_zero_width():
    lo, hi = tango_interval(0, 0, 500)
    assert lo < 0 < hi and hi == pytest.approx(3.84 / 500, rel=0.02)
    ones = np.ones(500)
    est = estimate(np.column_stack([ones] * 5), np.column_stack([ones] * 5))
    assert est.high > est.low


def test_wilson_for_one_accuracy():
    lo, hi = wilson_interval(80, 100)
    assert lo == pytest.approx(0.7112, abs=1e-3) and hi == pytest.approx(0.8667, abs=1e-3)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="same items and seeds"):
        estimate(np.ones((10, 2)), np.ones((10, 3)))


def test_hints_over_seeds_name_what_would_settle_it():
    from labkit.estimate import Estimate, power_hint

    # seeds dominate: more test items cannot help, more seeds can
    seedy = Estimate(0.05, -0.03, 0.13, 0.02, 2.0, 500, 3, "items and seeds", var_item=0.01, var_seed=0.002,
                     var_churn=0.2, kind="paired")
    hint = power_hint(seedy, (0.01, None))
    assert "seeds with these 500 items would settle it 80 % of the time (here 3)" in hint
    # items dominate: more test items at these seeds settle it, but not beyond a pool that is too small
    itemy = Estimate(0.03, -0.002, 0.062, 0.008, 400.0, 500, 3, "items and seeds", var_item=0.05, var_seed=0.0,
                     var_churn=0.2, kind="paired")
    assert "test items would settle it 80 % of the time (here 500)" in power_hint(itemy, (0.01, None))
    assert "pool" in power_hint(itemy, (0.01, None), pool=520) or "seeds" in power_hint(itemy, (0.01, None), pool=520)
