"""The one claims rule (labkit.claims) on constructed cases."""
import math

import numpy as np
import pytest

from labkit import claims
from labkit.claims import Accuracy, Ledger, aggregate, count_line, interval, paired_difference, unpaired_difference


def items(n_right: int, n: int, order=None) -> Accuracy:
    correct = np.zeros(n, dtype=bool)
    correct[:n_right] = True
    return Accuracy(correct if order is None else correct[order])


def test_accuracy_is_a_float_that_keeps_its_items():
    acc = claims.accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]))
    assert acc == 0.75 and isinstance(acc, float) and acc.n == 4
    assert acc.correct.tolist() == [True, True, False, True]
    assert round(acc, 2) == 0.75 and f"{acc:.3f}" == "0.750"
    logits = np.array([[2.0, 0.1], [0.1, 3.0]])
    assert claims.accuracy(logits, [0, 0]) == 0.5
    with pytest.raises(ValueError, match="same items"):
        claims.accuracy([0, 1], [0, 1, 1])


def test_clear_win_holds():
    # A right on 450 of 500 items, B on 300, A right wherever B is right
    ledger = Ledger("t")
    j = ledger.compare("win", "A beats B", source="test", a=("A", items(450, 500)), b=("B", items(300, 500)))
    assert j.verdict == "holds"
    assert j.effect == pytest.approx(0.3)
    assert 0 < j.low < 0.3 < j.high
    assert j.resolve == ""


def test_clear_loss_fails():
    ledger = Ledger("t")
    j = ledger.compare("loss", "A beats B", source="test", a=("A", items(300, 500)), b=("B", items(450, 500)))
    assert j.verdict == "fails" and j.high < 0


def test_tie_is_unresolved_and_says_what_would_settle_it():
    # both right on 380 items; A alone on 16, B alone on 10: a six-item lead that 500 items cannot resolve
    a = np.zeros(500, dtype=bool)
    b = np.zeros(500, dtype=bool)
    a[:380] = b[:380] = True
    a[380:396] = True
    b[396:406] = True
    j = Ledger("t").compare("tie", "A beats B", source="test", a=("A", Accuracy(a)), b=("B", Accuracy(b)))
    assert j.effect == pytest.approx(6 / 500)
    assert j.low < 0 < j.high
    assert j.verdict == "unresolved"
    assert "test items would settle it (here 500)" in j.resolve
    # the hint is honest: the same effect and disagreement rate on that many items clears zero
    need = int(j.resolve.split("about ")[1].split(" ")[0].replace(",", ""))
    assert 500 < need < 20 * 500
    assert j.effect - 1.96 * j.se * math.sqrt(500 / need) == pytest.approx(0, abs=1e-3)


def test_identical_predictions_do_not_beat_each_other():
    acc = items(400, 500)
    j = Ledger("t").compare("same", "A beats B", source="test", a=("A", acc), b=("B", acc))
    assert j.effect == 0 and j.verdict == "fails"


def test_paired_resolves_where_unpaired_cannot():
    # B is right on 400 of 500; A is right on those 400 and on 15 more: a small but consistent gain
    b = items(400, 500)
    a = items(415, 500)
    eff_p, se_p, _ = paired_difference(a, b)
    eff_u, se_u, _ = unpaired_difference(a, b)
    assert eff_p == pytest.approx(eff_u) == pytest.approx(0.03)
    assert se_p < se_u / 2
    assert claims.verdict_for(eff_p - 1.96 * se_p, eff_p + 1.96 * se_p, (0, None)) == "holds"
    assert claims.verdict_for(eff_u - 1.96 * se_u, eff_u + 1.96 * se_u, (0, None)) == "unresolved"
    assert Ledger("t").compare("p", "A beats B", source="test", a=("A", a), b=("B", b)).verdict == "holds"


def test_paired_needs_the_same_items():
    with pytest.raises(ValueError, match="same test items"):
        paired_difference(items(3, 5), items(3, 6))


def test_seed_spread_turns_a_single_run_holds_into_unresolved():
    single = claims.judge("c", "A beats B", source="test", effects=[0.05], ses=[0.015], n_items=500,
                          region=(0.0, None))
    assert single.verdict == "holds"
    runs = [dict(single.to_dict(), effect=e, se=0.015, verdict="?")
            for e in (0.05, -0.02, 0.06, 0.0, 0.03)]
    agg = aggregate(runs)
    assert agg["n_seeds"] == 5 and agg["effect"] == pytest.approx(0.024)
    assert agg["verdict"] == "unresolved"
    assert agg["seed_share"] > 0.5 and "seeds" in agg["resolve"]
    # the same mean with no spread between seeds stays resolved
    steady = aggregate([dict(r, effect=0.05) for r in runs])
    assert steady["verdict"] == "holds"


def test_interval_adds_seed_spread_to_item_noise():
    eff, low, high, share = interval([0.1], [0.01])
    assert (high - low) / 2 == pytest.approx(1.96 * 0.01, rel=1e-3) and share == 0
    eff, low, high, share = interval([0.1, 0.1, 0.1], [0.01, 0.01, 0.01])
    assert (high - low) / 2 == pytest.approx(1.96 * 0.01, rel=1e-3)
    eff, low, high, share = interval([0.0, 0.2], [0.0, 0.0])
    assert eff == pytest.approx(0.1) and (high - low) / 2 == pytest.approx(12.706 * 0.1414 / math.sqrt(2), rel=1e-3)


def test_value_claims_against_a_stated_range():
    ledger = Ledger("t")
    close = ledger.value("acc", "reaches about 93 %", source="test", a=("model", items(1860, 2000)),
                         within=(0.91, 0.95), article="93 %")
    assert close.verdict == "holds" and close.article == "93 %"
    far = ledger.value("acc2", "reaches about 93 %", source="test", a=("model", items(1500, 2000)), within=(0.91, 0.95))
    assert far.verdict == "fails"
    mem = ledger.value("mem", "cuts memory about 4x", source="test", a=("ratio", 6.0), se=0.0, within=(3, 5), unit="x")
    assert mem.verdict == "fails" and mem.effect == 6.0
    with pytest.raises(ValueError, match="se="):
        ledger.value("mem2", "x", source="test", a=("ratio", 6.0), within=(3, 5))


def test_range_of_a_difference():
    # the article's "3-8 points": a 5-point gain on enough items holds; a 1-point gain fails
    j = Ledger("t").compare("gap", "3-8 points", source="test", a=("A", items(1850, 2000)), b=("B", items(1750, 2000)),
                            within=(0.03, 0.08))
    assert j.verdict == "holds"
    j = Ledger("t").compare("gap", "3-8 points", source="test", a=("A", items(1770, 2000)), b=("B", items(1750, 2000)),
                            within=(0.03, 0.08))
    assert j.verdict == "fails"


def test_demonstrations_have_no_verdict_and_ledger_rows_and_counts():
    ledger = Ledger("t")
    ledger.demonstrate("rf", "receptive fields grow", source="architecture", shown="3 px -> 224 px")
    ledger.compare("win", "A beats B", source="test", a=("A", items(450, 500)), b=("B", items(300, 500)))
    ledger.compare("loss", "A beats B", source="test", a=("A", items(300, 500)), b=("B", items(450, 500)))
    rows = ledger.table(show=False)
    assert [r["verdict"] for r in rows] == ["demonstration", "holds", "fails"]
    assert rows[0]["effect [95 % CI]"] == ""
    assert rows[1]["effect [95 % CI]"].startswith("+0.300 [")
    assert count_line(ledger) == "1 hold, 1 fail, 0 unresolved (1 demonstration, without a verdict)"
    ledger.not_measured("imdb", "93 % on IMDB", source="test", why="needs the full tier online")
    assert count_line(ledger).endswith("(1 demonstration and 1 not measured, without a verdict)")
    assert count_line(ledger.records()) == count_line(ledger)
    with pytest.raises(ValueError, match="twice"):
        ledger.compare("win", "again", source="test", a=("A", items(1, 2)), b=("B", items(1, 2)))
    with pytest.raises(KeyError, match="declared"):
        ledger["nope"]


def test_a_verdict_does_not_hinge_on_rounding():
    # two CPUs that round a training run differently change a few items; a clear effect keeps its verdict
    rng = np.random.default_rng(1)
    a = rng.random(1000) < 0.85
    b = rng.random(1000) < 0.70
    base = Ledger("t").compare("c", "A beats B", source="t", a=("A", Accuracy(a)), b=("B", Accuracy(b))).verdict
    for k in range(5):
        a2 = a.copy()
        idx = rng.choice(1000, 5, replace=False)
        a2[idx] = ~a2[idx]
        assert Ledger("t").compare("c", "A beats B", source="t", a=("A", Accuracy(a2)),
                                   b=("B", Accuracy(b))).verdict == base == "holds"


def test_accuracy_pickles():
    import pickle

    acc = items(3, 5)
    back = pickle.loads(pickle.dumps(acc))
    assert back == acc and back.correct.tolist() == acc.correct.tolist()


def test_difference_compares_two_gaps_item_by_item():
    pre_last, rand_last = items(450, 500), items(300, 500)
    pre_first, rand_first = items(320, 500), items(300, 500)
    j = Ledger("t").compare("gap", "the gap grows", source="t", a=("last", claims.difference(pre_last, rand_last)),
                            b=("first", claims.difference(pre_first, rand_first)))
    assert j.effect == pytest.approx(0.26) and j.verdict == "holds"
    with pytest.raises(ValueError, match="same test items"):
        claims.difference(items(1, 3), items(1, 4))


def test_a_verdict_at_the_edge_is_marked():
    # the upper end of the interval a hair above the "within 5 points" boundary: one or two items could tip it
    j = claims.judge("edge", "close", source="t", effects=[0.006], ses=[0.0227], n_items=160, region=(-0.05, 0.05))
    assert j.verdict == "unresolved" and j.edge is True
    assert claims.ledger_rows([j])[0]["verdict"].startswith("unresolved (at the edge): about ")
    far = Ledger("t").compare("far", "A beats B", source="t", a=("A", items(450, 500)), b=("B", items(300, 500)))
    assert far.edge is False and claims.ledger_rows([far])[0]["verdict"] == "holds"


def test_a_hopeless_tie_is_called_practically_a_tie():
    j = claims.judge("tie", "A beats B", source="t", effects=[0.002], ses=[0.014], n_items=500, region=(0.0, None))
    assert j.verdict == "unresolved" and j.resolve.startswith("practically a tie")
    mem = Ledger("t").value("mem", "about 4x", source="t", a=("ratio", 6.7), se=0.0, within=(3, 5), unit="x")
    assert claims.ledger_rows([mem])[0]["effect [95 % CI]"] == "6.7x [6.7x, 6.7x]"


def test_half_width_is_the_error_bar_of_one_accuracy():
    from labkit.claims import Z95, Accuracy, half_width

    acc = Accuracy([True] * 80 + [False] * 20)
    assert half_width(acc) == pytest.approx(Z95 * np.sqrt(0.8 * 0.2 / 99), rel=1e-9)
    assert half_width(0.8, n=100) == pytest.approx(half_width(acc), rel=1e-9)  # items or (p, n): one bar
    with pytest.raises(TypeError, match="n="):
        half_width(0.8)
    with pytest.raises(ValueError, match="between 0 and 1"):
        half_width(80.0, n=100)


def test_a_claim_some_runs_could_not_measure_is_judged_over_the_others():
    single = claims.judge("c", "A beats B", source="test", effects=[0.05], ses=[0.01], n_items=500,
                          region=(0.0, None))
    skipped = {"id": "c", "claim": "A beats B", "kind": "not measured", "effect": None, "se": None,
               "verdict": "not measured"}
    runs = [dict(single.to_dict(), effect=e, se=0.01) for e in (0.05, 0.06, 0.04)] + [skipped, skipped]
    agg = aggregate(runs)
    assert agg["n_seeds"] == 3 and agg["effect"] == pytest.approx(0.05) and agg["verdict"] == "holds"
    assert agg["note"].startswith("measured in 3 of 5 runs")
    assert aggregate([skipped, skipped])["kind"] == "not measured"
