"""labkit.forgetting: the two-head model, tracking, and the mitigation callbacks (EWC's Fisher and penalty above
all)."""
import warnings

import numpy as np
import pytest
import torch

from labkit import data
from labkit.forgetting import (
    EWC,
    L2SP,
    LPFT,
    TASK_A,
    TASK_B,
    ForgettingWarning,
    LwF,
    Replay,
    SourceTaskTracker,
    TwoHeadModel,
    fisher_diagonal,
    forgetting,
    shared_parameters,
    task_accuracies,
)
from labkit.freeze import freeze_to
from labkit.tradeoffs import bracket_knob, matched_choice, mitigation_notes
from labkit.train import fit
from labkit.zoo import SOURCE_CLASSES, TARGET_CLASSES, fashion_source_model, small_cnn, source_task_data


@pytest.fixture(scope="module")
def pretrained_state():
    """The kit's shipped SmallCNN pretrained on Fashion-MNIST classes 0-4 (task A)."""
    return {k: v.clone() for k, v in fashion_source_model(verbose=False).state_dict().items()}


def _model(state) -> TwoHeadModel:
    bb = small_cnn(5, pretrained=True)
    bb.load_state_dict(state)
    torch.manual_seed(1)
    return TwoHeadModel(bb, 3)


@pytest.fixture(scope="module")
def loaders(pretrained_state):
    m = _model(pretrained_state)
    a = source_task_data("test", SOURCE_CLASSES).sample(60, seed=0)
    b = source_task_data("train", TARGET_CLASSES[:3]).sample(60, seed=0)  # a 3-class task B
    return {"a": data.make_loader(a, m, batch_size=30), "b": data.make_loader(b, m, batch_size=20, shuffle=True),
            "b_test": data.make_loader(b, m, batch_size=60)}


def _fit(model, loaders, callbacks=(), lr=1e-2, num_epochs=2, **kw):
    return fit(model, loaders["b"], num_epochs=num_epochs, lr=lr, callbacks=list(callbacks), device="cpu", **kw)


def _drift(model, state) -> float:
    body = shared_parameters(model)
    return float(sum(((p.detach() - state["net." + n.split("net.", 1)[1]]) ** 2).sum() for n, p in body.items()))


def test_two_head_model_keeps_head_a_frozen_and_scores_rows_by_task(pretrained_state):
    m = _model(pretrained_state)
    assert not any(p.requires_grad for p in m.head_a.parameters())
    assert list(m.depth_modules()) == ["block1", "block2", "block3", "classifier"]
    assert m.depth_modules()["classifier"] is m.head_b
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        mixed = m(x, task=torch.tensor([TASK_A, TASK_B, TASK_A, TASK_B]))
        a, b = m.task_view("a")(x), m.task_view("b")(x)
    assert mixed.shape == (4, 5)
    assert torch.allclose(mixed[0], a[0]) and torch.allclose(mixed[1, :3], b[1])
    assert (mixed[1, 3:] < -1e3).all()  # head B has 3 classes: the missing two can never win
    freeze_to(m, -1)
    assert not any(p.requires_grad for p in m.head_a.parameters())
    assert all(p.requires_grad for p in m.head_b.parameters())
    with pytest.raises(TypeError, match="labkit Backbone"):
        TwoHeadModel(torch.nn.Linear(3, 3), 2)


def test_tracker_logs_both_tasks_every_epoch_and_fine_tuning_changes_task_a(pretrained_state, loaders):
    m = _model(pretrained_state)
    tracker = SourceTaskTracker(loaders["a"], loaders["b_test"])
    history = _fit(m, loaders, [tracker], lr=3e-2, num_epochs=2)
    assert tracker.before["a_acc"] > 0.5  # head A works before fine-tuning
    assert len(history["a_acc"]) == 2 and len(history["b_acc"]) == 2
    assert history["forgetting"][-1] == pytest.approx(tracker.before["a_acc"] - history["a_acc"][-1])
    assert forgetting(0.9, 0.7) == pytest.approx(0.2)
    assert task_accuracies(m, loaders["a"])["a_acc"] == pytest.approx(history["a_acc"][-1])


def test_fisher_is_nonzero_even_when_the_body_is_frozen_and_matches_a_hand_computation(pretrained_state, loaders):
    m = _model(pretrained_state)
    freeze_to(m, -1)  # the classic trap: frozen parameters have no gradient
    fisher = fisher_diagonal(m, loaders["a"], max_samples=6)
    assert set(fisher) == set(shared_parameters(m))
    assert all((f >= 0).all() for f in fisher.values())
    assert sum(float(f.sum()) for f in fisher.values()) > 0
    assert not any(p.requires_grad for p in shared_parameters(m).values())  # re-frozen afterwards
    # by hand, for the last conv weight: mean over examples of the squared gradient of log p(y|x)
    name = [n for n in fisher if n.endswith("block3.0.weight")][0]
    param = dict(m.named_parameters())[name]
    param.requires_grad_(True)
    x, y = next(iter(loaders["a"]))
    expected = torch.zeros_like(param)
    view = m.task_view("a").eval()
    for i in range(6):
        log_p = torch.log_softmax(view(x[i:i + 1]), 1)[0, y[i]]
        (g,) = torch.autograd.grad(log_p, [param])
        expected += g ** 2 / 6
    assert torch.allclose(fisher[name], expected, rtol=1e-4, atol=1e-10)


def test_ewc_penalty_is_the_formula_nonzero_after_a_step_and_changes_the_result_at_large_lambda(
        pretrained_state, loaders):
    m = _model(pretrained_state)
    fisher = fisher_diagonal(m, loaders["a"], max_samples=30)
    ewc = EWC(fisher, lam=10.0)

    class _T:  # the bits of a Trainer the penalty reads
        model = m
    ewc.on_fit_start(_T)
    assert float(ewc.penalty(_T).detach()) == 0.0  # at theta* the penalty is zero
    with torch.no_grad():
        for p in shared_parameters(m).values():
            p.add_(0.01)
    expected = 0.5 * 10.0 * sum(float((f * 0.01 ** 2).sum()) for f in fisher.values())
    assert float(ewc.penalty(_T).detach()) == pytest.approx(expected, rel=1e-4)
    assert expected > 0

    drift = {}
    for lam in (0.0, 1e7):
        model = _model(pretrained_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ForgettingWarning)
            history = _fit(model, loaders, [EWC(fisher, lam=lam)], lr=3e-2)
        drift[lam] = _drift(model, pretrained_state)
        assert "ewc_penalty" in history.epochs[-1]
    assert drift[1e7] < 0.2 * drift[0.0]  # a large lambda holds the body near theta*


def test_ewc_warns_loudly_on_a_zero_fisher_and_on_a_negligible_lambda(pretrained_state, loaders):
    m = _model(pretrained_state)
    fisher = fisher_diagonal(m, loaders["a"], max_samples=10)
    zeros = {n: torch.zeros_like(f) for n, f in fisher.items()}
    with pytest.warns(ForgettingWarning, match="all zeros"):
        EWC(zeros, lam=100.0)
    with pytest.warns(ForgettingWarning, match="lambda"):
        _fit(m, loaders, [EWC(fisher, lam=1e-9)], num_epochs=1)
    with pytest.raises(ValueError, match="lambda"):
        EWC(fisher, lam=-1)


def test_l2sp_pulls_toward_the_pretrained_weights_and_plain_l2_toward_zero(pretrained_state, loaders):
    drift = {}
    for label, cbs in [("none", []), ("l2sp", [L2SP(alpha=100.0)]), ("zero", [L2SP(alpha=100.0, toward="zero")])]:
        m = _model(pretrained_state)
        _fit(m, loaders, cbs, lr=3e-2)
        drift[label] = _drift(m, pretrained_state)
    assert drift["l2sp"] < drift["none"]
    assert drift["zero"] > drift["l2sp"]  # decay toward zero moves the weights away from the pretrained ones
    with pytest.raises(ValueError, match="toward"):
        L2SP(1.0, toward="origin")


def test_replay_mixes_stored_task_a_rows_into_each_batch(pretrained_state, loaders):
    m = _model(pretrained_state)
    replay = Replay(loaders["a"], k=12, per_batch=4)
    assert replay.k == 12
    x, y = next(iter(loaders["b"]))
    batch = replay.on_batch(None, (x, y))
    assert batch["x"].shape[0] == len(y) + 4
    assert (batch["task"][: len(y)] == TASK_B).all() and (batch["task"][len(y):] == TASK_A).all()
    history = _fit(m, loaders, [replay], num_epochs=1)
    assert history.epochs[-1]["train_loss"] > 0
    with pytest.raises(ValueError, match="k >= 1"):
        Replay(loaders["a"], k=0)


def test_lwf_penalty_is_the_distillation_formula_and_holds_the_body_at_large_alpha(pretrained_state, loaders):
    m = _model(pretrained_state)
    lwf = LwF(alpha=2.0, temperature=3.0)

    class _T:
        model = m
        batch = next(iter(loaders["b"]))
    lwf.on_fit_start(_T)
    with torch.no_grad():
        for p in shared_parameters(m).values():
            p.add_(0.02 * torch.randn_like(p))
        m.eval()
        m(_T.batch[0])  # the fit loop's forward leaves the features for LwF
        teacher = torch.softmax(_model(pretrained_state).task_view("a").eval()(_T.batch[0]) / 3.0, 1)
        student = torch.log_softmax(m.task_view("a")(_T.batch[0]) / 3.0, 1)
        expected = 2.0 * 9.0 * torch.nn.functional.kl_div(student, teacher, reduction="batchmean")
        assert float(lwf.penalty(_T)) == pytest.approx(float(expected), rel=1e-4)
    assert float(expected) > 0

    drift = {}
    for alpha in (0.0, 1000.0):
        model = _model(pretrained_state)
        history = _fit(model, loaders, [LwF(alpha=alpha)], lr=3e-3)
        assert np.isfinite(history.last("train_loss"))
        drift[alpha] = _drift(model, pretrained_state)
    assert drift[1000.0] < drift[0.0]


def test_lpft_trains_only_the_head_first_then_everything(pretrained_state, loaders):
    m = _model(pretrained_state)
    history = _fit(m, loaders, [LPFT(probe_epochs=1, probe_lr=1e-2)], lr=1e-3, num_epochs=2)
    trainable = history["trainable_params"]
    assert trainable[0] == sum(p.numel() for p in m.head_b.parameters())
    assert trainable[1] > trainable[0]
    assert not any(p.requires_grad for p in m.head_a.parameters())


def test_mitigation_notes_are_built_from_the_numbers():
    rows = [{"method": "plain", "a_acc": 0.5, "b_acc": 0.9}, {"method": "ewc", "a_acc": 0.505, "b_acc": 0.9},
            {"method": "replay", "a_acc": 0.8, "b_acc": 0.85}]
    notes = mitigation_notes(rows, baseline="plain")
    assert notes[0].startswith("ewc: did not help")
    assert "+0.300" in notes[1] and "0.050" in notes[1]
    with pytest.raises(KeyError, match="No row named"):
        mitigation_notes(rows, baseline="missing")


def test_run_status_flags_divergence_and_a_task_b_never_learnt():
    from labkit.forgetting import DIVERGED, LEARNT, NOT_LEARNT, run_status

    assert run_status([2.0, 1.7], num_classes=5) == DIVERGED  # above ln 5 = 1.609: worse than a uniform guess
    assert run_status([1.2, float("nan")], num_classes=5) == DIVERGED
    assert run_status([1.5, 0.9], num_classes=5, val_acc=0.45) == NOT_LEARNT  # less than 0.3 above chance (0.2)
    assert run_status([1.5, 0.9], num_classes=5, val_acc=0.6) == LEARNT
    assert run_status([1.5, 0.9], num_classes=5) == LEARNT  # no validation accuracy: only the loss is judged
    with pytest.raises(ValueError, match="num_classes"):
        run_status([1.0], num_classes=1)


def test_run_status_reads_a_fit_history(pretrained_state, loaders):
    from labkit.forgetting import DIVERGED, run_status

    m = _model(pretrained_state)
    history = fit(m, loaders["b"], loaders["b_test"], num_epochs=1, lr=1e-3, device="cpu")
    assert run_status(history, 3) in ("learnt", "did not learn task B")
    assert run_status(history, 3, val_acc=history.last("val_acc")) == run_status(history, 3)
    history.epochs[-1]["train_loss"] = 5.0
    assert run_status(history, 3) == DIVERGED


def test_matched_choice_reads_task_b_validation_only():
    rows = [{"v": 1, "val_b": 0.80, "val_a": 0.1, "a_acc": 0.99},   # weakest ... strongest
            {"v": 2, "val_b": 0.78, "val_a": 0.9, "a_acc": 0.10},
            {"v": 3, "val_b": 0.70, "val_a": 0.9, "a_acc": 0.50}]
    assert matched_choice(rows, reference_val_b=0.80)["v"] == 2  # the strongest within 0.03 of the reference
    assert matched_choice(rows, reference_val_b=0.72, tolerance=0.03)["v"] == 3
    assert matched_choice(rows, reference_val_b=0.90) is None  # nothing stays close enough
    assert matched_choice(rows, reference_val_b=0.0, rule="best-b")["v"] == 1
    with pytest.raises(ValueError, match="rule"):
        matched_choice(rows, 0.8, rule="best-a")
    with pytest.raises(ValueError):
        matched_choice([], 0.8)


def test_bracket_knob_widens_until_the_choice_is_inside():
    # task-B validation falls as the strength v grows: 1 -> 0.80, 10 -> 0.79, 100 -> 0.785, 1000 -> 0.70
    val_b = {0.1: 0.80, 1: 0.80, 10: 0.79, 100: 0.785, 1000: 0.70, 10000: 0.5}
    ran = []

    def run(v):
        ran.append(v)
        return {"v": v, "val_b": val_b[v]}

    rows, chosen, note = bracket_knob(run, [1, 10, 100], reference_val_b=0.80, weaker=lambda v: v / 10,
                                      stronger=lambda v: v * 10)
    assert chosen["v"] == 100 and note == "bracketed" and ran == [1, 10, 100, 1000]  # widened once, stronger
    ran.clear()
    rows, chosen, note = bracket_knob(run, [1000, 10000], reference_val_b=0.80, weaker=lambda v: v / 10,
                                      stronger=lambda v: v * 10)  # nothing close enough: widened weaker
    assert ran == [1000, 10000, 100] and chosen["v"] == 100 and note == "bracketed"
    rows, chosen, note = bracket_knob(run, [1, 10], reference_val_b=0.80, stronger=lambda v: None)
    assert chosen["v"] == 10 and note == "the strongest setting tried"  # nothing lies beyond the last depth
    rows, chosen, note = bracket_knob(run, [10000], reference_val_b=0.99, weaker=None)
    assert chosen["v"] == 10000 and note.startswith("no setting kept task-B validation")
    rows, chosen, note = bracket_knob(run, [1, 10], reference_val_b=0.80, stronger=lambda v: v * 10, max_extra=1)
    assert [r["v"] for r in rows] == [1, 10, 100] and note.startswith("the strongest setting tried (widening")


def test_tradeoff_plot_draws_the_frontier_with_its_learning_rates():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labkit.tradeoffs import tradeoff_plot

    frontier = [{"lr": 3e-4, "a_acc": 0.6, "b_acc": 0.8}, {"lr": 3e-3, "a_acc": 0.3, "b_acc": 0.85}]
    fig, ax = plt.subplots()
    tradeoff_plot([{"method": "ewc", "a_acc": 0.7, "b_acc": 0.8}], ax=ax, frontier=frontier,
                  tried=[{"a_acc": 0.5, "b_acc": 0.7}])
    assert sorted(t.get_text() for t in ax.texts) == ["lr 0.0003", "lr 0.003"]
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [0.8, 0.85] and list(line.get_ydata()) == [0.6, 0.3]  # sorted by task B
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "plain fine-tuning, LR sweep" in labels and "ewc" in labels
    plt.close(fig)


def test_probe_task_a_refits_on_the_body_features_and_the_tracker_logs_it(pretrained_state, loaders):
    from labkit.claims import Accuracy
    from labkit.forgetting import probe_task_a

    a_train = source_task_data("train", SOURCE_CLASSES).sample(60, seed=1)
    a_test = source_task_data("test", SOURCE_CLASSES).sample(60, seed=0)
    m = _model(pretrained_state)
    before = probe_task_a(m, a_train, a_test)
    assert isinstance(before, Accuracy) and before.n == len(a_test) and before > 0.5
    tracker = SourceTaskTracker(loaders["a"], loaders["b_test"], probe=(a_train, a_test))
    history = _fit(m, loaders, [tracker], lr=1e-3, num_epochs=1)
    assert len(history["a_probe"]) == 1 and isinstance(history["a_probe"][0], Accuracy)
    assert float(history["a_probe"][0]) == pytest.approx(float(probe_task_a(m, a_train, a_test)))


def test_tradeoff_plot_names_points_in_a_legend_outside_the_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labkit.tradeoffs import tradeoff_plot

    rows = [{"method": f"m{i}", "a_acc": 0.5, "b_acc": 0.5 + i / 100} for i in range(5)]  # crowded points
    fig, ax = plt.subplots()
    tradeoff_plot(rows, ax=ax, reference={"a_acc": 0.9})
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()][:5] == [f"m{i}" for i in range(5)]
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1  # outside: it can hide no point
    assert not ax.texts  # no annotations to overprint each other
    with pytest.raises(ValueError, match="labels"):
        tradeoff_plot(rows, ax=ax, labels="arrows")
    plt.close(fig)


def test_compare_if_learnt_judges_only_runs_that_learnt_task_b():
    from labkit.claims import Ledger
    from labkit.forgetting import DIVERGED, LEARNT, compare_if_learnt

    ledger = Ledger("t")
    good = {"method": "a", "status": LEARNT, "val_b": 0.8}
    bad = {"method": "lr=0.03", "status": DIVERGED, "val_b": 0.2}
    judged = compare_if_learnt(ledger, [good, good], "x", "A keeps more", source="course", a=("a", 0.6), b=("b", 0.4))
    skipped = compare_if_learnt(ledger, [good, bad], "y", "A keeps more", source="course", a=("a", 0.6), b=("b", 0.4))
    assert judged.verdict != "not measured"
    assert skipped.verdict == "not measured"
    assert skipped.measured == "lr=0.03 diverged (task-B validation 0.200): not forgetting"
