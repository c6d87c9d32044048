"""The one fit loop: freezing, parameter groups, BatchNorm policy, eval mode, callbacks, clear errors."""
import copy
import math

import pytest
import torch
from torch import nn

import labkit
from labkit import data
from labkit.freeze import count_parameters, discriminative_param_groups, freeze_to, model_depths
from labkit.train import (
    EarlyStopping,
    GradualUnfreezing,
    KeepBest,
    MaxSteps,
    MeasureMemory,
    ValidateEvery,
    eval_mode,
    evaluate,
    fit,
)


@pytest.fixture(scope="module")
def tiny_data():
    ds = data.digits("train").few_shot(6, seed=0)
    return ds


def _loader(bb, ds, **kw):
    return data.make_loader(ds, bb, batch_size=20, size=32, **kw)


def test_freeze_to_leaves_exactly_the_intended_parameters_trainable():
    bb = labkit.load_backbone("efficientnet_lite0", pretrained=False, num_classes=10)
    freeze_to(bb, "stage6")
    depths = model_depths(bb)
    names = list(depths)
    for i, (name, module) in enumerate(depths.items()):
        expected = i >= names.index("stage6")
        assert all(p.requires_grad == expected for p in module.parameters()), name
    trainable = sum(p.numel() for n in names[names.index("stage6"):] for p in depths[n].parameters())
    assert count_parameters(bb, trainable_only=True) == trainable
    freeze_to(bb, -1)
    assert count_parameters(bb, trainable_only=True) == 1280 * 10 + 10


def test_freeze_to_matches_a_hand_written_version():
    """The five-line version a notebook derives inline behaves like labkit's."""
    a = labkit.load_backbone("efficientnet_lite0", pretrained=False, num_classes=3)
    b = labkit.load_backbone("efficientnet_lite0", pretrained=False, num_classes=3)
    freeze_to(a, "stage7")
    for p in b.parameters():
        p.requires_grad = False
    for name in ("stage7", "top", "classifier"):
        for p in b.depth_modules()[name].parameters():
            p.requires_grad = True
    assert [p.requires_grad for p in a.parameters()] == [p.requires_grad for p in b.parameters()]


def test_discriminative_groups_carry_the_intended_lrs():
    bb = labkit.load_backbone("efficientnet_lite0", pretrained=False, num_classes=10)
    freeze_to(bb, "stage7")
    groups = discriminative_param_groups(bb, lr=1e-3, decay=0.1)
    assert [g["name"] for g in groups] == ["stage7", "top", "classifier"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-5, 1e-4, 1e-3])
    groups = discriminative_param_groups(bb, lr=1e-3, lrs={"top": 5e-4})
    assert groups[1]["lr"] == 5e-4
    freeze_to(bb, 0)
    for p in bb.parameters():
        p.requires_grad = False
    with pytest.raises(ValueError, match="No trainable parameters"):
        discriminative_param_groups(bb, lr=1e-3)


def test_fit_uses_the_param_groups(tiny_data):
    bb = labkit.load_backbone("efficientnet_lite0", pretrained=False, num_classes=10)
    freeze_to(bb, "top")
    seen = {}

    class Spy(labkit.Callback):
        def on_fit_start(self, trainer):
            seen.update({g["name"]: g["lr"] for g in trainer.optimizer.param_groups})

    fit(bb, _loader(bb, tiny_data), num_epochs=1, callbacks=[Spy()], device="cpu",
        param_groups=lambda m: discriminative_param_groups(m, lr=1e-2, decay=0.5))
    assert seen == {"top": 5e-3, "classifier": 1e-2}


def test_frozen_batchnorm_statistics_do_not_move(tiny_data):
    bb = labkit.load_backbone("efficientnet_lite0", pretrained=True, num_classes=10)
    freeze_to(bb, -1)
    before = {k: v.clone() for k, v in bb.state_dict().items() if "running" in k}
    hist = fit(bb, _loader(bb, tiny_data, shuffle=True), num_epochs=1, lr=1e-2, device="cpu")
    after = bb.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert hist.epochs[0]["trainable_params"] == 12810
    # the explicit opposite policy does update them (the pitfall notebook measures that drift)
    fit(bb, _loader(bb, tiny_data), num_epochs=1, lr=1e-2, device="cpu", bn_policy="train")
    assert any(not torch.equal(before[k], bb.state_dict()[k]) for k in before)


def test_evaluation_restores_train_mode(tiny_data):
    bb = labkit.load_backbone("efficientnet_lite0", pretrained=False, num_classes=10)
    bb.train()
    bb.net.bn1.eval()  # a deliberately mixed state must come back exactly
    modes = [m.training for m in bb.modules()]
    seen_modes = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.bb = bb

        def forward(self, x):
            seen_modes.append(self.bb.training)
            return self.bb(x)

    evaluate(Probe(), _loader(bb, tiny_data), device="cpu")
    assert seen_modes and not any(seen_modes)  # evaluated in eval mode
    assert [m.training for m in bb.modules()] == modes
    with eval_mode(bb):
        assert not bb.training
    assert bb.training


def test_history_early_stopping_and_callbacks():
    torch.manual_seed(0)
    X = torch.randn(64, 5)
    y = (X[:, 0] > 0).long()
    loader = [(X[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    model = nn.Linear(5, 2)
    calls = []

    class Track(labkit.Callback):
        def on_epoch_end(self, trainer, logs):
            logs["custom"] = trainer.epoch
            calls.append(trainer.epoch)

    hist = fit(model, loader, loader, num_epochs=4, lr=0.1, callbacks=[Track()], device="cpu")
    assert len(hist.epochs) == 4 and hist["custom"] == [0, 1, 2, 3]
    assert hist.last("val_acc") > 0.8 and hist.epochs[0]["train_loss"] > hist.epochs[-1]["train_loss"]
    # a validation set the model cannot improve on stops early and restores the best weights
    noisy = [(torch.randn(16, 5), torch.randint(0, 2, (16,))) for _ in range(2)]
    stop = EarlyStopping(patience=1)
    hist = fit(nn.Linear(5, 2), loader, noisy, num_epochs=30, lr=0.5, callbacks=[stop], device="cpu")
    assert hist.stopped_early and len(hist.epochs) < 30 and hist.best_epoch is not None


def test_gradual_unfreezing_adds_depths_over_epochs(tiny_data):
    bb = labkit.load_backbone("efficientnet_lite0", pretrained=False, num_classes=10)
    hist = fit(bb, _loader(bb, tiny_data), num_epochs=3, lr=1e-3, callbacks=[GradualUnfreezing(every=1)],
               device="cpu")
    counts = hist["trainable_params"]
    assert counts[0] == 12810 and counts[0] < counts[1] < counts[2]


def test_batchnorm_can_stay_frozen_in_trainable_depths(tiny_data):
    """train_batchnorm=False: freeze_to and GradualUnfreezing never hand BatchNorm weights to the optimizer."""
    bb = labkit.load_backbone("efficientnet_lite0", pretrained=False, num_classes=10)
    bn_ids = {id(p) for m in bb.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters(recurse=False)}
    freeze_to(bb, "stage6", train_batchnorm=False)
    trainable = [p for p in bb.parameters() if p.requires_grad]
    assert trainable and not any(id(p) in bn_ids for p in trainable)
    assert all(p.requires_grad for p in model_depths(bb)["stage6"].parameters() if id(p) not in bn_ids)

    seen = []

    class Spy(labkit.Callback):
        def on_epoch_start(self, trainer):  # runs after GradualUnfreezing added this epoch's depth
            seen.append([id(p) for g in trainer.optimizer.param_groups for p in g["params"]])

    bn_means = {n: m.running_mean.clone() for n, m in bb.named_modules() if isinstance(m, nn.BatchNorm2d)}
    fit(bb, _loader(bb, tiny_data), num_epochs=3, lr=1e-3, device="cpu",
        callbacks=[GradualUnfreezing(every=1, train_batchnorm=False), Spy()])
    assert len(seen) == 3 and len(seen[0]) < len(seen[1]) < len(seen[2])
    assert not any(i in bn_ids for ids in seen for i in ids)
    for n, m in bb.named_modules():  # frozen BatchNorm layers stay in eval mode: statistics unchanged
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.running_mean, bn_means[n]), n


def test_penalty_callback_changes_the_loss():
    X, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    loader = [(X, y)]

    class Pull(labkit.Callback):
        def penalty(self, trainer):
            return 100.0 * sum((p ** 2).sum() for p in trainer.model.parameters())

    torch.manual_seed(0)
    a = nn.Linear(4, 2)
    torch.manual_seed(0)
    b = nn.Linear(4, 2)
    fit(a, loader, num_epochs=5, lr=0.05, device="cpu")
    fit(b, loader, num_epochs=5, lr=0.05, callbacks=[Pull()], device="cpu")
    assert b.weight.norm() < a.weight.norm()


def test_clear_errors_for_bad_labels_and_lr():
    model = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="only 2 outputs"):
        fit(model, [(torch.randn(4, 4), torch.tensor([0, 1, 2, 3]))], num_epochs=1, device="cpu")
    with pytest.raises(TypeError, match="integers"):
        fit(model, [(torch.randn(4, 4), torch.tensor([0.0, 1.0, 0.0, 1.0]))], num_epochs=1, device="cpu")
    with pytest.raises(FloatingPointError, match="too high"):
        fit(nn.Linear(4, 2), [(torch.randn(4, 4) * 1e30, torch.tensor([0, 1, 0, 1]))] * 5, num_epochs=3,
            lr=1e30, device="cpu")


def test_cpu_memory_measure_counts_frozen_backbones_as_cheaper(tiny_data):
    from labkit.train import measure_training_memory

    bb = labkit.load_backbone("efficientnet_lite0", pretrained=False, num_classes=10)
    batch = next(iter(_loader(bb, tiny_data)))
    full = measure_training_memory(bb, batch)
    freeze_to(bb, -1)
    frozen = measure_training_memory(bb, batch)
    assert frozen["activations"] < full["activations"] / 5 and frozen["gradients"] < full["gradients"] / 100


def test_cpu_memory_measure_counts_the_forward_workspace_of_frozen_layers():
    """Frozen layers save nothing for backward, but their outputs still exist while the forward pass runs."""
    from labkit.train import measure_training_memory

    batch, wide = 64, 8000
    frozen_part = nn.Sequential(nn.Linear(100, wide), nn.ReLU(), nn.Linear(wide, 100))
    model = nn.Sequential(frozen_part, nn.Linear(100, 10))
    for p in frozen_part.parameters():
        p.requires_grad_(False)
    x, y = torch.randn(batch, 100), torch.randint(0, 10, (batch,))
    out = measure_training_memory(model, (x, y))
    hidden = batch * wide * 4  # one float32 output of the wide layer
    assert out["activations"] < hidden / 10  # autograd keeps only the head's small input
    assert out["workspace"] >= 2 * hidden * 0.99  # the Linear output and the ReLU output were alive together
    parts = ("weights", "gradients", "optimizer_state", "activations", "workspace")
    assert out["total"] == sum(out[p] for p in parts)
    assert out["gradients"] == (100 * 10 + 10) * 4 and out["optimizer_state"] == 2 * out["gradients"]
    assert all(p.grad is None for p in model.parameters())  # the measuring step leaves no gradients behind


def _separable(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g)
    y = (X[:, 0] > 0).long()
    return [(X[i:i + 16], y[i:i + 16]) for i in range(0, n, 16)]


def test_an_interrupted_fit_still_restores_the_best_weights():
    """The notebook's stop button raises KeyboardInterrupt mid-fit: on_fit_end runs and the interrupt propagates."""
    loader = _separable()
    snapshots, seen = [], {}

    class Score(labkit.Callback):  # a metric that is best at the first epoch
        def on_epoch_end(self, trainer, logs):
            logs["score"] = [0.9, 0.5, 0.7, 0.6][trainer.epoch]

    class Snapshot(labkit.Callback):
        def on_fit_start(self, trainer):
            seen["trainer"] = trainer

        def on_epoch_end(self, trainer, logs):
            snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

        def on_batch_end(self, trainer):
            if trainer.epoch == 2 and trainer.step % len(loader) == 2:
                seen["at_interrupt"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
                raise KeyboardInterrupt

    torch.manual_seed(0)
    model = nn.Linear(5, 2)
    stop = EarlyStopping(monitor="score", mode="max", patience=10)
    with pytest.raises(KeyboardInterrupt):
        fit(model, loader, num_epochs=4, lr=0.1, callbacks=[Score(), stop, Snapshot()], device="cpu")
    history = seen["trainer"].history
    assert len(history.epochs) == 2 and history.best_epoch == 0 and len(snapshots) == 2
    assert not torch.equal(seen["at_interrupt"]["weight"], snapshots[0]["weight"])  # training had moved on
    assert all(torch.equal(v, snapshots[0][k]) for k, v in model.state_dict().items())
    assert history.seconds > 0  # the history is closed too


@pytest.mark.parametrize("optimizer, states", [("adamw", 2), ("sgd", 1),
                                               (lambda groups: torch.optim.SGD(groups), 0)])
def test_cpu_memory_counts_the_optimizer_state_actually_used(optimizer, states):
    """AdamW keeps two tensors per trainable parameter, SGD with momentum one, plain SGD none."""
    from labkit.train import MemoryProbe

    recorded = {}
    original = MemoryProbe.record

    def spy(self, model, opt):
        probe = self._probe
        original(self, model, opt)
        if probe is not None:
            recorded.update(probe.parts(model), state=self.cpu_mb, optimizer=opt)

    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)  # frozen: no gradient, no optimizer state
    MemoryProbe.record = spy
    try:
        hist = fit(model, _separable(), num_epochs=1, lr=0.01, optimizer=optimizer, device="cpu",
                   callbacks=[MeasureMemory()])
    finally:
        MemoryProbe.record = original
    grads = (8 * 2 + 2) * 4
    assert recorded["gradients"] == grads
    expected = (recorded["total"] - recorded["optimizer_state"] + states * grads) / 2**20
    assert hist.peak_mem_mb == pytest.approx(expected, rel=0, abs=1e-12)


def test_history_logs_the_penalty_apart_from_the_task_loss():
    loader = _separable()

    class Pull(labkit.Callback):
        def penalty(self, trainer):
            return 0.5 * sum((p ** 2).sum() for p in trainer.model.parameters())

    torch.manual_seed(0)
    plain = fit(nn.Linear(5, 2), loader, num_epochs=1, lr=0.0, device="cpu")
    torch.manual_seed(0)
    pulled = fit(nn.Linear(5, 2), loader, num_epochs=1, lr=0.0, callbacks=[Pull()], device="cpu")
    assert "penalty" not in plain.epochs[0] and pulled.epochs[0]["penalty"] > 0
    # lr 0: the same weights throughout, so the task loss is the same with and without the penalty
    assert pulled.epochs[0]["train_loss"] == pytest.approx(plain.epochs[0]["train_loss"])


def test_one_divergence_rule_shared_by_strategies_forgetting_and_text():
    import math

    from labkit import forgetting, strategies, text, train
    assert not train.diverged(0.5, 4) and train.diverged(math.log(4) + 0.01, 4)
    assert train.diverged(float("nan"), 4) and train.diverged(float("inf"), 4)  # a blown-up loss is divergence
    with pytest.raises(ValueError, match="at least 2"):
        train.diverged(0.1, 1)
    assert forgetting.diverged is train.diverged and strategies.diverged is train.diverged
    assert not hasattr(text, "diverged")  # notebook 04 calls labkit.train.diverged, the one name


def test_val_every_validates_every_kth_epoch_and_the_last():
    loader = _separable()
    hist = fit(nn.Linear(5, 2), loader, loader, num_epochs=7, lr=0.1,
               callbacks=[EarlyStopping(patience=10), ValidateEvery(3)], device="cpu")
    validated = [e for e, v in enumerate(hist["val_loss"], 1) if v is not None]
    assert validated == [3, 6, 7] and hist.best_epoch in (2, 5, 6)  # the kept epoch is one that was validated
    assert [e.get("validated", True) for e in hist.epochs] == [False, False, True, False, False, True, True]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="val_every"):
            ValidateEvery(bad)


def test_adamw_is_fused_where_torch_has_it_and_takes_the_same_steps():
    from labkit.train import adamw

    torch.manual_seed(0)
    a = nn.Linear(8, 3)
    b, start = copy.deepcopy(a), a.weight.detach().clone()
    fused, plain = adamw(a.parameters(), lr=1e-2, weight_decay=0.01), torch.optim.AdamW(b.parameters(), lr=1e-2,
                                                                                           weight_decay=0.01)
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    for _ in range(5):
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and not torch.allclose(a.weight, start, atol=1e-3)
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if (major, minor) >= (2, 4):
        assert fused.defaults["fused"] is True
    with pytest.raises(ValueError):
        adamw([])  # no parameters: torch's own error, not a silent fallback to nothing


def test_keep_best_restores_the_best_epoch_and_never_stops():
    """KeepBest is EarlyStopping without the stopping: the same kept epoch and weights, every epoch run."""
    loader = _separable()
    noisy = [(torch.randn(16, 5, generator=torch.Generator().manual_seed(i)),
              torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(10 + i))) for i in range(2)]
    runs = {}
    for name, keeper in (("keep", KeepBest()), ("patient", EarlyStopping(patience=100))):
        torch.manual_seed(0)
        model = nn.Linear(5, 2)
        hist = fit(model, loader, noisy, num_epochs=6, lr=0.5, callbacks=[keeper], device="cpu")
        runs[name] = (hist, model.weight.detach().clone())
    (keep, w_keep), (patient, w_patient) = runs["keep"], runs["patient"]
    assert len(keep.epochs) == 6 and not keep.stopped_early
    assert keep.best_epoch == patient.best_epoch and torch.equal(w_keep, w_patient)
    assert keep.best("val_loss") == min(keep["val_loss"])
    with pytest.raises(ValueError, match="needs a val_loader"):
        fit(nn.Linear(5, 2), loader, num_epochs=1, callbacks=[KeepBest()], device="cpu")


def test_max_steps_and_callback_order():
    """MaxSteps stops mid-epoch; callbacks run by their `order`, the rest in the order given."""
    loader = _separable()
    seen = []

    class Named(labkit.Callback):
        def __init__(self, name, order=0):
            self.name, self.order = name, order

        def on_fit_start(self, trainer):
            seen.append(self.name)

    hist = fit(nn.Linear(5, 2), loader, num_epochs=3, device="cpu",
               callbacks=[Named("a"), Named("late", order=5), MaxSteps(6), Named("b"), Named("early", order=-5)])
    assert seen == ["early", "a", "b", "late"]
    assert len(hist.epochs) == 2 and hist.epochs[-1]["epoch"] == 2  # 4 steps an epoch: stopped in the second
    assert math.isnan(hist.peak_mem_mb)  # memory is measured only with MeasureMemory


def test_fit_takes_at_most_twelve_parameters():
    import inspect

    assert len(inspect.signature(fit).parameters) <= 12
