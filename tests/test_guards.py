"""Every guard fires on the broken setup and stays quiet on the fixed one."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from labkit import guards
from labkit.assets import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from labkit.data import ImageDataset, make_loader
from labkit.features import make_head
from labkit.freeze import freeze_to
from labkit.train import evaluate, fit
from labkit.zoo import small_cnn

LITE0 = Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3, size=32)
IMAGENET = Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD, size=32)


def _images(n=40, size=32, seed=0, rgb=True):
    """Random pictures with some dark and some bright pixels, like any real batch."""
    rng = np.random.default_rng(seed)
    shape = (n, size, size, 3) if rgb else (n, size, size)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _dataset(n=40, size=32, seed=0, rgb=True):
    return ImageDataset(_images(n, size, seed, rgb), np.arange(n) % 4, ["a", "b", "c", "d"])


def _quiet(fn, *args, **kwargs):
    """Call fn and fail if it warns."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", guards.GuardWarning)
        return fn(*args, **kwargs)


# ---------------------------------------------------------------- input statistics
@pytest.mark.parametrize("pre", [LITE0, IMAGENET])
def test_input_statistics_quiet_on_the_backbones_own_preprocessing(pre):
    report = _quiet(guards.check_input_statistics, make_loader(_dataset(), pre, batch_size=16), pre)
    assert report.ok and report.looks_like == []


@pytest.mark.parametrize("pre", [LITE0, IMAGENET])
def test_input_statistics_fires_on_no_normalisation(pre):
    x = torch.from_numpy(_images()).permute(0, 3, 1, 2).float() / 255  # [0, 1], never normalised
    with pytest.warns(guards.GuardWarning, match="no normalisation"):
        report = guards.check_input_statistics((x, None), pre)
    assert not report.ok


@pytest.mark.parametrize("pre", [LITE0, IMAGENET])
def test_input_statistics_fires_on_double_normalisation(pre):
    x, _ = next(iter(make_loader(_dataset(), pre, batch_size=40)))
    with pytest.warns(guards.GuardWarning, match="normalised twice"):
        guards.check_input_statistics(pre.normalize(x), pre)


def test_input_statistics_fires_on_another_models_statistics():
    x, _ = next(iter(make_loader(_dataset(), IMAGENET, batch_size=40)))
    with pytest.warns(guards.GuardWarning, match="ImageNet"):
        guards.check_input_statistics(x, LITE0)
    x, _ = next(iter(make_loader(_dataset(), LITE0, batch_size=40)))
    with pytest.warns(guards.GuardWarning, match="0.5"):
        guards.check_input_statistics(x, IMAGENET)


def test_input_statistics_fires_on_unscaled_bytes():
    x = torch.from_numpy(_images()).permute(0, 3, 1, 2).float()
    with pytest.warns(guards.GuardWarning, match="0-255"):
        guards.check_input_statistics(x, LITE0)


def test_input_statistics_accepts_a_backbone_and_rejects_nonsense():
    model = small_cnn(4)
    ds = ImageDataset(_images(40, 28, rgb=False), np.arange(40) % 4, list("abcd"))
    assert _quiet(guards.check_input_statistics, make_loader(ds, model), model).ok
    with pytest.raises(TypeError, match="Backbone"):
        guards.check_input_statistics(torch.zeros(2, 3, 4, 4), object())


# ---------------------------------------------------------------- channels and resolution
def test_channels_fire_on_grayscale_and_on_one_filled_channel():
    gray = torch.rand(8, 1, 32, 32)
    with pytest.warns(guards.GuardWarning, match="3 channels"):
        assert guards.check_channels(gray)
    one_channel = torch.cat([gray * 2 - 1, -torch.ones(8, 2, 32, 32)], dim=1)  # gray in red, the rest empty
    with pytest.warns(guards.GuardWarning, match="constant"):
        assert guards.check_channels(one_channel)
    assert _quiet(guards.check_channels, gray.expand(-1, 3, -1, -1)) == []


def test_resolution_fires_far_from_the_weights_size():
    with pytest.warns(guards.GuardWarning, match="28x28"):
        assert guards.check_resolution(torch.rand(2, 3, 28, 28), LITE0.with_size(224))
    assert _quiet(guards.check_resolution, torch.rand(2, 3, 160, 160), LITE0.with_size(224)) == []
    assert _quiet(guards.check_resolution, torch.rand(2, 3, 28, 28), LITE0.with_size(224), size=32) == []


# ---------------------------------------------------------------- eval mode
def test_eval_mode_check_fires_in_train_mode_and_not_in_eval_mode():
    model = nn.Sequential(make_head(8, 3, kind="mlp"), nn.BatchNorm1d(3))
    model.train()
    with pytest.warns(guards.GuardWarning, match="train mode"):
        assert len(guards.check_eval_mode(model)) == 2
    with pytest.raises(RuntimeError, match=r"model\.eval\(\)"):
        guards.assert_eval_mode(model)
    model.eval()
    assert _quiet(guards.check_eval_mode, model) == []
    guards.assert_eval_mode(model)


def test_evaluate_is_the_fix_it_leaves_the_mode_alone_and_is_deterministic():
    torch.manual_seed(0)
    model = nn.Sequential(make_head(8, 3, kind="mlp"))
    loader = [(torch.randn(16, 8), torch.randint(0, 3, (16,)))]
    model.train()
    assert evaluate(model, loader) == evaluate(model, loader)
    assert model.training


# ---------------------------------------------------------------- frozen BatchNorm
def _bn_setup():
    torch.manual_seed(0)
    model = small_cnn(4)
    freeze_to(model, "classifier")  # a frozen backbone: only the head trains
    ds = ImageDataset(_images(32, 28, rgb=False), np.arange(32) % 4, list("abcd"))
    return model, make_loader(ds, model, batch_size=16, shuffle=True)


def test_frozen_batchnorm_guard_fires_when_bn_trains():
    model, loader = _bn_setup()
    guard = guards.FrozenBatchNormGuard()
    with pytest.warns(guards.GuardWarning, match="not frozen"):
        fit(model, loader, num_epochs=1, bn_policy="train", callbacks=[guard], device="cpu")
    assert guard.moved and min(guard.moved.values()) > 0


def test_frozen_batchnorm_guard_quiet_when_bn_frozen():
    model, loader = _bn_setup()
    reference = guards.batchnorm_state(model)
    guard = guards.FrozenBatchNormGuard()
    _quiet(fit, model, loader, num_epochs=1, bn_policy="freeze", callbacks=[guard], device="cpu")
    assert guard.moved == {}
    assert max(guards.batchnorm_drift(model, reference).values()) == 0.0


def test_trainable_batchnorm_is_allowed_to_move():
    model, loader = _bn_setup()
    freeze_to(model, 0)  # full fine-tune: BN statistics are supposed to adapt
    reference = guards.batchnorm_state(model)
    fit(model, loader, num_epochs=1, device="cpu")
    assert max(guards.batchnorm_drift(model, reference).values()) > 0
    assert _quiet(guards.check_frozen_batchnorm, model, reference) == {}


# ---------------------------------------------------------------- near-duplicates
def _textured(n, seed):
    """Smooth blobs with fine texture: distinct pictures that still look alike at a glance."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    blob = 150 * np.exp(-((yy - 14) ** 2 + (xx - 14) ** 2) / 60.0)
    return np.clip(blob + rng.normal(0, 25, (n, 28, 28)), 0, 255).astype(np.uint8)


def test_near_duplicates_found_across_splits_and_not_between_distinct_images():
    train, test = _textured(50, 0), _textured(20, 1)
    assert _quiet(guards.check_no_duplicates, train, test) == []
    rng = np.random.default_rng(2)
    leaked = test.copy()
    leaked[:5] = train[[3, 7, 11, 19, 42]]
    leaked[:5] = np.clip(leaked[:5] * 0.95 + 8 + rng.normal(0, 2, leaked[:5].shape), 0, 255).astype(np.uint8)
    with pytest.warns(guards.GuardWarning, match="5 of 20"):
        pairs = guards.check_no_duplicates(train, leaked)
    assert [(i, j) for i, j, _ in pairs] == [(0, 3), (1, 7), (2, 11), (3, 19), (4, 42)]
    ds_train = ImageDataset(train, np.zeros(50), ["x"])
    ds_test = ImageDataset(leaked, np.zeros(20), ["x"])
    assert len(guards.find_near_duplicates(ds_train, ds_test)) == 5


def test_show_guard_prints_the_warning_as_text_and_says_when_quiet(capsys):
    model = nn.Sequential(nn.Dropout(0.5))
    assert guards.show_guard(guards.check_eval_mode, model) == ["0"]
    assert "GUARD check_eval_mode" in capsys.readouterr().out
    model.eval()
    assert _quiet(guards.show_guard, guards.check_eval_mode, model) == []
    assert "quiet" in capsys.readouterr().out


def test_low_resolution_note_and_warning(capsys):
    assert guards.low_resolution_note(112, 224) == "" and guards.low_resolution_note(None, 224) == ""
    note = guards.low_resolution_note(16, 224)
    assert note == ("judged at 16 px, 14x below the 224 px the weights were trained at, where pretrained features "
                    "lose much of their advantage")
    assert guards.warn_low_resolution(16, 224, "efficientnet_lite0") == note
    out = capsys.readouterr().out
    assert out.startswith("WARNING: resolution=16 px is 14x below the 224 px the efficientnet_lite0 weights")
    assert out.count("\n") == 1 and "Use resolution=112 or more" in out
    assert guards.warn_low_resolution(224, 224) == "" and capsys.readouterr().out == ""
    assert guards.weights_resolution("efficientnet_lite0") == 224
