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
    j = ledger.compare("win", "A beats B", source="course", a=("A", items(450, 500)), b=("B", items(300, 500)))
    assert j.verdict == "holds"
    assert j.effect == pytest.approx(0.3)
    assert 0 < j.low < 0.3 < j.high
    assert j.resolve == ""


def test_clear_loss_fails():
    ledger = Ledger("t")
    j = ledger.compare("loss", "A beats B", source="course", a=("A", items(300, 500)), b=("B", items(450, 500)))
    assert j.verdict == "fails" and j.high < 0


def test_identical_predictions_do_not_beat_each_other():
    acc = items(400, 500)
    j = Ledger("t").compare("same", "A beats B", source="course", a=("A", acc), b=("B", acc))
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
    assert Ledger("t").compare("p", "A beats B", source="course", a=("A", a), b=("B", b)).verdict == "holds"


def test_paired_needs_the_same_items():
    with pytest.raises(ValueError, match="same test items"):
        paired_difference(items(3, 5), items(3, 6))


def test_seed_spread_turns_a_single_run_holds_into_unresolved():
    single = claims.judge("c", "A beats B", source="course", effects=[0.05], ses=[0.015], n_items=500,
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


def test_value_claims_against_a_stated_range():
    ledger = Ledger("t")
    close = ledger.value("acc", "reaches about 93 %", source="course", a=("model", items(1860, 2000)),
                         within=(0.91, 0.95), article="93 %")
    assert close.verdict == "holds" and close.article == "93 %"
    far = ledger.value("acc2", "reaches about 93 %", source="course", a=("model", items(1500, 2000)),
                       within=(0.91, 0.95))
    assert far.verdict == "fails"
    mem = ledger.value("mem", "cuts memory about 4x", source="course", a=("ratio", 6.0), se=0.0, within=(3, 5),
                       unit="x")
    assert mem.verdict == "fails" and mem.effect == 6.0
    with pytest.raises(ValueError, match="se="):
        ledger.value("mem2", "x", source="course", a=("ratio", 6.0), within=(3, 5))


def test_range_of_a_difference():
    # the article's "3-8 points": a 5-point gain on enough items holds; a 1-point gain fails
    j = Ledger("t").compare("gap", "3-8 points", source="course", a=("A", items(1850, 2000)),
                            b=("B", items(1750, 2000)),
                            within=(0.03, 0.08))
    assert j.verdict == "holds"
    j = Ledger("t").compare("gap", "3-8 points", source="course", a=("A", items(1770, 2000)),
                            b=("B", items(1750, 2000)),
                            within=(0.03, 0.08))
    assert j.verdict == "fails"


def test_demonstrations_have_no_verdict_and_ledger_rows_and_counts():
    ledger = Ledger("t")
    ledger.demonstrate("rf", "receptive fields grow", source="mechanism", shown="3 px -> 224 px")
    ledger.compare("win", "A beats B", source="course", a=("A", items(450, 500)), b=("B", items(300, 500)))
    ledger.compare("loss", "A beats B", source="course", a=("A", items(300, 500)), b=("B", items(450, 500)))
    rows = ledger.table(show=False)
    assert [r["verdict"] for r in rows] == ["demonstration", "holds", "fails"]
    assert rows[0]["effect [95 % CI]"] == ""
    assert rows[1]["effect [95 % CI]"].startswith("+0.300 [")
    assert count_line(ledger) == "1 hold, 1 fail, 0 unresolved (1 demonstration, without a verdict)"
    ledger.not_measured("imdb", "93 % on IMDB", source="course", why="needs the full tier online")
    assert count_line(ledger).endswith("(1 demonstration and 1 not measured, without a verdict)")
    assert count_line(ledger.records()) == count_line(ledger)
    with pytest.raises(ValueError, match="twice"):
        ledger.compare("win", "again", source="course", a=("A", items(1, 2)), b=("B", items(1, 2)))
    with pytest.raises(KeyError, match="declared"):
        ledger["nope"]


def test_a_verdict_does_not_hinge_on_rounding():
    # two CPUs that round a training run differently change a few items; a clear effect keeps its verdict
    rng = np.random.default_rng(1)
    a = rng.random(1000) < 0.85
    b = rng.random(1000) < 0.70
    base = Ledger("t").compare("c", "A beats B", source="course", a=("A", Accuracy(a)), b=("B", Accuracy(b))).verdict
    for k in range(5):
        a2 = a.copy()
        idx = rng.choice(1000, 5, replace=False)
        a2[idx] = ~a2[idx]
        assert Ledger("t").compare("c", "A beats B", source="course", a=("A", Accuracy(a2)),
                                   b=("B", Accuracy(b))).verdict == base == "holds"


def test_accuracy_pickles():
    import pickle

    acc = items(3, 5)
    back = pickle.loads(pickle.dumps(acc))
    assert back == acc and back.correct.tolist() == acc.correct.tolist()


def test_difference_compares_two_gaps_item_by_item():
    pre_last, rand_last = items(450, 500), items(300, 500)
    pre_first, rand_first = items(320, 500), items(300, 500)
    j = Ledger("t").compare("gap", "the gap grows", source="course", a=("last", claims.difference(pre_last, rand_last)),
                            b=("first", claims.difference(pre_first, rand_first)))
    assert j.effect == pytest.approx(0.26) and j.verdict == "holds"
    with pytest.raises(ValueError, match="same test items"):
        claims.difference(items(1, 3), items(1, 4))


def test_half_width_is_the_error_bar_of_one_accuracy():
    from labkit.claims import Z95, Accuracy, half_width

    acc = Accuracy([True] * 80 + [False] * 20)
    assert half_width(acc) == pytest.approx(Z95 * np.sqrt(0.8 * 0.2 / 99), rel=1e-9)
    assert half_width(0.8, n=100) == pytest.approx(half_width(acc), rel=1e-9)  # items or (p, n): one bar
    with pytest.raises(TypeError, match="n="):
        half_width(0.8)
    with pytest.raises(ValueError, match="between 0 and 1"):
        half_width(80.0, n=100)


def pair(n: int, a_only: int, b_only: int, both: int) -> tuple[Accuracy, Accuracy]:
    """Two accuracies on n items: `a_only` items only A gets right, `b_only` only B, `both` both."""
    a = np.zeros(n, dtype=bool)
    b = np.zeros(n, dtype=bool)
    a[:both] = b[:both] = True
    a[both:both + a_only] = True
    b[both + a_only:both + a_only + b_only] = True
    return Accuracy(a), Accuracy(b)


def test_a_tight_tie_fails_below_the_smallest_effect_that_matters():
    a, b = pair(2000, 10, 10, 1500)  # effect 0, interval about +-0.007: no gain of a point is possible
    j = Ledger("t").compare("tie", "A beats B", source="course", a=("A", a), b=("B", b))
    assert j.min_effect == claims.MIN_EFFECT and j.min_effect_why == claims.MIN_EFFECT_WHY
    assert j.expect == "> +0.010" and j.high < 0.01 and j.verdict == "fails"
    assert count_line([j]) == "0 hold, 1 fail (1 of them a tie below the smallest effect that matters), 0 unresolved"
    # a claim can declare its own smallest effect, with its reason
    j5 = Ledger("t").compare("five", "A beats B by 5 points", source="course", a=("A", a), b=("B", b),
                             min_effect=0.05, why="the article's gap")
    assert j5.region == (0.05, None) and j5.min_effect_why == "the article's gap"


def test_identical_models_get_an_interval_of_non_zero_width():
    acc = items(400, 500)
    j = Ledger("t").compare("same", "A beats B", source="course", a=("A", acc), b=("B", acc), within=(-0.02, 0.02))
    assert j.effect == 0 and j.low < 0 < j.high and j.high == pytest.approx(3.84 / 500, rel=0.05)
    assert j.verdict == "holds"  # every item agrees on 500 items: the two are within 2 points


def test_unresolved_says_how_many_items_would_settle_it_at_80_percent_power():
    a, b = pair(300, 30, 18, 200)  # +0.04 on 300 items: unresolved against one point
    j = Ledger("t").compare("gap", "A beats B", source="course", a=("A", a), b=("B", b))
    assert j.verdict == "unresolved" and "test items would settle it 80 % of the time" in j.resolve
    need = int(j.resolve.split("about ")[1].split(" ")[0].replace(",", ""))
    assert need > 300
    # at that size, simulated runs with the same discordance rates settle it about 80 % of the time
    rng = np.random.default_rng(0)
    settled = 0
    for _ in range(300):
        u = rng.random(need)
        aa, bb = pair(need, int((u < 30 / 300).sum()), int(((u >= 30 / 300) & (u < 48 / 300)).sum()), need // 2)
        settled += Ledger("t").compare("g", "A beats B", source="course", a=("A", aa), b=("B", bb)).verdict == "holds"
    assert 0.65 < settled / 300 < 0.95
    # a pool too small to settle it is said so
    capped = Ledger("t").compare("gap2", "A beats B", source="course", a=("A", a), b=("B", b), pool=320)
    assert "pool" in capped.resolve and "would not settle it at one seed" in capped.resolve
    assert capped.resolve.endswith("(one run cannot tell)")


def test_edge_is_its_own_column_computed_by_flipping_two_items():
    a, b = pair(500, 30, 12, 300)  # interval's low end near +0.01
    j = Ledger("t").compare("near", "A beats B", source="course", a=("A", a), b=("B", b))
    row = claims.ledger_rows([j])[0]
    assert row["verdict"] in claims.VERDICTS or row["verdict"].startswith("unresolved:")
    assert "edge" not in row["verdict"]
    flipped = [Ledger("t").compare("n", "A beats B", source="course", a=("A", x), b=("B", y)).verdict
               for x, y in (pair(500, 32, 12, 298), pair(500, 30, 14, 298))]
    assert j.edge == any(v != j.verdict for v in flipped)
    far = Ledger("t").compare("far", "A beats B", source="course", a=("A", items(450, 500)), b=("B", items(300, 500)))
    assert far.edge is False and claims.ledger_rows([far])[0]["edge"] == ""
    assert claims.ledger_rows([dict(far.to_dict(), edge=True)])[0]["edge"] == "tips if 2 items flip"


def test_plain_numbers_use_their_stated_error_and_t_over_seeds():
    eff, low, high, _ = interval([0.1], [0.01])
    assert (high - low) / 2 == pytest.approx(1.96 * 0.01, rel=1e-3)
    eff, low, high, _ = interval([0.0, 0.2], [0.0, 0.0])
    assert eff == pytest.approx(0.1) and (high - low) / 2 == pytest.approx(12.706 * 0.1414 / math.sqrt(2), rel=1e-3)
    mem = Ledger("t").value("mem", "about 4x", source="course", a=("ratio", 6.7), se=0.0, within=(3, 5), unit="x")
    assert claims.ledger_rows([mem])[0]["effect [95 % CI]"] == "6.7x [6.7x, 6.7x]"


def _run(id_, a, b):
    return Ledger("t").compare(id_, "A beats B", source="course", a=("A", a), b=("B", b)).to_dict()


def test_seeds_are_pooled_item_by_item_and_different_items_are_not_paired():
    rng = np.random.default_rng(3)
    runs = []
    for _ in range(5):
        a = rng.random(400) < 0.80
        b = rng.random(400) < 0.70
        runs.append(_run("c", Accuracy(a, labels=np.arange(400) % 4), Accuracy(b, labels=np.arange(400) % 4)))
    agg = aggregate(runs)
    assert agg["n_seeds"] == 5 and agg["n_items"] == 400 and agg["fingerprint"] == runs[0]["fingerprint"] != ""
    assert agg["generalises"].startswith("the population of test items and of training seeds")
    assert agg["verdict"] == "holds" and agg["note"].startswith("single runs: ")
    # a test set redrawn per seed: the items are not paired across seeds
    redrawn = [dict(r, fingerprint=f"seed{i}") for i, r in enumerate(runs)]
    agg2 = aggregate(redrawn)
    assert agg2["fingerprint"] == "differs by seed" and "not paired" in agg2["note"]


def test_a_claim_some_seeds_could_not_measure_gets_no_verdict_over_the_survivors():
    a, b = pair(500, 60, 10, 300)
    measured = _run("c", a, b)
    skipped = {"id": "c", "claim": "A beats B", "kind": "not measured", "measured": "run 3 diverged",
               "verdict": "not measured"}
    agg = aggregate([measured, measured, measured, skipped, skipped])
    assert agg["verdict"] == "not measured" and agg["effect"] is None and agg["n_seeds"] == 5
    assert "measured in 3 of 5 seeds" in agg["measured"] and "select on the outcome" in agg["note"]
    assert aggregate([skipped, skipped])["kind"] == "not measured"


def test_per_item_scores_are_recorded_compactly_and_round_trip():
    acc = items(333, 1000)
    packed = claims.pack_items(acc)
    assert len(packed) < 200 and claims.unpack_items(packed).tolist() == acc.correct.astype(float).tolist()
    gaps = claims.difference(items(3, 5), items(1, 5))
    assert claims.unpack_items(claims.pack_items(gaps)).tolist() == gaps.correct.tolist()
    j = Ledger("t").compare("c", "A beats B", source="course", a=("A", items(450, 500)), b=("B", items(300, 500)))
    assert claims.unpack_items(j.items_a).sum() == 450 and claims.unpack_items(j.items_b).sum() == 300


def test_scores_of_different_items_are_refused():
    a = Accuracy([True, False, True], labels=[0, 1, 2])
    b = Accuracy([True, True, False], labels=[2, 1, 0])
    with pytest.raises(ValueError, match="different test items"):
        Ledger("t").compare("c", "A beats B", source="course", a=("A", a), b=("B", b))


def test_an_unregistered_source_is_refused_with_the_registered_keys():
    with pytest.raises(ValueError, match="not registered"):
        Ledger("t").compare("c", "A beats B", source="my blog", a=("A", items(3, 5)), b=("B", items(1, 5)))


def test_declarations_fingerprint_sees_a_changed_declaration_not_a_changed_result():
    rows = [dict(_run("c", *pair(500, 60, 10, 300)), notebook="nb")]
    again = [dict(_run("c", *pair(500, 20, 10, 300)), notebook="nb")]
    assert claims.declarations_fingerprint(rows) == claims.declarations_fingerprint(again)
    assert claims.declarations_fingerprint(rows) != claims.declarations_fingerprint([dict(rows[0], min_effect=0.05)])


def test_the_notebook_table_shows_the_published_verdict_beside_this_run(tmp_path, monkeypatch):
    ledger = Ledger("nb")
    ledger.compare("c", "A beats B", source="course", a=("A", items(450, 500)), b=("B", items(300, 500)))
    (tmp_path / "claims.csv").write_text("notebook,id,verdict,n_seeds\nnb,c,unresolved,5\n")
    monkeypatch.setenv("LABKIT_LEDGER", str(tmp_path / "claims.csv"))
    row = ledger.table(show=False, published=True)[0]
    assert row["this run's verdict"] == "holds"
    assert row["over seeds (published)"] == "unresolved (5 seeds); differs from this run: read this one"
    assert ledger.verdict("c") == "unresolved"


def test_draws_of_the_training_data_are_judged_over_items_and_draws():
    # B right on 400 of 500 items in every draw; A gains 40 items in some draws and loses 10 in others
    b = [items(400, 500) for _ in range(6)]
    a = [items(int(n), 500) for n in (440, 440, 390, 440, 390, 440)]
    one = Ledger("t").compare("d", "A beats B", source="course", a=("A", a[0]), b=("B", b[0]))
    many = Ledger("t").compare("d", "A beats B", source="course", a=("A", a), b=("B", b))
    assert one.verdict == "holds" and many.verdict == "unresolved"  # the draws' spread widens the interval
    assert many.effect == pytest.approx(np.mean([n - 400 for n in (440, 440, 390, 440, 390, 440)]) / 500)
    assert many.n_seeds == 1 and "6 draws" in many.note and many.measured == f"{np.mean(a):.3f} vs 0.800"
    assert "draws" in many.resolve and "seeds" not in many.resolve  # what would settle it: more draws, not seeds
    # the ledger keeps each item's mean over the draws, so seeds still pool item by item
    assert claims.unpack_items(many.items_a).shape == (500,)
    with pytest.raises(ValueError, match="same test items"):
        Ledger("t").compare("d", "A beats B", source="course", a=("A", a), b=("B", [items(400, 499)] * 6))
