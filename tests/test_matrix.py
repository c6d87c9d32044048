"""The 2x2 matrix: fixed validation and test rows, the guides' picks among the recipes, choices on validation."""
from types import SimpleNamespace

import numpy as np
import pytest

from labkit.matrix import MATRIX_GUIDES, MATRIX_PICKS, matrix_strategies, matrix_targets, validation_choice


def run(val_acc, test_acc=0.5):
    return SimpleNamespace(val_acc=val_acc, test_acc=test_acc)


def test_every_pick_is_a_recipe_every_cell_runs_and_both_guides_are_quoted():
    names = [s.name for s in matrix_strategies(2)]
    assert len(set(names)) == len(names) == 5
    for cell, picks in MATRIX_PICKS.items():
        assert set(picks) <= set(names) and set(names) - set(picks), cell  # something to compare the picks with
        assert all(MATRIX_GUIDES[cell]), cell
    assert set(MATRIX_PICKS) == {(s, d) for s in ("small", "large") for d in ("similar", "different")}


def test_recipes_train_batchnorm_and_discriminative_lrs_reach_ten_times_slower_at_the_bottom():
    recipes = {s.name: s for s in matrix_strategies(3)}
    assert recipes["feature extraction"].num_epochs == 0 and recipes["feature extraction"].head_epochs == 15
    assert recipes["fine-tune top half"].train_from == "block2"
    disc = recipes["full fine-tune, discriminative LRs"]
    assert disc.decay ** 3 == pytest.approx(0.1)  # three depths under the classifier
    assert all(s.train_batchnorm for s in recipes.values() if s.num_epochs)
    assert not recipes["scratch"].pretrained
    with pytest.raises(ValueError, match="epochs"):
        matrix_strategies(0)


def test_validation_chooses_the_pick_and_its_rival_never_the_test_set():
    runs = {"feature extraction": run(0.70, test_acc=0.99), "fine-tune top half": run(0.80, test_acc=0.10),
            "full fine-tune, one LR": run(0.75), "scratch": run(0.78)}
    assert validation_choice(runs, ("full fine-tune, one LR", "scratch")) == ("scratch", "fine-tune top half")
    assert validation_choice(runs, ("feature extraction",)) == ("feature extraction", "fine-tune top half")
    tied = {"a": run(0.8), "b": run(0.8), "c": run(0.7)}
    assert validation_choice(tied, ("c",)) == ("c", "a")  # a tie goes to the earlier recipe
    with pytest.raises(KeyError, match="pick"):
        validation_choice(runs, ("two-stage",))
    with pytest.raises(ValueError, match="validation"):
        validation_choice({**runs, "x": run(None)}, ("scratch",))
    with pytest.raises(ValueError, match="not a pick"):
        validation_choice({"a": run(0.5)}, ("a",))


def test_targets_share_their_rows_and_differ_only_by_the_permutation():
    targets = matrix_targets(val_per_class=5, test_size=100)
    sim, diff = targets["similar"], targets["different"]
    for a, b in ((sim.pool, diff.pool), (sim.val, diff.val), (sim.test, diff.test)):
        assert np.array_equal(a.labels, b.labels)
        flat_a, flat_b = a.images.reshape(len(a), -1), b.images.reshape(len(b), -1)
        assert not np.array_equal(flat_a, flat_b)
        assert np.array_equal(np.sort(flat_a, axis=1), np.sort(flat_b, axis=1))  # the same pixels, moved
    assert np.bincount(sim.val.labels).tolist() == [5] * 5 and len(sim.test) == 100
    assert len(sim.pool) + len(sim.val) == 30000  # validation rows are out of the pool training draws come from
    again = matrix_targets(val_per_class=5, test_size=100)["similar"]  # fixed: the same rows every time
    assert np.array_equal(again.val.images, sim.val.images) and np.array_equal(again.test.images, sim.test.images)
    with pytest.raises(ValueError, match="val_per_class"):
        matrix_targets(val_per_class=0, test_size=100)


def test_run_matrix_runs_every_recipe_in_every_cell_and_measures_both_targets():
    from labkit import zoo
    from labkit.matrix import run_matrix
    from labkit.strategies import backbone_factory

    make = backbone_factory(lambda pretrained: zoo.fashion_source_model(verbose=False) if pretrained
                            else zoo.small_cnn(len(zoo.SOURCE_CLASSES)))
    targets = matrix_targets(val_per_class=2, test_size=20)
    result = run_matrix(make, targets, {"small": 2, "large": 3}, matrix_strategies(1), min_steps=2, device="cpu")
    assert set(result.runs) == set(MATRIX_PICKS)
    for cell, runs in result.runs.items():
        assert list(runs) == [s.name for s in matrix_strategies(1)]
        assert all(r.test_acc.n == 20 and r.val_acc is not None for r in runs.values())
        pick, other = result.choice(cell)
        assert pick in MATRIX_PICKS[cell] and other not in MATRIX_PICKS[cell]
    for t in targets:
        probes = result.probes[t]
        assert probes["source"].fingerprint == probes["random init"].fingerprint  # paired: the same test items
        assert result.similarity(t) == pytest.approx(float(probes["source"]) - float(probes["random init"]))
