"""labkit.resolution: the sizes a notebook's rows run at, fitted to the images it is given."""
from pathlib import Path

import numpy as np

from labkit.data.base import ImageDataset
from labkit.resolution import LADDER, fit_resolutions, majority_floor_note, native_px
from labkit.strategies import Strategy

FE = Strategy("feature extraction", head_epochs=3)
FT = Strategy("full fine-tune", num_epochs=1)


def images(n: int, px: int, source_px: int | None = None) -> ImageDataset:
    return ImageDataset(np.zeros((n, px, px, 3), np.uint8), np.arange(n) % 2, ["a", "b"], "x", source_px)


def test_small_images_run_every_row_at_the_tiers_size():
    fit = fit_resolutions(images(500, 28), tier_px=64, weights_px=224, pixel_budget=500 * 64 * 64)
    assert (fit.features, fit.network, fit.native) == (64, 64, 28) and not fit.differ
    assert fit.of(FE) == fit.of(FT) == 64


def test_a_size_asked_for_is_used_for_every_row():
    fit = fit_resolutions(images(100, 224, source_px=400), tier_px=64, weights_px=224, requested=96,
                          pixel_budget=500 * 64 * 64)
    assert (fit.features, fit.network) == (96, 96) and "as asked" in fit.reason


def test_large_images_get_the_weights_size_for_frozen_rows_and_the_budget_for_network_rows():
    # 100 training images: 500 x 64^2 pixels allow 143 px each, so the largest ladder size under it, 128
    fit = fit_resolutions(images(100, 224, source_px=375), tier_px=64, weights_px=224, pixel_budget=500 * 64 * 64)
    assert (fit.features, fit.network, fit.native) == (224, 128, 375) and fit.differ
    assert fit.of(FE) == 224 and fit.of(FT) == 128
    assert "frozen-feature rows at the weights' 224 px" in fit.reason and "at 128 px" in fit.reason
    assert "100 training images" in fit.reason
    # more images, a smaller size; never below the tier's, however many
    assert fit_resolutions(images(400, 224, 375), tier_px=64, weights_px=224, pixel_budget=500 * 64 * 64).network == 64
    assert fit_resolutions(images(5000, 224, 375), tier_px=64, weights_px=224, pixel_budget=500 * 64 * 64).network == 64
    # no budget (the full tier): the network rows at the images' own size, up to the weights'
    assert fit_resolutions(images(100, 224, 375), tier_px=112, weights_px=224).network == 224
    assert fit_resolutions(images(100, 150, 150), tier_px=112, weights_px=224).network == max(
        px for px in LADDER if px <= 150)


def test_the_native_size_is_the_files_not_the_arrays():
    assert native_px(images(4, 224, source_px=375)) == 375
    assert native_px(images(4, 28)) == 28
    assert images(4, 224, source_px=375).subset([0, 1]).source_px == 375  # subsets keep it


def test_a_folder_keeps_its_images_own_size_up_to_224(tmp_path: Path):
    from PIL import Image

    from labkit.data.images import image_folder

    for name, (w, h) in (("small", (150, 100)), ("large", (400, 300))):
        for cls in ("a", "b"):
            (tmp_path / name / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (w, h), (i * 40, 90, 30)).save(tmp_path / name / cls / f"{i}.png")
    small, large = image_folder(tmp_path / "small"), image_folder(tmp_path / "large")
    assert small.images.shape[1:] == (100, 100, 3) and small.source_px == 100
    assert large.images.shape[1:] == (224, 224, 3) and large.source_px == 300
    assert image_folder(tmp_path / "large", size=64).images.shape[1:] == (64, 64, 3)


def test_the_majority_floor_sentence_appears_only_at_the_floor():
    labels = np.array([0] * 70 + [1] * 83)  # the larger class is 54 % of 153 test images
    at_floor = majority_floor_note("scratch", 83 / 153, labels, n_steps=48)
    assert at_floor.startswith("scratch did not leave the majority-class floor: 0.542 against 0.542")
    assert "48 optimizer steps" in at_floor
    assert majority_floor_note("scratch", 0.60, labels) != ""  # inside the noise of the floor: not left
    assert majority_floor_note("scratch", 0.75, labels) == ""
    ten = np.arange(1000) % 10
    assert majority_floor_note("scratch", 0.55, ten) == ""


def test_label_curve_gives_each_strategy_its_size(monkeypatch):
    import labkit.strategies as st

    seen = {}
    monkeypatch.setattr(st, "run_strategy", lambda s, mb, tr, te, **kw: seen.setdefault(s.name, kw["size"]) and
                        type("R", (), {"test_acc": 0.5})())
    fit = fit_resolutions(images(100, 224, 300), tier_px=64, weights_px=224, pixel_budget=500 * 64 * 64)
    out = st.label_curve([FE, FT], None, images(20, 96), None, [2], size_of=fit.of, size=64)
    assert seen == {"feature extraction": 224, "full fine-tune": 128}
    assert out == {"feature extraction": {2: 0.5}, "full fine-tune": {2: 0.5}}
