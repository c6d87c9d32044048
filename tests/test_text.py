"""Text transfer: metrics, TF-IDF and frozen-embedding rows, fine-tuning recipes, LoRA, forgetting probe, corpora."""
import numpy as np
import pytest
import torch

import labkit
from labkit import features, text
from labkit.assets import AssetUnavailableError, asset_status
from labkit.data import DataUnavailableError, TextDataset, load_text_dataset
from labkit.freeze import count_parameters
from labkit.train import diverged

SPACE = ["the rocket reached orbit", "nasa launched a probe to mars", "the shuttle docked with the station",
         "astronauts walked on the moon", "a satellite entered orbit around saturn", "the telescope saw a galaxy"]
HOCKEY = ["the goalie stopped the puck", "he scored in overtime on the ice", "the team won the stanley cup",
          "a slapshot from the blue line", "the referee called icing", "the defenceman blocked the shot"]


def _toy(n: int = 6) -> TextDataset:
    texts = SPACE[:n] + HOCKEY[:n]
    return TextDataset(texts, [0] * n + [1] * n, ["space", "hockey"], "toy")


@pytest.fixture(scope="module")
def minilm():
    return labkit.load_text_model("minilm", max_length=16)


def _classifier():
    labkit.seed_everything(0)
    return labkit.load_text_model("minilm", num_labels=2, max_length=16)


def test_scores_and_majority_rate():
    s = text.scores([0, 0, 0, 1], [0, 0, 0, 0])
    assert s["acc"] == pytest.approx(0.75)
    assert s["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)  # class 1 is never predicted: its F1 is 0
    assert text.majority_rate([1, 1, 0], [1, 0, 0, 0]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="as many predictions"):
        text.scores([0, 1], [0])


def test_tfidf_baseline_separates_two_topics():
    row = text.tfidf_baseline(_toy(4), _toy(6).subset(np.array([4, 5, 10, 11])))
    assert {"acc", "macro_f1", "seconds", "trainable_params", "pred"} <= set(row)
    assert row["trainable_params"] > 0
    with pytest.raises(TypeError, match="TextDataset"):
        text.tfidf_baseline(["a text"], _toy())
    one_class = TextDataset(["a", "b"], [0, 0], ["x", "y"])
    with pytest.raises(ValueError, match="single class"):
        text.tfidf_baseline(one_class, _toy())


def test_knn_accuracy_matches_a_hand_written_nearest_neighbour():
    rng = np.random.default_rng(0)
    ref, query = rng.normal(size=(20, 8)), rng.normal(size=(10, 8))
    y_ref, y_query = rng.integers(0, 3, 20), rng.integers(0, 3, 10)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    by_hand = float((y_ref[(unit(query) @ unit(ref).T).argmax(1)] == y_query).mean())
    assert text.knn_accuracy(ref, y_ref, query, y_query, k=1) == pytest.approx(by_hand)
    assert text.knn_accuracy(ref, y_ref, ref, y_ref, k=1) == 1.0


def test_embed_is_normalised_cached_and_feeds_a_probe(minilm, monkeypatch):
    ds = _toy()
    X = text.embed(minilm, ds.texts, max_length=16, device="cpu")
    assert X.shape == (12, 384) and X.dtype == np.float32
    assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    calls = []
    original = type(minilm).encode
    monkeypatch.setattr(type(minilm), "encode", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    hits = features.STATS["memory_hits"]
    again = text.embed(minilm, ds.texts[:3], max_length=16, device="cpu")
    assert calls == [] and np.allclose(again, X[:3])  # cached: the encoder did not run
    assert features.STATS["memory_hits"] == hits + 3  # the one feature cache, one key per text
    features.clear_memory_cache()
    assert np.allclose(text.embed(minilm, ds.texts[:1], max_length=16, device="cpu"), X[:1], atol=1e-5)
    assert calls == [1]  # forgotten: the encoder ran again
    row = text.logistic_regression(X, ds.labels, X, ds.labels)
    assert row["acc"] == 1.0 and row["trainable_params"] == 384 * 1 + 1
    with pytest.raises(TypeError, match="list of texts"):
        text.embed(minilm, "one string")


def test_layerwise_lr_groups_decay_from_the_head_down():
    model = _classifier().model
    groups = text.layerwise_lr_groups(model, lr=1e-4, decay=0.5)
    assert [g["name"] for g in groups] == ["embeddings"] + [f"layer{i}" for i in range(6)] + ["classifier"]
    assert groups[-1]["lr"] == pytest.approx(1e-4)
    assert groups[0]["lr"] == pytest.approx(1e-4 * 0.5 ** 7)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="decay"):
        text.layerwise_lr_groups(model, lr=1e-4, decay=1.5)


def test_lora_trains_under_ten_percent_and_leaves_pretrained_weights_alone():
    clf = _classifier()
    lora = text.add_lora(clf.model, r=4, alpha=8)
    share = text.trainable_share(lora)
    assert 0 < share < 0.10
    frozen_before = {n: p.detach().clone() for n, p in lora.named_parameters()
                     if not p.requires_grad and "query.base_layer.weight" in n}
    adapters_before = {n: p.detach().clone() for n, p in lora.named_parameters() if "lora_B" in n}
    ds = _toy(4)
    result = text.fit_finetune(clf, ds, ds, lr=1e-2, model=lora, num_epochs=1, batch_size=8, max_length=16,
                               device="cpu", progress=False)  # 8 texts, batch 8: one step
    assert result.trainable_params == count_parameters(lora, trainable_only=True)
    assert result.trainable_share == pytest.approx(share)
    assert result.best_epoch == 1 and "val_acc" in result.epochs[0]
    named = dict(lora.named_parameters())
    assert all(torch.equal(named[n], p) for n, p in frozen_before.items())
    assert any(not torch.equal(named[n], p) for n, p in adapters_before.items())
    assert type(text.encoder_of(lora)).__name__ == "BertModel"  # the probe reaches the adapted encoder


def test_trainer_recipe_runs_one_step_and_keeps_the_best_epoch():
    clf = _classifier()
    ds = _toy(4)
    result = text.trainer_finetune(clf, ds, ds, lr=2e-5, num_epochs=1, batch_size=8, max_length=16, device="cpu",
                                   progress=False)
    assert [e["epoch"] for e in result.epochs] == [1]
    assert {"train_loss", "val_loss", "val_acc", "val_macro_f1"} <= set(result.epochs[0])
    assert result.best_epoch == 1
    assert result.trainable_params == result.total_params == count_parameters(clf.model)
    assert result.peak_mem_mb > 80  # at least the weights (22.7 M float32)
    scored = text.evaluate_text(result.model, clf.tokenizer, ds, max_length=16)
    assert 0 <= scored["acc"] <= 1 and len(scored["pred"]) == len(ds)


def test_trainer_keeps_the_best_epoch_in_memory_as_its_checkpoints_would(tmp_path, monkeypatch):
    """Without output_dir the best epoch's weights are kept in memory and no checkpoint is written; the run ends
    with exactly the weights the Trainer's own way (a checkpoint per epoch, the best read back) gives."""
    from transformers import Trainer

    train, val = _toy(6), _toy(4)
    saves = []
    save_checkpoint = Trainer._save_checkpoint
    monkeypatch.setattr(Trainer, "_save_checkpoint", lambda self, *a, **k: saves.append(1) or save_checkpoint(
        self, *a, **k))

    def run(**where):
        result = text.trainer_finetune(_classifier(), train, val, lr=1e-3, num_epochs=3, batch_size=4, max_length=16,
                                       device="cpu", progress=False, **where)
        return result, {n: p.detach().clone() for n, p in result.model.state_dict().items()}

    in_memory, weights = run()
    assert saves == []  # not one checkpoint
    on_disk, disk_weights = run(output_dir=tmp_path / "checkpoints")
    assert len(saves) == 3 and any((tmp_path / "checkpoints").glob("checkpoint-*"))
    # validation ties at 1.0 in every epoch here: both keep the first of equals, epoch 1 of 3
    assert [e["val_acc"] for e in in_memory.epochs] == [e["val_acc"] for e in on_disk.epochs]
    assert in_memory.best_epoch == on_disk.best_epoch == 1
    assert weights.keys() == disk_weights.keys()
    assert all(torch.equal(weights[k], disk_weights[k]) for k in weights)


def test_keep_best_in_memory_keeps_the_first_of_equals_and_restores_it():
    keep = text._keep_best_in_memory("eval_accuracy")
    model = torch.nn.Linear(2, 1)
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    for accuracy in (0.5, 0.5, 0.4):  # a tie and a worse epoch: neither replaces the first
        keep.on_evaluate(None, None, None, metrics={"eval_accuracy": accuracy}, model=model)
        with torch.no_grad():
            model.weight.add_(1.0)
    keep.restore(model)
    assert all(torch.equal(model.state_dict()[k], kept[k]) for k in kept)
    with torch.no_grad():
        model.weight.add_(1.0)
    better = {k: v.clone() for k, v in model.state_dict().items()}
    keep.on_evaluate(None, None, None, metrics={"eval_accuracy": 0.6}, model=model)
    with torch.no_grad():
        model.weight.add_(1.0)
    keep.restore(model)
    assert all(torch.equal(model.state_dict()[k], better[k]) for k in better)


def test_trainer_evaluates_every_few_epochs_when_asked():
    clf = _classifier()
    ds = _toy(4)  # 8 texts: one step per epoch at batch 8
    result = text.trainer_finetune(clf, ds, ds, lr=2e-5, num_epochs=4, batch_size=8, max_length=16, device="cpu",
                                   eval_every=2, progress=False)
    assert [e["epoch"] for e in result.epochs] == [1, 2, 3, 4]
    assert [e["epoch"] for e in result.epochs if "val_acc" in e] == [2, 4]  # validation after epochs 2 and 4 only
    assert result.best_epoch in (2, 4)
    with pytest.raises(ValueError, match="eval_every"):
        text.trainer_finetune(clf, ds, ds, num_epochs=1, batch_size=8, max_length=16, device="cpu", eval_every=0)


def test_layer_groups_at_decay_one_give_the_trainers_own_run_and_a_decay_changes_it():
    """04's layer-wise LR decay is judged against the Trainer's plain run at the same base LR: with a decay of 1.0
    the groups must reproduce that run exactly (the Trainer's optimizer and its no-decay rule for biases and
    norms), so the pair differs only in the decay."""
    ds = _toy(6)

    def run(decay):
        clf = _classifier()
        groups = None if decay is None else text.layerwise_lr_groups(clf.model, lr=1e-3, decay=decay,
                                                                     weight_decay=0.1)
        result = text.trainer_finetune(clf, ds, ds, lr=1e-3, weight_decay=0.1, num_epochs=1, batch_size=4,
                                       max_length=16, device="cpu", param_groups=groups, progress=False)
        return {n: p.detach().clone() for n, p in result.model.named_parameters()}

    plain, flat, decayed = run(None), run(1.0), run(0.5)
    assert plain.keys() == flat.keys()
    assert all(torch.equal(plain[n], flat[n]) for n in plain)
    embeddings = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(plain[embeddings], decayed[embeddings])


def test_embed_on_disk_is_computed_once_per_machine(minilm, monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    ds = _toy()
    X = text.embed(minilm, ds.texts, max_length=16, device="cpu", disk=True)
    assert len(list(features.cache_dir().glob("embed-*.npz"))) == 1
    features.clear_memory_cache()
    calls = []
    original = type(minilm).encode
    monkeypatch.setattr(type(minilm), "encode", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    again = text.embed(minilm, ds.texts, max_length=16, device="cpu", disk=True)
    assert calls == [] and np.array_equal(again, X)  # read back from disk: the encoder did not run
    subset = text.embed(minilm, ds.texts[1:4], max_length=16, device="cpu")  # rows of a list read from disk
    assert calls == [] and np.array_equal(subset, X[1:4])  # are in memory too: no encoder for a subset
    other = text.embed(minilm, ds.texts[:3], max_length=16, device="cpu", disk=True)  # another list: its own file
    assert calls == [] and np.array_equal(other, X[:3])
    assert len(list(features.cache_dir().glob("embed-*.npz"))) == 2
    features.clear_memory_cache()
    fresh = text.embed(minilm, ["a text no list held before"], max_length=16, device="cpu")
    assert calls == [1] and fresh.shape == (1, X.shape[1])  # an unseen text does run the encoder


def test_finetune_inputs_get_clear_errors():
    clf = _classifier()
    three = TextDataset(["a", "b", "c"], [0, 1, 2], ["x", "y", "z"])
    with pytest.raises(ValueError, match="num_labels=3"):
        text.fit_finetune(clf, three, three, num_epochs=1)
    with pytest.raises(ValueError, match="lr must be positive"):
        text.fit_finetune(clf, _toy(2), _toy(2), lr=0)
    with pytest.raises(ValueError, match="empty"):
        text.trainer_finetune(clf, _toy(2), TextDataset([], [], ["space", "hockey"]))
    with pytest.raises(TypeError, match="load_text_model"):
        text.fit_finetune(clf.model, _toy(2), _toy(2))


def test_online_only_model_offline_gives_the_registry_message(monkeypatch):
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    if asset_status("distilbert-base-uncased") == "ready (cached)":
        pytest.skip("distilbert-base-uncased is cached on this machine, so it loads offline")
    with pytest.raises(AssetUnavailableError, match="no internet: use model_name='minilm'") as info:
        labkit.load_text_model("distilbert-base-uncased", num_labels=2)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no hub stack trace chained on


def test_imdb_reads_the_aclimdb_layout_and_fails_clearly_offline(tmp_path, monkeypatch):
    for split in ("train", "test"):
        for label, review in (("pos", "a wonderful film<br />loved it"), ("neg", "dull and far too long")):
            folder = tmp_path / "aclImdb" / split / label
            folder.mkdir(parents=True)
            (folder / "0_9.txt").write_text(review, encoding="utf-8")
    ds = text.imdb("train", root=tmp_path)
    assert ds.classes == ["neg", "pos"] and list(ds.labels) == [0, 1]
    assert "<br />" not in ds.texts[1]
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LABKIT_IMDB", raising=False)
    with pytest.raises(DataUnavailableError, match="IMDB is not on this machine and there is no internet"):
        text.imdb("test", root=tmp_path / "missing")


def test_load_text_dataset_reads_a_csv_with_a_fixed_split(tmp_path):
    path = tmp_path / "reviews.csv"
    rows = [f"review number {i},{'good' if i % 2 else 'bad'}" for i in range(20)]
    path.write_text("body,sentiment\n" + "\n".join(rows) + "\n", encoding="utf-8")
    train = load_text_dataset(str(path), "train", text_column="body", label_column="sentiment")
    test = load_text_dataset(str(path), "test", text_column="body", label_column="sentiment")
    assert len(train) == 14 and len(test) == 6 and not set(train.texts) & set(test.texts)
    assert train.classes == ["bad", "good"]
    with pytest.raises(KeyError, match="Unknown text data set"):
        load_text_dataset("imbd")


@pytest.mark.parametrize("setting, bars", [("0", 0), ("1", 1)])
def test_hub_progress_bars_follow_labkit_progress(monkeypatch, capfd, setting, bars):
    """Under LABKIT_PROGRESS=0 (papermill runs) Hugging Face's "Loading weights" bar stays off: no stale progress
    widget in committed outputs; with progress on it is shown as usual."""
    monkeypatch.setenv("LABKIT_PROGRESS", setting)
    labkit.load_text_model("minilm")
    assert ("Loading weights" in capfd.readouterr().err) == bool(bars)


def test_token_lengths_and_divergence_rule(minilm):
    lengths = text.token_lengths(minilm.tokenizer, ["the rocket", "the rocket reached orbit around saturn"])
    assert lengths.dtype == np.int64 and lengths[0] < lengths[1]
    assert lengths[0] == len(minilm.tokenizer("the rocket")["input_ids"])  # [CLS] and [SEP] included
    with pytest.raises(TypeError, match="list of texts"):
        text.token_lengths(minilm.tokenizer, "one text")
    assert not diverged(0.5, 4) and diverged(np.log(4) + 0.01, 4) and diverged(float("nan"), 4)


def test_mean_pool_classifier_pools_like_the_frozen_row_and_trains_with_both_loops():
    clf = text.mean_pool_classifier(_classifier())
    assert isinstance(clf.model, text.MeanPoolClassifier) and clf.model.classifier.out_features == 2
    assert text.encoder_of(clf.model) is clf.model.encoder
    batch = clf.tokenizer(["the rocket", "the goalie stopped the puck"], padding=True, return_tensors="pt")
    # its head reads what TextModel.encode returns before normalising: the masked mean of the last hidden states
    pooled = clf.encode(["the rocket", "the goalie stopped the puck"], normalize=False)
    clf.model.eval()
    with torch.no_grad():
        logits = clf.model(**batch).logits
    torch.testing.assert_close(logits, clf.model.classifier(pooled), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        out = clf.model(**batch, labels=torch.tensor([0, 1]))
    assert out.loss is not None and out.loss.ndim == 0
    for finetune in (text.fit_finetune, text.trainer_finetune):
        labkit.seed_everything(0)
        run = finetune(text.mean_pool_classifier(_classifier()), _toy(4), _toy(6), num_epochs=1, batch_size=4,
                       max_length=16, device="cpu", progress=False)
        assert run.best_epoch == 1 and run.trainable_params == count_parameters(run.model, trainable_only=True)
        assert 0 <= text.evaluate_text(run.model, clf.tokenizer, _toy(6), 16)["acc"] <= 1
