"""Catastrophic forgetting: measure what fine-tuning on task B costs on task A, and the callbacks that limit it.

Everything here plugs into labkit's one loop, `labkit.train.fit`: there is no second training loop.

- `TwoHeadModel` keeps a source model's task-A head next to a new task-B head on one shared body, so task-A
  accuracy can be measured at any time while the body is fine-tuned on task B.
- `SourceTaskTracker` writes A and B accuracy into the history after every epoch (and, given probe data, the
  accuracy of a linear probe refitted on the body's task-A features: `probe_task_a`).
- `run_status` tells a run that learnt task B from one that diverged or never learnt it (no forgetting reading).
  Choosing each mitigation's setting and reading it as a trade-off against plain fine-tuning: `labkit.tradeoffs`.
- Mitigations, each a `Callback`: `L2SP` (decay toward the pretrained weights; `toward="zero"` is plain L2 weight
  decay of the same strength), `EWC` (diagonal Fisher from task-A data), `Replay` (stored task-A examples mixed
  into each batch), `LwF` (distillation on the task-A head), `LinearProbeThenFineTune` (LP-FT).
  Freezing depth is `labkit.freeze.freeze_to`; low LR + early stopping: `fit(lr=..., callbacks=[EarlyStopping(...)])`.

EWC fails silently when its Fisher is all zeros or its lambda is orders of magnitude too small for the task loss;
this module warns (ForgettingWarning) in both cases instead of quietly doing nothing.
"""
from __future__ import annotations

import copy
import math
import warnings
from collections import OrderedDict
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from labkit import features
from labkit._batch import forward as forward_logits
from labkit._batch import split_batch, take, to_device
from labkit._torchutil import eval_mode
from labkit.freeze import freeze_to
from labkit.train import Callback, diverged, evaluate

__all__ = ["TwoHeadModel", "TaskView", "task_accuracies", "forgetting", "SourceTaskTracker", "shared_parameters",
           "L2SP", "fisher_diagonal", "EWC", "Replay", "LwF", "LinearProbeThenFineTune", "LPFT",
           "ForgettingWarning", "TASK_A", "TASK_B", "probe_task_a", "run_status", "LEARNT", "DIVERGED",
           "NOT_LEARNT", "LEARNT_FLOOR"]

TASK_A, TASK_B = 0, 1  # row task ids in a mixed (replay) batch: which head scores that row


class ForgettingWarning(UserWarning):
    """A forgetting mitigation is set up so that it cannot do anything (e.g. an all-zero EWC Fisher)."""


# --------------------------------------------------------------------------------------------------------------
# A body shared by the kept source head (task A) and a new head (task B)
# --------------------------------------------------------------------------------------------------------------
class TwoHeadModel(nn.Module):
    """A pretrained `Backbone` whose own classifier stays as the frozen task-A head, plus a new task-B head.

    forward(x) gives task-B logits (what fit trains); forward(x, task=ids) scores each row with its task's head
    (replay batches mix both tasks). Depths are the backbone's feature depths plus 'classifier' (= head B), so
    `freeze_to(model, "block3")` works as on any backbone; head A is never trained.
    """

    def __init__(self, backbone: nn.Module, num_classes_b: int):
        super().__init__()
        if not hasattr(backbone, "features") or not hasattr(backbone, "classifier"):
            raise TypeError("TwoHeadModel needs a labkit Backbone (with .features and .classifier), "
                            f"got {type(backbone).__name__}. Load one with labkit.zoo.fashion_source_model().")
        self.backbone = backbone
        self.head_b = nn.Linear(backbone.num_features, int(num_classes_b))
        for p in self.head_a.parameters():
            p.requires_grad_(False)  # task A's head is kept as it was: only the shared body can forget
        self.last_features: torch.Tensor | None = None

    @property
    def head_a(self) -> nn.Module:
        return self.backbone.classifier

    @property
    def preprocessing(self):
        """The backbone's preprocessing, so `make_loader(ds, model)` works."""
        return self.backbone.preprocessing

    @property
    def num_classes(self) -> dict:
        return {"a": self.head_a.out_features, "b": self.head_b.out_features}

    def depth_modules(self) -> "OrderedDict[str, nn.Module]":
        """The backbone's feature depths, then 'classifier' = head B (head A is not a trainable depth)."""
        out = OrderedDict((n, m) for n, m in self.backbone.depth_modules().items() if n != "classifier")
        out["classifier"] = self.head_b
        return out

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Task-B logits (N, kB); with `task` (N,) of TASK_A/TASK_B, each row's own head, padded to max(kA, kB)."""
        feats = self.backbone.features(x)  # (N, C) pooled features of the shared body
        self.last_features = feats  # LwF reuses them instead of a second forward pass
        if task is None:
            return self.head_b(feats)
        task = torch.as_tensor(task, device=feats.device).view(-1, 1)
        a, b = self.head_a(feats), self.head_b(feats)
        width = max(a.shape[1], b.shape[1])
        # a very negative logit (not -inf, which gives NaN gradients) for the classes the other head lacks
        a = F.pad(a, (0, width - a.shape[1]), value=-1e4)
        b = F.pad(b, (0, width - b.shape[1]), value=-1e4)
        return torch.where(task == TASK_A, a, b)

    def task_view(self, task: str) -> "TaskView":
        """A module that scores inputs with one task's head ('a' or 'b'), for evaluate/predict."""
        return TaskView(self, task)


class TaskView(nn.Module):
    """`TwoHeadModel` seen through one head: forward(x) -> that task's logits."""

    def __init__(self, model: TwoHeadModel, task: str):
        super().__init__()
        if task not in ("a", "b"):
            raise ValueError(f"task must be 'a' (the source task) or 'b' (the new task), got {task!r}.")
        self.model, self.task = model, task

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """task: ignored (this view scores every row with its own head), so replay's {'x', 'task'} batches fit."""
        feats = self.model.backbone.features(x)
        return (self.model.head_a if self.task == "a" else self.model.head_b)(feats)


def _view(model: nn.Module, task: str) -> nn.Module:
    return model.task_view(task) if hasattr(model, "task_view") else model


def task_accuracies(model: nn.Module, a_loader: Iterable, b_loader: Iterable | None = None, device=None) -> dict:
    """{'a_acc': ..., 'b_acc': ...}: accuracy on task A through head A and on task B through head B."""
    out = {"a_acc": evaluate(_view(model, "a"), a_loader, device)["acc"]}
    if b_loader is not None:
        out["b_acc"] = evaluate(_view(model, "b"), b_loader, device)["acc"]
    return out


def forgetting(a_before: float, a_after: float) -> float:
    """Forgetting = task-A accuracy before fine-tuning minus after (positive: knowledge was lost)."""
    return float(a_before) - float(a_after)


class SourceTaskTracker(Callback):
    """Adds a_acc, b_acc and forgetting (A before - A now) to the history logs after every epoch.

    The accuracies before training are measured at fit start and kept in `.before`; pass `before` (from
    `task_accuracies` on the same starting model) to skip that measurement when many runs share one start.
    probe: (task-A train dataset, task-A test dataset) to also log `a_probe` after every epoch: the accuracy of a
        linear probe refitted on the body's current features (`probe_task_a`), next to head A's `a_acc`.
    """

    def __init__(self, a_loader: Iterable, b_loader: Iterable | None = None, before: dict | None = None,
                 probe: tuple | None = None):
        self.a_loader, self.b_loader, self._given, self.probe = a_loader, b_loader, before, probe
        self.before: dict | None = dict(before) if before else None

    def on_fit_start(self, trainer):
        if self._given is None:
            self.before = task_accuracies(trainer.model, self.a_loader, self.b_loader, trainer.device)

    def on_epoch_end(self, trainer, logs):
        logs.update(task_accuracies(trainer.model, self.a_loader, self.b_loader, trainer.device))
        logs["forgetting"] = forgetting(self.before["a_acc"], logs["a_acc"])
        if self.probe is not None:
            logs["a_probe"] = probe_task_a(trainer.model, *self.probe, device=trainer.device)


def probe_task_a(model: nn.Module, train_ds, test_ds, device=None):
    """Task-A accuracy of a linear probe refitted on the shared body's pooled features (an `Accuracy`).

    Head A reads the features as they were before fine-tuning; a probe fitted anew on the fine-tuned features
    asks whether the task-A information is still *in* them. A high probe with a low head-A accuracy means the
    features moved but kept the information (the old head no longer fits them); a low probe means it was lost.
    train_ds / test_ds: task-A images (the test set is the one head A is scored on, for paired comparisons).
    """
    body = model.backbone if isinstance(model, TwoHeadModel) else model
    device = device or next(body.parameters()).device
    X_train, y_train = features.extract_features(body, train_ds, device=device, cache=False, progress=False)
    X_test, y_test = features.extract_features(body, test_ds, device=device, cache=False, progress=False)
    return features.linear_probe(X_train, y_train, X_test, y_test)


LEARNT, DIVERGED, NOT_LEARNT = "learnt", "diverged", "did not learn task B"


LEARNT_FLOOR = 0.3  # the course's floor: "learnt" needs validation accuracy at least 0.3 above chance


def run_status(history, num_classes: int, val_acc: float | None = None, margin: float = LEARNT_FLOOR) -> str:
    """'diverged' when the last epoch's training loss is above ln(num_classes) (worse than guessing uniformly),
    'did not learn task B' when the validation accuracy is less than `margin` above chance (by default
    LEARNT_FLOOR: 0.5 for five classes), else 'learnt'.

    A run that diverged or never learnt task B says nothing about forgetting: its task-A loss is the network
    being broken, not a trade-off. val_acc: task-B accuracy on validation data (default: the history's last
    val_acc, when there is one), never the test set.
    """
    losses = history["train_loss"] if not isinstance(history, Sequence) else history
    if not losses:
        raise ValueError("run_status needs at least one epoch of training loss.")
    last = float(losses[-1])
    if diverged(last, num_classes):
        return DIVERGED
    if val_acc is None and not isinstance(history, Sequence):
        vals = [e.get("val_acc") for e in history.epochs if e.get("val_acc") is not None]
        val_acc = vals[-1] if vals else None
    if val_acc is not None and float(val_acc) < 1.0 / num_classes + margin:
        return NOT_LEARNT
    return LEARNT


# --------------------------------------------------------------------------------------------------------------
# Anchoring the shared body: L2-SP and plain L2
# --------------------------------------------------------------------------------------------------------------
def learnt(*rows: Mapping) -> bool:
    """Every run learnt task B (see `run_status`)."""
    return all(r["status"] == LEARNT for r in rows)


def compare_if_learnt(ledger, rows: Sequence[Mapping], id: str, claim: str, **kwargs):
    """`ledger.compare(id, claim, **kwargs)` when every run learnt task B, else a 'not measured' row that names the
    runs that diverged or did not learn (their numbers say nothing about forgetting)."""
    if learnt(*rows):
        return ledger.compare(id, claim, **kwargs)
    why = "; ".join(f"{r['method']} {r['status']} (task-B validation {r['val_b']:.3f})"
                    for r in rows if r["status"] != LEARNT)
    named = {k: kwargs[k] for k in ("source", "article") if k in kwargs}
    return ledger.not_measured(id, claim, why=why + ": not forgetting", **named)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")


def lr_step_claims(ledger, curves: Mapping[str, Sequence[Mapping]]) -> None:
    """One claim per adjacent pair of learning rates on each curve (name -> rows from the lowest LR): task A is kept
    better at the lower LR. A run at lr 0 is a control that does not learn task B by design, so only the other
    run of its pair must have learnt."""
    for name, points in curves.items():
        for lo, hi in zip(points, points[1:]):
            checked = [r for r in (lo, hi) if r["lr"] > 0]
            compare_if_learnt(ledger, checked, f"lr-step-{_slug(name)}-{lo['lr']:g}-{hi['lr']:g}",
                              f"Too high a learning rate overwrites pretrained knowledge ({name}): task A is kept "
                              f"better at lr={lo['lr']:g} than at lr={hi['lr']:g}",
                              a=(f"task A, lr={lo['lr']:g}", lo["a_acc"]), b=(f"task A, lr={hi['lr']:g}", hi["a_acc"]))


def mitigation_claims(ledger, chosen: Mapping[str, Mapping], plain: Mapping, notes: Mapping[str, str]) -> None:
    """One claim per mitigation (name -> its chosen run, with 'knob' and 'value'): it keeps more of task A than
    plain fine-tuning at the same LR. Task B is matched on validation when the setting is chosen, so its test
    difference is printed in the note, not claimed."""
    for m, r in chosen.items():
        value = r["value"] if isinstance(r["value"], str) else f"{r['value']:.3g}"
        how = ("its setting chosen on task-B validation" if m == "LP-FT"
               else "set as strongly as task-B validation allows")
        note = (f"this run chose {r['knob']} {value} ({notes[m]}); plain fine-tuning at lr={plain['lr']:g}; task B "
                f"{r['b_acc']:.3f} vs {plain['b_acc']:.3f} (matched on validation, so not a claim)")
        compare_if_learnt(ledger, [r, plain], f"{_slug(m)}-keeps-a", f"{m} ({how}) keeps more of task A than plain "
                          "fine-tuning at the LR task-B validation picks", note=note, a=(m, r["a_acc"]),
                          b=("plain fine-tune", plain["a_acc"]))


def shared_parameters(model: nn.Module) -> "OrderedDict[str, nn.Parameter]":
    """Name -> parameter of what both tasks share: a TwoHeadModel's body (not head A, not head B), else everything."""
    if isinstance(model, TwoHeadModel):
        skip = {id(p) for p in model.head_a.parameters()} | {id(p) for p in model.head_b.parameters()}
        return OrderedDict((n, p) for n, p in model.named_parameters() if id(p) not in skip)
    return OrderedDict(model.named_parameters())


def _trainable(named: Mapping[str, nn.Parameter]) -> dict:
    return {n: p for n, p in named.items() if p.requires_grad}


class L2SP(Callback):
    """Penalty alpha/2 * sum (theta - theta_0)^2 over the shared body; theta_0 is the body at fit start.

    toward="pretrained" is L2-SP (decay toward the pretrained weights); toward="zero" is plain L2 weight decay of
    the same strength, the classic regulariser that pulls toward zero instead (its comparison baseline).
    """

    def __init__(self, alpha: float = 0.01, toward: str = "pretrained"):
        if toward not in ("pretrained", "zero"):
            raise ValueError(f"toward must be 'pretrained' (L2-SP) or 'zero' (plain weight decay), got {toward!r}.")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}.")
        self.alpha, self.toward = float(alpha), toward
        self.anchor: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer):
        self.params = shared_parameters(trainer.model)
        self.anchor = {n: (p.detach().clone() if self.toward == "pretrained" else torch.zeros_like(p))
                       for n, p in self.params.items()}

    def penalty(self, trainer):
        total = sum(((p - self.anchor[n]) ** 2).sum() for n, p in _trainable(self.params).items())
        return 0.5 * self.alpha * total if torch.is_tensor(total) else None


# --------------------------------------------------------------------------------------------------------------
# EWC
# --------------------------------------------------------------------------------------------------------------
def fisher_diagonal(model: nn.Module, loader: Iterable, params: Mapping[str, nn.Parameter] | None = None,
                    max_samples: int = 200, device=None) -> dict[str, torch.Tensor]:
    """Diagonal (empirical) Fisher of task A: the mean over examples of the squared per-example gradient of the
    log-likelihood of the true label, for each shared parameter.

    model: a TwoHeadModel (its head A is used) or any classifier. params: name -> parameter of `model`
        (default: `shared_parameters(model)`). Gradients are taken one example at a time, because squaring a
        batch-mean gradient underestimates the Fisher. Frozen parameters are unfrozen for the computation and
        re-frozen afterwards (a frozen parameter has no gradient: the classic all-zero Fisher).
    """
    params = dict(shared_parameters(model) if params is None else params)
    if not params:
        raise ValueError("fisher_diagonal got no parameters to weigh.")
    forward = _view(model, "a")
    device = device or next(iter(params.values())).device
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    was_frozen = {n: not p.requires_grad for n, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    seen = 0
    try:
        with eval_mode(forward):  # BatchNorm running statistics, not the statistics of one example
            for batch in loader:  # labkit's one batch convention, as in fit
                x, y = split_batch(to_device(batch, device))
                for i in range(y.shape[0]):
                    if seen >= max_samples:
                        break
                    log_p = F.log_softmax(forward_logits(forward, take(x, slice(i, i + 1))), dim=1)[0, y[i]]
                    grads = torch.autograd.grad(log_p, list(params.values()), allow_unused=True)
                    for (n, _), g in zip(params.items(), grads):
                        if g is not None:
                            fisher[n] += g.detach() ** 2
                    seen += 1
                if seen >= max_samples:
                    break
    finally:
        for n, p in params.items():
            p.requires_grad_(not was_frozen[n])
    if seen == 0:
        raise ValueError("The task-A loader gave no examples: the Fisher needs task-A data.")
    return {n: f / seen for n, f in fisher.items()}


class EWC(Callback):
    """Elastic weight consolidation: penalty lam/2 * sum_i F_i (theta_i - theta*_i)^2 over the shared body.

    fisher: from `fisher_diagonal` (compute it once, reuse it across a lambda sweep); theta* is the body at fit
    start unless `anchor` is given. Warns (ForgettingWarning) when the Fisher is all zeros, and after the first
    epoch when the penalty is below `warn_below` times the task loss (lambda orders of magnitude too small): the
    two ways EWC silently does nothing. Logs ewc_penalty and ewc_ratio (penalty / task loss) every epoch.
    """

    def __init__(self, fisher: Mapping[str, torch.Tensor], lam: float = 100.0,
                 anchor: Mapping[str, torch.Tensor] | None = None, warn_below: float = 1e-3):
        if lam < 0 or not math.isfinite(lam):
            raise ValueError(f"EWC lambda must be a finite number >= 0, got {lam}.")
        if not fisher:
            raise ValueError("EWC needs a Fisher: fisher = labkit.forgetting.fisher_diagonal(model, a_loader).")
        self.fisher, self.lam, self.warn_below = dict(fisher), float(lam), warn_below
        self.anchor = None if anchor is None else {n: t.detach().clone() for n, t in anchor.items()}
        total = float(sum(f.sum() for f in self.fisher.values()))
        self.fisher_total = total
        if not total > 0:
            warnings.warn("EWC's Fisher information is all zeros, so its penalty is always 0 and EWC does nothing. "
                          "Usual causes: the Fisher was computed with the parameters frozen (no gradients), with "
                          "the wrong head, or on no task-A data. Recompute it with fisher_diagonal(model, a_loader).",
                          ForgettingWarning, stacklevel=2)
        if self.lam == 0:
            warnings.warn("EWC lambda is 0: the penalty is 0 and EWC does nothing.", ForgettingWarning, stacklevel=2)
        self.ratio: float | None = None

    def on_fit_start(self, trainer):
        named = dict(trainer.model.named_parameters())
        missing = [n for n in self.fisher if n not in named]
        if missing:
            raise KeyError(f"EWC's Fisher names parameters this model does not have (e.g. {missing[0]!r}): compute "
                           "the Fisher on the same kind of model you fine-tune.")
        self.params = {n: named[n] for n in self.fisher}
        if self.anchor is None:
            self.anchor = {n: p.detach().clone() for n, p in self.params.items()}
        # fit may have moved the model (e.g. to a GPU) after the Fisher was computed
        self.fisher = {n: f.to(self.params[n].device) for n, f in self.fisher.items()}
        self.anchor = {n: a.to(self.params[n].device) for n, a in self.anchor.items()}
        self._sum_penalty, self._sum_task, self._checked = 0.0, 0.0, False

    def penalty(self, trainer):
        total = sum((self.fisher[n] * (p - self.anchor[n]) ** 2).sum()
                    for n, p in self.params.items() if p.requires_grad)
        if not torch.is_tensor(total):
            return None
        self._last = 0.5 * self.lam * total
        return self._last

    def on_batch_end(self, trainer):
        pen = float(self._last.detach()) if hasattr(self, "_last") else 0.0
        self._sum_penalty += pen
        self._sum_task += float(trainer.loss.detach()) - pen  # the loss without this penalty

    def on_epoch_end(self, trainer, logs):
        self.ratio = self._sum_penalty / max(self._sum_task, 1e-12)
        logs["ewc_penalty"], logs["ewc_ratio"] = self._sum_penalty, self.ratio
        if not self._checked:
            self._checked = True
            if self.fisher_total > 0 and self.lam > 0 and self.ratio < self.warn_below:
                suggestion = self.lam * 0.1 / max(self.ratio, 1e-30)
                warnings.warn(f"EWC's penalty is only {self.ratio:.1e} x the task loss after the first epoch: with "
                              f"lambda={self.lam:g} it cannot hold the weights and EWC changes (almost) nothing. "
                              f"For the penalty to be ~10% of the loss, try lambda around {suggestion:.0e}.",
                              ForgettingWarning, stacklevel=2)
        self._sum_penalty, self._sum_task = 0.0, 0.0


# --------------------------------------------------------------------------------------------------------------
# Replay and distillation
# --------------------------------------------------------------------------------------------------------------
class Replay(Callback):
    """Keeps k task-A examples and mixes `per_batch` of them into every training batch, scored by head A.

    a_loader: task-A batches (x, y) to fill the memory from (the first k examples it yields).
    The mixed batch is a dict {'x', 'task', 'labels'}: TwoHeadModel scores each row with its own task's head.
    """

    def __init__(self, a_loader: Iterable, k: int = 100, per_batch: int = 16, seed: int = 0):
        if k < 1 or per_batch < 1:
            raise ValueError(f"Replay needs k >= 1 stored examples and per_batch >= 1, got k={k}, "
                             f"per_batch={per_batch}.")
        xs, ys, n = [], [], 0
        for x, y in a_loader:
            xs.append(x[: k - n]), ys.append(y[: k - n])
            n += len(xs[-1])
            if n >= k:
                break
        if n == 0:
            raise ValueError("The task-A loader for Replay is empty.")
        self.X, self.y = torch.cat(xs), torch.cat(ys)
        self.k, self.per_batch = n, int(per_batch)
        self.generator = torch.Generator().manual_seed(seed)

    def on_fit_start(self, trainer):
        if not isinstance(trainer.model, TwoHeadModel):
            raise TypeError("Replay needs a TwoHeadModel (it scores the stored task-A rows with head A).")

    def on_batch(self, trainer, batch):
        if isinstance(batch, dict):
            raise TypeError("Replay expects (x, y) batches from labkit.data.make_loader; put Replay first among "
                            "callbacks that change batches.")
        x, y = batch[0], batch[1]
        idx = torch.randint(self.k, (min(self.per_batch, self.k),), generator=self.generator)
        x_mem, y_mem = self.X[idx].to(x.device), self.y[idx].to(y.device)
        task = torch.cat([torch.full((len(y),), TASK_B), torch.full((len(idx),), TASK_A)]).to(y.device)
        return {"x": torch.cat([x, x_mem]), "task": task, "labels": torch.cat([y, y_mem])}


class LwF(Callback):
    """Learning without Forgetting: distil the frozen pre-fine-tuning head-A outputs on the task-B images.

    penalty = alpha * T^2 * KL(teacher || student) of temperature-T softmaxes of head A; no task-A data needed.
    """

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0):
        if alpha < 0 or temperature <= 0:
            raise ValueError(f"LwF needs alpha >= 0 and temperature > 0, got {alpha}, {temperature}.")
        self.alpha, self.temperature = float(alpha), float(temperature)

    def on_fit_start(self, trainer):
        if not isinstance(trainer.model, TwoHeadModel):
            raise TypeError("LwF needs a TwoHeadModel (it distils the task-A head).")
        trainer.model.last_features = None  # a tensor inside an autograd graph cannot be deep-copied
        self.teacher = copy.deepcopy(trainer.model.task_view("a")).eval()  # the model as it was before task B
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def penalty(self, trainer):
        batch = trainer.batch
        x = batch["x"] if isinstance(batch, dict) else batch[0]
        model = trainer.model
        with torch.no_grad():
            target = F.softmax(self.teacher(x) / self.temperature, dim=1)
        student = F.log_softmax(model.head_a(model.last_features) / self.temperature, dim=1)
        return self.alpha * self.temperature ** 2 * F.kl_div(student, target, reduction="batchmean")


# --------------------------------------------------------------------------------------------------------------
# LP-FT
# --------------------------------------------------------------------------------------------------------------
class LinearProbeThenFineTune(Callback):
    """LP-FT: train only the head for `probe_epochs` (at probe_lr), then everything at fit's (smaller) lr.

    The head starts the fine-tuning phase already fitted, so early gradients into the body are small and the
    pretrained features are disturbed less than with a random head (Kumar et al., 2022).
    """

    def __init__(self, probe_epochs: int = 1, probe_lr: float | None = None):
        if probe_epochs < 1:
            raise ValueError(f"probe_epochs must be >= 1, got {probe_epochs}.")
        self.probe_epochs, self.probe_lr = int(probe_epochs), probe_lr

    def on_fit_start(self, trainer):
        self.start = [p.requires_grad for p in trainer.model.parameters()]
        self.finetune_lr = trainer.base_lr
        freeze_to(trainer.model, -1)
        trainer.base_lr = self.probe_lr or trainer.base_lr
        trainer.rebuild_optimizer()

    def on_epoch_start(self, trainer):
        if trainer.epoch != self.probe_epochs:
            return
        for p, trainable in zip(trainer.model.parameters(), self.start):
            p.requires_grad_(trainable)
        trainer.base_lr = self.finetune_lr
        trainer.rebuild_optimizer()

    def on_fit_end(self, trainer):
        trainer.base_lr = self.finetune_lr


LPFT = LinearProbeThenFineTune
