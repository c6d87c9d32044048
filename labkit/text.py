"""Transfer learning for text: a TF-IDF reference, frozen sentence embeddings, fine-tuning recipes, LoRA, forgetting.

Every approach returns the same kind of result (accuracy, macro-F1, seconds, trainable parameters, peak memory),
so a notebook can put them in one table:
- `tfidf_baseline`: TF-IDF + logistic regression (the reference row; no pretraining at all);
- `embed` + `logistic_regression`: frozen mean-pooled embeddings (`TextModel.encode`) + logistic regression;
- `trainer_finetune`: the Hugging Face Trainer recipe (lr 2e-5, weight decay, evaluation every epoch, best model
  kept at the end) over labkit's `TextDataset`;
- `fit_finetune`: the same recipe on labkit's one loop (`labkit.fit`), for layer-wise LR decay
  (`layerwise_lr_groups`), LoRA (`add_lora`) and deliberately bad learning rates;
- `knn_accuracy` + `encoder_of`: a forgetting probe (kNN accuracy of sentence embeddings on held-out topics).
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import math
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from labkit._torchutil import hub_progress, model_device, progress_enabled, weights_digest
from labkit.assets import AssetUnavailableError, TextModel
from labkit.data import IMDB_URL, TextDataset, imdb, make_text_loader
from labkit.features import cache_get, cache_keep, cache_put, computing, fit_probe
from labkit.freeze import count_parameters, discriminative_param_groups
from labkit.memory import bytes_to_mb, measure_training_memory
from labkit.metrics import Accuracy
from labkit.repro import resolve_device
from labkit.train import (
    GradientClipping,
    KeepBest,
    LRSchedule,
    MeasureMemory,
    ProgressBar,
    fit,
    predict,
)

__all__ = [
    "scores", "majority_rate", "tfidf_baseline", "embed", "logistic_regression", "knn_accuracy", "encoder_of",
    "layerwise_lr_groups", "add_lora", "trainable_share", "FinetuneResult", "trainer_finetune", "fit_finetune",
    "evaluate_text", "training_memory_mb", "imdb", "IMDB_URL", "AssetUnavailableError",
    "MeanPoolClassifier", "mean_pool_classifier", "token_lengths",
]

# peft asks transformers a deprecated question (is_gradient_checkpointing); nothing a student can act on
_PEFT_DEPRECATION = ".*is_gradient_checkpointing.*"


# --------------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------------
def scores(y_true, y_pred) -> dict:
    """Accuracy and macro-F1 (every class counts the same, however rare) of integer predictions."""
    from sklearn.metrics import f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"Need as many predictions as labels (got {y_pred.shape} and {y_true.shape}), at least one.")
    # acc keeps which texts were right (labkit.metrics.Accuracy), for paired comparisons between rows
    return {"acc": Accuracy(y_true == y_pred),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}


def majority_rate(y_train, y_test) -> float:
    """Test accuracy of always predicting the most common training class (the floor every row must beat)."""
    majority = int(np.bincount(np.asarray(y_train)).argmax())
    return float((np.asarray(y_test) == majority).mean())


# --------------------------------------------------------------------------------------------------------------
# Rows without fine-tuning
# --------------------------------------------------------------------------------------------------------------
def _check_pair(train_ds: TextDataset, test_ds: TextDataset) -> None:
    for what, ds in (("training", train_ds), ("test", test_ds)):
        if not isinstance(ds, TextDataset):
            raise TypeError(f"The {what} set must be a labkit.data.TextDataset, got {type(ds).__name__}. "
                            "Load one with labkit.data.newsgroups(...), election_tweets() or text_file(path).")
        if len(ds) == 0:
            raise ValueError(f"The {what} set is empty: there is nothing to learn from or score.")
    if len(np.unique(train_ds.labels)) < 2:
        raise ValueError("The training set has a single class: a classifier needs at least two.")


def tfidf_baseline(train_ds: TextDataset, test_ds: TextDataset, C: float = 10.0, ngram_range=(1, 2),
                   max_features: int | None = 50_000) -> dict:
    """TF-IDF (word uni+bigrams, sublinear tf) + logistic regression: the classic no-pretraining reference.

    Returns acc, macro_f1, seconds (fit + predict), trainable_params (the regression's weights) and predictions.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    _check_pair(train_ds, test_ds)
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=tuple(ngram_range), max_features=max_features)
    X_train = vectorizer.fit_transform(train_ds.texts)  # sparse (N, vocabulary)
    clf = LogisticRegression(C=C, max_iter=2000).fit(X_train, train_ds.labels)
    pred = clf.predict(vectorizer.transform(test_ds.texts))
    seconds = time.perf_counter() - start
    return {**scores(test_ds.labels, pred), "seconds": seconds,
            "trainable_params": int(clf.coef_.size + clf.intercept_.size), "vocabulary": len(vectorizer.vocabulary_),
            "pred": pred}


def embed(text_model: TextModel, texts: Sequence[str], max_length: int | None = None, batch_size: int = 32,
          device: str | None = "auto", cache: bool = True, disk: bool = False) -> np.ndarray:
    """Frozen mean-pooled, L2-normalised sentence embeddings (N, hidden) via `TextModel.encode`, cached in memory.

    The cache (labkit.features' one feature cache, memory part) is keyed by the weights and the text, so
    embedding a subset of texts seen before costs nothing; `features.clear_memory_cache()` forgets it.
    disk: also keep this list's embeddings in the disk cache ($LABKIT_CACHE), for a fixed set of texts under
        weights that every run shares (the pretrained encoder on a test set): computed once per machine, not once
        per run or seed. Not for fine-tuned weights, which no other run has. Each text's row is kept in memory too,
        so embedding any subset of the list afterwards runs no encoder.
    """
    if isinstance(texts, str):
        raise TypeError("embed() takes a list of texts, not a single string: wrap it as [text].")
    texts = list(texts)
    max_length = int(max_length or text_model.max_length)
    prefix = f"embed|{text_model.name}|{weights_digest(encoder_of(text_model.model))}|{max_length}|"
    keys = [prefix + hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
    if disk and cache and texts:
        whole = "embed-" + hashlib.sha1("\n".join(keys).encode()).hexdigest()[:24]
        found, _ = cache_get(whole)
        if found is None:
            with computing([whole]):  # another run embedding the same list: wait for it, then read its file
                found, _ = cache_get(whole)
                if found is None:
                    X = embed(text_model, texts, max_length, batch_size=batch_size, device=device)
                    found = cache_put(whole, X, np.zeros(len(X), dtype=np.int8))
        X = np.asarray(found[0], dtype=np.float32)
        for key, row in zip(keys, X):  # each text's row in memory too: a later subset of these texts costs nothing
            cache_keep(key, row)
        return X
    found = {k: v for k, v in ((k, cache_get(k, disk=False)[0]) for k in dict.fromkeys(keys) if cache)
             if v is not None}
    missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
    if missing:
        was_on = model_device(text_model.model)
        out = text_model.encode(missing, batch_size=batch_size, max_length=max_length,
                                device=resolve_device(device)).numpy()
        text_model.model.to(was_on)  # encode moved the encoder; put it back where the caller had it
        fresh = dict(zip(missing, out))
        if not cache:
            return np.stack([fresh[t] for t in texts]).astype(np.float32)
        for t in missing:
            key = prefix + hashlib.sha1(t.encode("utf-8")).hexdigest()
            found[key] = fresh[t]
            cache_keep(key, fresh[t])
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32)


def logistic_regression(X_train, y_train, X_test, y_test, C: float = 1.0) -> dict:
    """A standardised logistic regression on frozen features: acc, macro_f1, seconds, trainable_params, pred."""
    start = time.perf_counter()
    clf = fit_probe(X_train, y_train, C=C)
    pred = clf.predict(X_test)
    lr_model = clf[-1]
    return {**scores(y_test, pred), "seconds": time.perf_counter() - start,
            "trainable_params": int(lr_model.coef_.size + lr_model.intercept_.size), "pred": pred}


def knn_accuracy(X_train, y_train, X_test, y_test, k: int = 5):
    """Accuracy of a k-nearest-neighbour vote with cosine similarity: how well embeddings group a topic."""
    X_train = torch.nn.functional.normalize(torch.as_tensor(np.asarray(X_train), dtype=torch.float32), dim=1)
    X_test = torch.nn.functional.normalize(torch.as_tensor(np.asarray(X_test), dtype=torch.float32), dim=1)
    y_train = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    k = min(int(k), len(y_train))
    if k < 1:
        raise ValueError("knn_accuracy needs at least one reference example.")
    nearest = (X_test @ X_train.T).topk(k, dim=1).indices  # (N_test, k)
    votes = torch.nn.functional.one_hot(y_train[nearest], int(y_train.max()) + 1).sum(1)  # (N_test, classes)
    return Accuracy(votes.argmax(1).numpy() == np.asarray(y_test))  # a float that keeps which items were right


def encoder_of(model: nn.Module) -> nn.Module:
    """The bare transformer encoder inside a classifier (BertModel, DistilBertModel), also through a peft wrapper."""
    if hasattr(model, "get_base_model"):  # peft: the wrapped model, LoRA layers still active
        model = model.get_base_model()
    return getattr(model, "base_model", model)


# --------------------------------------------------------------------------------------------------------------
# Fine-tuning helpers
# --------------------------------------------------------------------------------------------------------------
def layerwise_lr_groups(model: nn.Module, lr: float, decay: float = 0.8, weight_decay: float = 0.01) -> list[dict]:
    """Layer-wise LR decay: the classifier gets `lr`, each transformer layer below `decay` times the one above.

    Built on labkit.freeze.model_depths (embeddings, layer0 ... layerN, classifier for BERT-like models), so the
    embeddings get lr * decay ** (N + 1): the most general knowledge moves least.
    """
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}: 1 means one LR for every layer.")
    return discriminative_param_groups(model, lr=lr, decay=decay, weight_decay=weight_decay)


def add_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.1,
             target_modules: Sequence[str] | None = None) -> nn.Module:
    """Wrap a Hugging Face sequence classifier with LoRA adapters (peft); only adapters and the head train.

    target_modules: attention projections to adapt; None lets peft pick the usual ones for the architecture
    (query/value for BERT and MiniLM, q_lin/v_lin for DistilBERT).
    """
    from peft import LoraConfig, TaskType, get_peft_model

    if r < 1:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r}.")
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=int(r), lora_alpha=int(alpha), lora_dropout=float(dropout),
                        target_modules=list(target_modules) if target_modules else None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PEFT_DEPRECATION, category=FutureWarning)
        return get_peft_model(model, config)


def trainable_share(model: nn.Module) -> float:
    """Trainable parameters / all parameters (LoRA's selling point is a tiny share)."""
    total = count_parameters(model)
    return count_parameters(model, trainable_only=True) / total if total else 0.0


def training_memory_mb(model: nn.Module, loader) -> float:
    """Memory of one training step on the loader's first batch, in MB: the total of
    labkit.train.measure_training_memory (weights + gradients + AdamW state + the forward pass's high-water mark).
    """
    batch = next(iter(loader))
    return float(bytes_to_mb(measure_training_memory(model, batch)["total"]))


def evaluate_text(model: nn.Module, tokenizer, ds: TextDataset, max_length: int = 128, batch_size: int = 64,
                  device: str | None = None) -> dict:
    """acc, macro_f1 and pred of a sequence classifier on a TextDataset (eval mode, no gradients)."""
    loader = make_text_loader(ds, tokenizer, batch_size=batch_size, max_length=max_length)
    logits, targets = predict(model, loader, device)
    pred = logits.argmax(1).numpy()
    return {**scores(targets.numpy(), pred), "pred": pred}


def token_lengths(tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Tokens per text (special tokens included, no truncation): compare with max_length to see what is cut off."""
    if isinstance(texts, str):
        raise TypeError("token_lengths() takes a list of texts, not a single string: wrap it as [text].")
    return np.array([len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]], dtype=np.int64)


class MeanPoolClassifier(nn.Module):
    """A sequence classifier whose linear head reads the mean of the encoder's last hidden states (padding
    masked out), the pooling of the frozen-embedding row, instead of the [CLS] token's (pooled) state.

    Returns a Hugging Face `SequenceClassifierOutput` (logits, and the cross-entropy loss when labels are given),
    so `fit_finetune`, `trainer_finetune` (through a TextModel), `evaluate_text` and `encoder_of` all take it.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.1):
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"num_labels must be at least 2, got {num_labels}.")
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        self.classifier = nn.Linear(hidden, num_labels)
        std = getattr(encoder.config, "initializer_range", 0.02)  # the init of Hugging Face's own heads
        nn.init.normal_(self.classifier.weight, std=std)
        nn.init.zeros_(self.classifier.bias)

    @property
    def base_model(self) -> nn.Module:  # what encoder_of and TextModel.encode look for
        return self.encoder

    def forward(self, input_ids=None, attention_mask=None, labels=None, **inputs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, H)
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def mean_pool_classifier(text_model: TextModel, num_labels: int | None = None, dropout: float = 0.1) -> TextModel:
    """text_model's encoder with a new mean-pooling head (`MeanPoolClassifier`), as a TextModel for
    `trainer_finetune` / `fit_finetune`. num_labels: None takes the model's (load it with num_labels=k)."""
    encoder = encoder_of(text_model.model)
    num_labels = int(num_labels or getattr(encoder.config, "num_labels", 2))
    return TextModel(name=text_model.name, model=MeanPoolClassifier(encoder, num_labels, dropout),
                     tokenizer=text_model.tokenizer, max_length=text_model.max_length, source=text_model.source)


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced: the (best-epoch) model and the numbers for the comparison table."""

    model: nn.Module
    epochs: list[dict] = field(default_factory=list)  # per epoch: train_loss, val_loss, val_acc (, val_macro_f1)
    seconds: float = 0.0
    trainable_params: int = 0
    total_params: int = 0
    peak_mem_mb: float = float("nan")
    best_epoch: int | None = None  # 1-based epoch whose weights were kept

    @property
    def trainable_share(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0


def _check_finetune_inputs(text_model: TextModel, train_ds: TextDataset, val_ds: TextDataset, lr: float,
                           num_epochs: int) -> None:
    if not isinstance(text_model, TextModel):
        raise TypeError("Pass the TextModel from labkit.load_text_model(name, num_labels=k), not "
                        f"{type(text_model).__name__}.")
    _check_pair(train_ds, val_ds)
    num_labels = getattr(getattr(encoder_of(text_model.model), "config", None), "num_labels", None)
    needed = int(max(train_ds.labels.max(), val_ds.labels.max())) + 1
    if num_labels is not None and hasattr(text_model.model, "classifier") and num_labels < needed:
        raise ValueError(f"The model has {num_labels} outputs but the data has {needed} classes: load it with "
                         f"labkit.load_text_model(name, num_labels={needed}).")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}.")
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be at least 1, got {num_epochs}.")


class _Tokenised(torch.utils.data.Dataset):
    """A TextDataset tokenised once (no padding: the collator pads each batch to its longest text)."""

    def __init__(self, ds: TextDataset, tokenizer, max_length: int):
        enc = tokenizer(ds.texts, truncation=True, max_length=max_length)
        self.items = [{**{k: v[i] for k, v in enc.items()}, "labels": int(ds.labels[i])} for i in range(len(ds))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


_SCRATCH: set[Path] = set()  # Trainer checkpoint folders of this process that still exist


def _remove_scratch() -> None:
    for folder in list(_SCRATCH):
        shutil.rmtree(folder, ignore_errors=True)
        _SCRATCH.discard(folder)


atexit.register(_remove_scratch)  # a kernel shut down while a Trainer runs


def _on_sigterm(previous):
    def handler(signum, frame):
        _remove_scratch()
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # then whatever SIGTERM did before (by default: end the process)
    return handler


@contextlib.contextmanager
def trainer_scratch(output_dir: str | os.PathLike | None = None):
    """The folder Trainer checkpoints go to: `output_dir` (kept), or a temporary `labkit-trainer-*` folder that is
    removed when the block ends, on an error, on Ctrl-C, at exit and on SIGTERM.

    The temporary folder is made under $TMPDIR; `labkit run` points that at a folder of the run, which it removes
    itself after the kernel ends, so even a killed kernel leaves no checkpoint behind.
    """
    if output_dir:
        yield Path(output_dir)
        return
    folder = Path(tempfile.mkdtemp(prefix="labkit-trainer-"))
    _SCRATCH.add(folder)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    if main and previous in (signal.SIG_DFL, None):  # a handler someone else installed is left alone
        signal.signal(signal.SIGTERM, _on_sigterm(previous))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        _SCRATCH.discard(folder)
        if main and previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def trainer_finetune(text_model: TextModel, train_ds: TextDataset, val_ds: TextDataset, *, lr: float = 2e-5,
                     weight_decay: float = 0.01, num_epochs: int = 3, batch_size: int = 16,
                     max_length: int | None = None, warmup_ratio: float = 0.1, seed: int = 0,
                     device: str | None = "auto", param_groups: list[dict] | None = None, eval_every: int = 1,
                     output_dir: str | os.PathLike | None = None, progress: bool | None = None) -> FinetuneResult:
    """Full fine-tuning with the Hugging Face Trainer recipe: AdamW at `lr`, weight decay, linear warmup/decay,
    evaluation on `val_ds` every epoch and the best epoch's weights kept (load_best_model_at_end).

    param_groups: optimizer groups (e.g. `layerwise_lr_groups(model, ...)`) for the Trainer's own optimizer, with
        its weight-decay rule (none on biases and norms): decay 1.0 gives the same run as no groups.
    eval_every: evaluate after every this many epochs (1: each epoch); the best of the evaluated epochs is kept.
        A few-shot run of many short epochs spends less time on validation with e.g. 3.
    output_dir: None (the default) keeps the best epoch's weights in memory and writes no checkpoint (the
        Trainer's folder is then a temporary one, removed however training ends; see `trainer_scratch`). A folder
        gives the Trainer's own way instead: a checkpoint there after each evaluation, the best read back at the end
        (load_best_model_at_end). Both keep the same epoch (the first of equal validation accuracies) and end with
        the same weights; the memory way saves a model-sized write per evaluation (about 0.2 s for MiniLM on 2
        cores, and no disk quota used on a shared hub).
    """
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    _check_finetune_inputs(text_model, train_ds, val_ds, lr, num_epochs)
    model, tokenizer = text_model.model, text_model.tokenizer
    max_length = int(max_length or text_model.max_length)
    device = resolve_device(device)

    def metrics(eval_pred) -> dict:
        logits, labels = eval_pred
        logits = logits[0] if isinstance(logits, tuple) else logits
        s = scores(labels, np.asarray(logits).argmax(-1))
        return {"accuracy": s["acc"], "macro_f1": s["macro_f1"]}

    with trainer_scratch(output_dir) as workdir:  # a temporary folder: removed on success, error, Ctrl-C and SIGTERM
        # warmup as a whole number of steps, rounded up as the Trainer rounds a ratio: transformers 4.x takes a ratio
        # only as warmup_ratio, 5.x only as a float warmup_steps below 1; a step count means the same in both
        per_epoch = math.ceil(len(train_ds) / batch_size)
        total_steps = per_epoch * num_epochs
        if not isinstance(eval_every, int) or isinstance(eval_every, bool) or eval_every < 1:
            raise ValueError(f"eval_every must be a whole number of epochs, 1 or more; got {eval_every!r}.")
        every = {"eval_strategy": "epoch"} if eval_every == 1 else {
            "eval_strategy": "steps", "eval_steps": per_epoch * eval_every}
        if output_dir:  # the Trainer's checkpoints, in the caller's folder
            every.update(save_strategy=every["eval_strategy"], load_best_model_at_end=True, save_total_limit=1,
                         save_only_model=True, **({"save_steps": every["eval_steps"]} if eval_every > 1 else {}))
        else:  # no checkpoints: the best weights stay in memory (_keep_best_in_memory)
            every.update(save_strategy="no")
        args = TrainingArguments(
            output_dir=str(workdir), learning_rate=lr, weight_decay=weight_decay, num_train_epochs=num_epochs,
            per_device_train_batch_size=batch_size, per_device_eval_batch_size=max(batch_size, 64),
            warmup_steps=math.ceil(warmup_ratio * total_steps), lr_scheduler_type="linear", **every,
            metric_for_best_model="accuracy", greater_is_better=True,
            logging_strategy="epoch", report_to="none", disable_tqdm=not progress_enabled(progress), seed=seed,
            data_seed=seed, use_cpu=device.type == "cpu", dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=_Tokenised(train_ds, tokenizer, max_length),
                          eval_dataset=_Tokenised(val_ds, tokenizer, max_length),
                          data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=metrics)
        if param_groups is not None:  # the Trainer keeps an optimizer it is given and only adds the schedule
            trainer.optimizer = _trainer_optimizer(trainer, model, param_groups)
        trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; the epochs come back in the result
        keep = None if output_dir else _keep_best_in_memory("eval_accuracy")
        if keep is not None:
            trainer.add_callback(keep)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        with hub_progress(progress):  # e.g. the "writing model shards" bar of each checkpoint (output_dir given)
            trainer.train()
        if keep is not None:
            keep.restore(trainer.model)
    seconds = time.perf_counter() - start
    model = trainer.model
    epochs: dict[int, dict] = {}
    for entry in trainer.state.log_history:  # one "loss" entry and one "eval_*" entry per epoch
        epoch = int(round(entry.get("epoch", 0)))
        if "loss" in entry:
            epochs.setdefault(epoch, {"epoch": epoch})["train_loss"] = entry["loss"]
        if "eval_accuracy" in entry:
            epochs.setdefault(epoch, {"epoch": epoch}).update(
                val_loss=entry["eval_loss"], val_acc=entry["eval_accuracy"], val_macro_f1=entry["eval_macro_f1"])
    rows = [epochs[e] for e in sorted(epochs) if e > 0]
    best = max(range(len(rows)), key=lambda i: rows[i].get("val_acc", -1)) + 1 if rows else None
    if device.type == "cuda":
        peak = bytes_to_mb(torch.cuda.max_memory_allocated(device))
    else:
        peak = training_memory_mb(model, make_text_loader(train_ds, tokenizer, batch_size, max_length))
    return FinetuneResult(model=model, epochs=rows, seconds=seconds,
                          trainable_params=count_parameters(model, trainable_only=True),
                          total_params=count_parameters(model), peak_mem_mb=peak, best_epoch=best)


def _keep_best_in_memory(metric: str):
    """A Trainer callback with labkit's `KeepBest` rule (a strictly higher `metric` replaces the kept weights, so the
    first of equals stays, as the Trainer's load_best_model_at_end compares) that copies the weights at each better
    evaluation and puts the best back with `restore(model)`: the best-model rule without a checkpoint on disk. The
    copy sits on the CPU, so a GPU run pays no GPU memory for it."""
    from transformers import TrainerCallback

    from labkit.callbacks import KeepBest

    class KeepBestInMemory(TrainerCallback):
        def __init__(self):
            self.rule = KeepBest(monitor=metric, mode="max")  # holds best_value and best_state

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            value = (metrics or {}).get(metric)
            if value is not None and model is not None and self.rule._better(value):
                self.rule.best_value = value
                self.rule.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

        def restore(self, model: nn.Module) -> None:
            if self.rule.best_state is not None:  # nothing when no evaluation ran
                model.load_state_dict(self.rule.best_state)

    return KeepBestInMemory()


def _trainer_optimizer(trainer, model: nn.Module, param_groups: list[dict]) -> torch.optim.Optimizer:
    """The optimizer the Trainer would build (its class, betas and eps, and its rule of no weight decay on biases and
    norms), over `param_groups`' learning rates: with one LR in every group it is the Trainer's default optimizer,
    so a layer-wise decay of 1.0 reproduces a plain Trainer run."""
    decays = set(trainer.get_decay_parameter_names(model))
    decayed = {id(p) for n, p in model.named_parameters() if n in decays}
    groups = []
    for group in param_groups:
        rest = {k: v for k, v in group.items() if k not in ("name", "params", "weight_decay")}
        params = [p for p in group["params"] if p.requires_grad]
        weight_decay = group.get("weight_decay", trainer.args.weight_decay)
        for share, wd in (([p for p in params if id(p) in decayed], weight_decay),
                          ([p for p in params if id(p) not in decayed], 0.0)):
            if share:
                groups.append({**rest, "params": share, "weight_decay": wd})
    cls, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, model)
    return cls(groups, **kwargs)


def fit_finetune(text_model: TextModel, train_ds: TextDataset, val_ds: TextDataset, *, lr: float = 2e-5,
                 weight_decay: float = 0.01, num_epochs: int = 3, batch_size: int = 16, max_length: int | None = None,
                 warmup_ratio: float = 0.1, param_groups=None, model: nn.Module | None = None, seed: int = 0,
                 device: str | None = "auto", callbacks: Sequence = (), progress: bool | None = None
                 ) -> FinetuneResult:
    """The Trainer recipe on labkit's one loop: AdamW, weight decay, linear warmup/decay, gradient clipping at 1,
    evaluation every epoch and the best epoch's weights restored.

    param_groups: e.g. `layerwise_lr_groups` (a callable(model) -> groups is fine too).
    model: train this module instead of text_model.model (e.g. `add_lora(text_model.model)`).
    """
    _check_finetune_inputs(text_model, train_ds, val_ds, lr, num_epochs)
    model = model if model is not None else text_model.model
    max_length = int(max_length or text_model.max_length)
    train_loader = make_text_loader(train_ds, text_model.tokenizer, batch_size, max_length, shuffle=True, seed=seed)
    val_loader = make_text_loader(val_ds, text_model.tokenizer, max(batch_size, 64), max_length)
    total_steps = len(train_loader) * num_epochs
    # never stops early, only keeps the best epoch (the Trainer's load_best_model_at_end)
    recipe = [LRSchedule("linear", warmup_steps=math.ceil(warmup_ratio * total_steps)), GradientClipping(1.0),
              KeepBest(monitor="val_acc"), *callbacks, MeasureMemory(), ProgressBar(enabled=progress)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PEFT_DEPRECATION, category=FutureWarning)
        history = fit(model, train_loader, val_loader, num_epochs=num_epochs, lr=lr, weight_decay=weight_decay,
                      param_groups=param_groups, callbacks=recipe, device=device)
    best = history.best_epoch + 1 if history.best_epoch is not None else None
    return FinetuneResult(model=model, epochs=history.epochs, seconds=history.seconds,
                          trainable_params=history.trainable_params, total_params=history.total_params,
                          peak_mem_mb=history.peak_mem_mb, best_epoch=best)
