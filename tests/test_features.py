"""The feature-extraction fast path: cached features, heads on features, and the pretrained-vs-random probe."""
import numpy as np
import pytest

import labkit
from labkit import data, features
from labkit.hooks import count_calls, record_activations


@pytest.fixture(scope="module")
def fashion():
    train = data.fashion_mnist("train").few_shot(50, seed=0)
    test = data.fashion_mnist("test").sample(500, seed=0)
    return train, test


def test_pretrained_probe_beats_random_init_by_five_points(fashion, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    train, test = fashion
    acc = {}
    for pretrained in (True, False):
        labkit.seed_everything(0)  # the random init is seeded: the same draw every run
        bb = labkit.load_backbone("efficientnet_lite0", pretrained=pretrained)
        Xtr, ytr = features.extract_features(bb, train, size=112, progress=False)
        Xte, yte = features.extract_features(bb, test, size=112, progress=False)
        acc[pretrained] = features.linear_probe(Xtr, ytr, Xte, yte)
    assert acc[True] >= acc[False] + 0.05, acc


def test_second_extraction_does_not_run_the_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    features.clear_memory_cache()
    ds = data.digits("test").few_shot(4)
    bb = labkit.load_backbone("efficientnet_lite0")
    with count_calls(bb.net.conv_stem) as counter:
        X1, _ = features.extract_features(bb, ds, size=32, progress=False)
        first = counter["calls"]
        X2, _ = features.extract_features(bb, ds, size=32, progress=False)
        assert counter["calls"] == first > 0  # memory hit
        features.clear_memory_cache()
        X3, _ = features.extract_features(bb, ds, size=32, progress=False)
        assert counter["calls"] == first  # disk hit
    assert np.array_equal(X1, X2) and np.array_equal(X1, X3)
    assert list(tmp_path.glob("features/*.npz"))
    # a different depth, resolution or set of weights is a different key
    other = labkit.load_backbone("efficientnet_lite0", pretrained=False)
    assert len({features.feature_key(bb, ds, None, 32), features.feature_key(bb, ds, "stage3", 32),
                features.feature_key(bb, ds, None, 48), features.feature_key(other, ds, None, 32)}) == 4


def test_a_new_classifier_keeps_the_feature_key_and_a_changed_body_does_not():
    """02 gives every run a fresh, seeded head (reset_head) on the same pretrained body: the pooled features never
    pass through the head, so they must be found in the cache whatever head the copy carries."""
    import copy

    import torch

    ds = data.digits("test").few_shot(2)
    bb = labkit.load_backbone("efficientnet_lite0")
    fresh_head = copy.deepcopy(bb)
    torch.manual_seed(1)
    fresh_head.reset_head(3)
    assert features.feature_key(fresh_head, ds, None, 32) == features.feature_key(bb, ds, None, 32)
    tuned = copy.deepcopy(bb)
    with torch.no_grad():
        tuned.net.conv_stem.weight.add_(1e-3)  # one step of fine-tuning in the body: new features, a new key
    assert features.feature_key(tuned, ds, None, 32) != features.feature_key(bb, ds, None, 32)
    # the same weights in the default layout round differently: a cache filled in channels_last never answers it
    plain = copy.deepcopy(bb).use_memory_format(torch.contiguous_format)
    assert features.feature_key(plain, ds, None, 32) != features.feature_key(bb, ds, None, 32)


def test_train_head_on_cached_features():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 16)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    for kind in ("linear", "mlp"):
        head, hist = features.train_head(X[:150], y[:150], X[150:], y[150:], kind=kind, num_epochs=40, lr=3e-2)
        assert hist.last("val_acc") > 0.85, kind


def test_activation_hooks_are_always_removed():
    import torch

    bb = labkit.load_backbone("efficientnet_lite0", pretrained=False)
    modules = {n: bb.depth_modules()[n] for n in ("stage2", "stage5")}
    with record_activations(modules) as acts:
        bb(torch.zeros(1, 3, 64, 64))
    assert acts["stage2"].shape[1] == 24 and acts["stage5"].shape[1] == 112
    assert all(not m._forward_hooks for m in modules.values())
    with pytest.raises(ValueError):
        with record_activations(modules):
            bb(torch.zeros(1, 1, 64, 64))  # fails inside the block...
    assert all(not m._forward_hooks for m in modules.values())  # ...and the hooks are still gone


def test_choose_C_looks_at_validation_only_and_prefers_more_regularisation_on_ties():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=80) > 0).astype(np.int64)
    C = features.choose_C(X[:40], y[:40], X[40:60], y[40:60], Cs=(10.0, 0.01, 1.0))
    val = {c: float(features.linear_probe(X[:40], y[:40], X[40:60], y[40:60], C=c)) for c in (0.01, 1.0, 10.0)}
    assert val[C] == max(val.values()) and C == min(c for c, v in val.items() if v == max(val.values()))
    with pytest.raises(ValueError, match="validation"):
        features.choose_C(X[:40], y[:40], X[:0], y[:0])
