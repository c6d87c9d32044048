"""Freeze strategies: recipes validate, each trains through fit as declared, and the helpers measure honestly."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit import zoo
from labkit.data import ImageDataset
from labkit.freeze import count_parameters
from labkit.params import tier_values
from labkit.strategies import (
    Strategy,
    _fold_head,
    article_strategies,
    backbone_factory,
    crossover,
    label_curve,
    memory_sweep,
    run_strategy,
    standard_strategies,
    training_memory,
    winner,
    with_min_steps,
)

REPO = Path(__file__).resolve().parents[1]


def tiny_images(n_per_class: int = 4, num_classes: int = 3, seed: int = 0) -> ImageDataset:
    """Separable 28x28 images: class c is a bright band in row block c."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(num_classes):
        for _ in range(n_per_class):
            img = rng.integers(0, 40, size=(28, 28))
            img[c * 9:(c + 1) * 9] += 180
            images.append(img.astype(np.uint8))
            labels.append(c)
    return ImageDataset(np.stack(images), np.array(labels), [f"c{i}" for i in range(num_classes)], "tiny")


@pytest.fixture(scope="module")
def make_small():
    torch.manual_seed(0)
    return backbone_factory(lambda pretrained: zoo.small_cnn(5))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))  # no stale features from other tests


def test_bad_recipes_get_clear_errors():
    with pytest.raises(ValueError, match="nothing to train"):
        Strategy("empty")
    with pytest.raises(ValueError, match="cannot continue into fine-tuning"):
        Strategy("x", head_epochs=2, feature_depth="block2", num_epochs=1)
    with pytest.raises(ValueError, match="decay"):
        Strategy("x", num_epochs=1, decay=2.0)
    with pytest.raises(ValueError, match="scratch"):
        Strategy("x", pretrained=False, head_epochs=2)
    with pytest.raises(ValueError, match="positive"):
        Strategy("x", num_epochs=1, lr=0)
    with pytest.raises(TypeError, match="Strategy"):
        run_strategy("scratch", None, None, None)
    with pytest.raises(ValueError, match="top_depths"):
        standard_strategies(top_depths=1)


def test_standard_strategies_declare_the_recipes_at_one_budget():
    s = standard_strategies(num_epochs=2, top_depths=3)
    assert list(s) == ["scratch", "feature extraction", "partial fine-tune (top 3)", "two-stage",
                       "two-stage, BN trained", "two-stage + augmentation", "full fine-tune, lr 1e-4",
                       "full fine-tune, lr 1e-3", "full fine-tune, lr 1e-2", "gradual unfreezing"]
    assert not s["scratch"].pretrained and s["scratch"].train_batchnorm
    assert s["two-stage"].head_epochs and s["two-stage"].scheduler == "cosine" and s["two-stage"].decay
    assert not s["two-stage"].train_batchnorm and s["two-stage, BN trained"].train_batchnorm
    assert s["two-stage + augmentation"].augment == "article" and not s["two-stage"].augment
    # every recipe that trains through the network gets the same number of epochs: equal optimizer steps
    assert {r.num_epochs for r in s.values() if r.num_epochs} == {2}
    assert s["two-stage"].budget == "30 head epochs (cached features) + 2 network epochs"
    with pytest.raises(ValueError, match="augment"):
        Strategy("x", num_epochs=1, augment="rotate")
    with pytest.raises(ValueError, match="patience"):
        Strategy("x", num_epochs=1, patience=0)


def test_steps_divergence_and_the_checkpoint_chosen_on_validation(make_small):
    train, val, test = tiny_images(8), tiny_images(4, seed=3), tiny_images(4, seed=1)
    r = run_strategy(Strategy("two", head_epochs=4, head_lr=1e-2, num_epochs=3, lr=1e-3), make_small, train, test,
                     val_ds=val, batch_size=8, device="cpu", val_every_steps=1)
    assert (r.head_steps, r.network_steps) == (4 * 3, 3 * 3) and r.steps == "12 head + 9 network steps"
    assert set(r.kept_epoch) == {"head", "network"} and 1 <= r.kept_epoch["network"] <= 3
    assert len(r.val_loss) == 4 + 3 and 0 <= r.val_acc <= 1 and not r.diverged
    # the kept network epoch is the one with the lowest validation loss
    network_val = r.val_loss[4:]
    assert r.kept_epoch["network"] == 1 + int(np.argmin(network_val))
    # by default a 3-step epoch is validated about every 16 steps: here only after the last epoch
    sparse = run_strategy(Strategy("net", num_epochs=3, lr=1e-3), make_small, train, test, val_ds=val, batch_size=8,
                          device="cpu")
    assert sparse.val_loss[:2] == [None, None] and sparse.val_loss[2] is not None  # aligned with train_loss
    assert len(sparse.val_loss) == len(sparse.train_loss) == 3 and sparse.kept_epoch == {"network": 3}
    blown = run_strategy(Strategy("blow", num_epochs=2, lr=5.0), make_small, train, test, batch_size=8, device="cpu")
    assert blown.diverged and blown.final_train_loss > np.log(3) and blown.kept_epoch == {}


def test_choose_lr_looks_at_validation_only(make_small, monkeypatch):
    from labkit import strategies

    train, val, test = tiny_images(6), tiny_images(3, seed=3), tiny_images(3, seed=1)
    seen = []
    real = strategies.run_strategy

    def spy(strategy, make, train_ds, test_ds, **kwargs):
        result = real(strategy, make, train_ds, test_ds, **kwargs)
        seen.append(result)
        return result

    monkeypatch.setattr(strategies, "run_strategy", spy)
    best, runs = strategies.choose_lr(Strategy("s", pretrained=False, num_epochs=1), [1e-3, 1e-2], make_small, train,
                                      val, test, batch_size=6, device="cpu")
    assert set(runs) == {1e-3, 1e-2} and len(seen) == 2
    assert best == max(runs, key=lambda lr: (runs[lr].val_acc, -runs[lr].val_loss_kept))
    with pytest.raises(ValueError, match="val_ds"):
        strategies.choose_lr(Strategy("s", num_epochs=1), [1e-3], make_small, train, None, test)
    # without a test set no run is scored on test: the caller scores the chosen run's kept model once
    best, runs = strategies.choose_lr(Strategy("s", pretrained=False, num_epochs=1), [1e-3, 1e-2], make_small, train,
                                      val, None, batch_size=6, device="cpu", keep_model=True)
    assert all(r.test_acc is None and r.val_acc is not None and r.model is not None for r in runs.values())
    head = run_strategy(Strategy("fe", head_epochs=2), make_small, train, None, val_ds=val, device="cpu")
    assert head.test_acc is None and head.val_acc is not None


def test_factory_loads_once_and_copies(make_small):
    a, b = make_small(True), make_small(True)
    assert a is not b
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(TypeError, match="backbone name or a callable"):
        backbone_factory(3)


def test_feature_extraction_trains_only_a_head_and_learns(make_small):
    train, test = tiny_images(6), tiny_images(4, seed=1)
    r = run_strategy(Strategy("fe", head_epochs=20, head_lr=1e-2), make_small, train, test, device="cpu")
    assert r.trainable_params == 128 * 3 + 3  # the linear head on SmallCNN's 128 pooled features
    assert r.stages == ["head"] * 20 and len(r.train_loss) == 20
    assert r.test_acc > 0.6 and r.peak_mem_mb > 0


def test_partial_fine_tune_trains_only_the_top_depths(make_small):
    train = tiny_images()
    r = run_strategy(Strategy("top", num_epochs=1, train_from="block3", decay=0.5), make_small, train, train,
                     device="cpu", keep_model=True)
    model = r.model
    expected = count_parameters(model.net.block3) + count_parameters(model.classifier)
    assert r.trainable_params == expected
    assert not any(p.requires_grad for p in model.net.block1.parameters())


def test_two_stage_starts_stage_two_from_the_trained_head(make_small):
    train = tiny_images(6)
    r = run_strategy(Strategy("two", head_epochs=30, head_lr=0.1, num_epochs=1, lr=1e-4, decay=0.5,
                              scheduler="cosine", train_batchnorm=False), make_small, train, train, device="cpu")
    assert r.stages == ["head"] * 30 + ["network"]
    # a folded, trained head: the first network epoch continues from the head's final loss, not a random head's
    assert r.train_loss[30] < 0.8 * r.train_loss[0]
    assert abs(r.train_loss[30] - r.train_loss[29]) < 0.05


def test_fold_head_matches_the_standardised_head():
    from labkit.features import train_head

    rng = np.random.default_rng(0)
    X = rng.normal(3, 2, size=(40, 6)).astype(np.float32)
    y = (X[:, 0] > 3).astype(np.int64)
    head, _ = train_head(X, y, num_epochs=2, standardize=True, device="cpu")
    linear = torch.nn.Linear(6, 2)
    _fold_head(head, linear)
    x = torch.from_numpy(X)
    assert torch.allclose(head(x), linear(x), atol=1e-4)


def test_gradual_unfreezing_grows_the_trainable_set(make_small):
    train = tiny_images()
    r = run_strategy(Strategy("gradual", num_epochs=3, gradual_every=1, decay=0.5, train_batchnorm=False),
                     make_small, train, train, device="cpu")
    trainable = [h["trainable_params"] for h in r.histories][0]
    assert trainable[0] < trainable[1] < trainable[2]
    # the peak memory is the largest step's, after the last depth was unfrozen, not the first step's
    first_only = run_strategy(Strategy("head", num_epochs=1, train_from=-1, train_batchnorm=False), make_small, train,
                              train, device="cpu")
    assert r.peak_mem_mb > first_only.peak_mem_mb
    assert r.histories[0]["peak_mem_mb"][-1] > r.histories[0]["peak_mem_mb"][0]


def test_labels_outside_the_training_classes_are_refused(make_small):
    train, test = tiny_images(num_classes=2), tiny_images(num_classes=3)
    with pytest.raises(ValueError, match="same classes"):
        run_strategy(Strategy("fe", head_epochs=1), make_small, train, test, device="cpu")


def test_freezing_cuts_measured_training_memory(make_small):
    model = make_small(True)
    x, y = torch.randn(8, 3, 28, 28), torch.randint(0, 5, (8,))
    full, frozen = training_memory(model, (x, y), 0), training_memory(model, (x, y), -1)
    assert frozen["gradients"] < full["gradients"] and frozen["activations"] < full["activations"]
    assert frozen["weights"] == full["weights"]
    assert full["total_mb"] / frozen["total_mb"] > 2
    assert all(p.requires_grad for p in model.parameters())  # the caller's model is untouched


def test_the_memory_views_are_the_one_measure_in_mb(make_small):
    from labkit.text import training_memory_mb
    from labkit.train import bytes_to_mb, measure_training_memory

    model = make_small(True)
    x, y = torch.randn(8, 3, 28, 28), torch.randint(0, 5, (8,))
    raw = measure_training_memory(model, (x, y))  # bytes, everything trainable
    parts = ["weights", "gradients", "optimizer_state", "activations", "workspace"]
    assert list(raw) == parts + ["total"] and all(isinstance(v, int) for v in raw.values())
    mb = training_memory(model, (x, y), 0)
    assert list(mb) == parts + ["total_mb"]  # the column order notebook 02 shows
    assert mb == {**{k: raw[k] / 2**20 for k in parts}, "total_mb": raw["total"] / 2**20}
    assert bytes_to_mb(3 * 2**20) == 3.0
    assert training_memory_mb(model, [(x, y)]) == raw["total"] / 2**20


def test_memory_on_the_meta_device_matches_the_cpu(make_small):
    model = make_small(True)
    x, y = torch.randn(8, 3, 28, 28), torch.randint(0, 5, (8,))
    for train_from in (0, -1):
        cpu = training_memory(model, (x, y), train_from)
        meta = training_memory(copy.deepcopy(model).to("meta"), (x.to("meta"), y.to("meta")), train_from)
        assert meta == pytest.approx(cpu, rel=1e-3, abs=1e-3)


def test_memory_sweep_starts_at_the_parameter_state_ratio_and_grows_with_the_batch(make_small):
    rows = memory_sweep(make_small(True), batch_sizes=(1, 16), sizes=(28, 56))
    assert [(r["batch"], r["px"]) for r in rows] == [(1, 28), (16, 28), (1, 56), (16, 56)]
    # weights + gradients + two AdamW states against the weights alone: 4x, whatever the batch
    assert all(r["parameter_state_ratio"] == pytest.approx(4.0, rel=0.02) for r in rows)
    by = {(r["batch"], r["px"]): r["ratio"] for r in rows}
    # activations and workspace grow with batch x pixels, so the ratio leaves the parameter state's 4x (which way
    # depends on the network: ResNet-50 rises towards 8x, a small CNN's frozen forward pass pulls it below 4x)
    assert abs(by[(1, 28)] - 4) < abs(by[(16, 28)] - 4) < abs(by[(16, 56)] - 4)
    assert all(r["full_mb"] > r["frozen_mb"] > 0 for r in rows)
    with pytest.raises(ValueError, match="batch sizes"):
        memory_sweep(make_small(True), batch_sizes=(0,))


def test_the_articles_loop_trains_the_head_through_the_augmented_network(make_small):
    recipes = article_strategies(num_depths=4)
    two, full, frozen_bn = recipes.values()
    assert two.head_through_network and two.augment == "article" and two.train_batchnorm
    assert (two.head_epochs, two.num_epochs, full.num_epochs, two.lr) == (5, 10, 5, 1e-4)
    assert two.lr * two.decay ** 3 == pytest.approx(1e-5, rel=0.01)  # 1e-4 at the head, 1e-5 at the first depth
    assert not frozen_bn.train_batchnorm and frozen_bn.num_epochs == full.num_epochs
    assert "through the network" in two.budget
    with pytest.raises(ValueError, match="head_epochs"):
        Strategy("x", head_through_network=True, num_epochs=1)
    train = tiny_images(6)
    stats = {}
    for bn in (True, False):
        r = run_strategy(two.with_(head_epochs=2, num_epochs=1, train_batchnorm=bn), make_small, train, train,
                         device="cpu", keep_model=True)
        assert r.stages == ["head", "head", "network"] and r.test_acc is not None
        stats[bn] = [m.running_mean.clone() for m in r.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    fresh = [m.running_mean for m in make_small(True).modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert stats[True] and any(not torch.equal(a, b) for a, b in zip(stats[True], fresh))  # statistics moved
    assert all(torch.equal(a, b) for a, b in zip(stats[False], fresh))  # frozen BatchNorm kept them
    head_only = run_strategy(two.with_(head_epochs=2, num_epochs=0), make_small, train, train, device="cpu")
    assert head_only.stages == ["head", "head"] and 0 <= head_only.test_acc <= 1


def test_with_min_steps_and_label_curve(make_small):
    s = Strategy("fe", head_epochs=2)
    assert with_min_steps(s, n_train=10, batch_size=5, min_steps=10).head_epochs == 5
    assert with_min_steps(s, n_train=100, batch_size=5, min_steps=10).head_epochs == 2
    pool, test = tiny_images(8), tiny_images(3, seed=2)
    curve = label_curve([s], make_small, pool, test, [1, 4], device="cpu")
    assert set(curve["fe"]) == {1, 4}
    with pytest.raises(ValueError, match="positive"):
        label_curve([s], make_small, pool, test, [0])
    assert label_curve([s], make_small, pool, test, []) == {"fe": {}}  # every size already run elsewhere


def test_crossover_and_winner():
    fe = {5: 0.6, 20: 0.7, 50: 0.75, 200: 0.8}
    ft = {5: 0.5, 20: 0.72, 50: 0.74, 200: 0.85}
    assert crossover(fe, ft) == 200  # 20 does not count: it falls behind again at 50
    assert crossover(ft, fe) is None
    # a lead inside the test set's noise is not a crossover; a clear one is
    assert crossover(fe, ft, margin=0.03) == 200
    assert crossover(fe, {**ft, 200: 0.81}, margin=0.03) is None
    with pytest.raises(ValueError, match="margin"):
        crossover(fe, ft, margin=-0.1)
    assert winner({"cheap": 0.80, "costly": 0.805}, tie=0.01) == "cheap"
    assert winner({"cheap": 0.80, "costly": 0.85}, tie=0.01) == "costly"
    with pytest.raises(ValueError):
        winner({})


def test_notebook_accepts_the_full_tier_parameters():
    """papermill can inject the full tier's parameter set; the tier cell resolves it without running anything."""
    import papermill

    nb_path = REPO / "solutions" / "02_freeze_strategies.ipynb"
    declared = papermill.inspect_notebook(str(nb_path))
    full = {"tier": "full", "device": "cuda", "backbone_name": "resnet50", "n_per_class": 50, "test_size": 5000,
            "resolution": 224, "num_epochs": 5, "curve_sizes": [5, 20, 50, 200, 500], "threads": None,
            "results_path": "02.results.json", "student_id": "ci", "seed": 1}
    assert set(full) <= set(declared), set(full) - set(declared)
    nb = json.loads(nb_path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    params_index = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", []))
    assert "".join(nb["cells"][params_index]["source"]).startswith("tier =")
    tier_cell = code[1]
    assert "labkit.tier_settings(" in tier_cell and "seed_everything" in tier_cell
    ns = {}
    exec(code[0], ns)  # the defaults
    ns.update(full)  # what papermill injects
    exec(tier_cell.replace("labkit.seed_everything(seed, threads=threads)", "pass"), ns)
    assert ns["resolution"] == 224 and ns["test_size"] == 5000 and ns["curve_sizes"] == [5, 20, 50, 200, 500]
    assert ns["cfg"]["matrix_large"] > tier_values("02_freeze_strategies", "quick")["matrix_large"]
    ns = {}
    exec(code[0], ns)
    ns["tier"] = "huge"
    with pytest.raises(ValueError, match="tier must be one of"):
        exec(tier_cell, ns)


@pytest.mark.slow
def test_notebook_runs_unchanged_on_the_full_tier_code_path(tmp_path):
    """papermill executes 02 with tier="full": 224 px, the full tier's matrix recipes (5 epochs, 120 steps at least).

    Only the number of labelled and validation images, the test sizes, the epochs, the curve and the matrix's large
    cells are made small, so that the run fits a CPU; everything else is the full tier's, and the notebook itself is
    not touched.
    """
    from labkit.tools.execution import execute_notebook

    params = {"tier": "full", "device": "cpu", "n_per_class": 3, "val_per_class": 5, "test_size": 60,
              "num_epochs": 1, "curve_sizes": [3], "threads": 2, "student_id": "ci", "matrix_large": 12,
              "matrix_test": 100, "frozen_test_size": 200}
    # frozen_test_size: section 4b's frozen rows score 200 test images, not all 10,000 (about 6 min at 112 and 224 px)
    status = execute_notebook(REPO / "solutions" / "02_freeze_strategies.ipynb", tmp_path / "out", params,
                              cwd=tmp_path, timeout=1500)
    assert status["status"] == "done", status.get("error")
    recorded = json.loads((tmp_path / "out" / "02_freeze_strategies.results.json").read_text())
    assert recorded["parameters"]["tier"] == "full" and recorded["parameters"]["resolution"] == 224
    numbers = recorded["numbers"]
    assert set(numbers["test_acc"]) == (set(standard_strategies()) | {"scratch, to a plateau"}
                                        | set(article_strategies(num_depths=2)))
    assert numbers["memory_ratio"] > 1  # measured at 224 px on this run
    assert set(numbers["matrix"]) == {"small/similar", "large/similar", "small/different", "large/different"}
    assert 0 <= numbers["matrix_agreements"] <= 4
    assert set(numbers["matrix_similarity"]) == {"similar", "different"}
    assert all(len(pair) == 2 for pair in numbers["matrix_choice"].values())
    executed = (tmp_path / "out" / "02_freeze_strategies.ipynb").read_text()
    assert "tier=full: 3 images per class, 60 test images, 224 px" in executed
    assert recorded["parameters"]["frozen_test_size"] == 200
    assert set(numbers["fe_by_resolution"]) == {"112", "224"}


def test_accuracy_noise_is_two_standard_errors_at_half():
    from labkit.strategies import accuracy_noise

    assert accuracy_noise(500) == pytest.approx(0.0447, abs=1e-4)
    assert accuracy_noise(1000) < accuracy_noise(500)
    with pytest.raises(ValueError, match="positive"):
        accuracy_noise(0)


def image_folder_with_train_and_val(root: Path, n_train: int = 12, n_val: int = 5, px: int = 48) -> Path:
    """The PyTorch tutorial's layout, root/train/<class>/ and root/val/<class>/, with three classes of shapes
    (drawn at 48 px, saved at `px`)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for cls in ("circle", "square", "bar"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                im = Image.new("RGB", (48, 48), tuple(int(v) for v in rng.integers(0, 90, 3)))
                draw, (x, y) = ImageDraw.Draw(im), rng.integers(8, 20, 2)
                colour = tuple(int(v) for v in rng.integers(150, 255, 3))
                if cls == "circle":
                    draw.ellipse([x, y, x + 20, y + 20], fill=colour)
                elif cls == "square":
                    draw.rectangle([x, y, x + 18, y + 18], fill=colour)
                else:
                    draw.rectangle([x, 2, x + 6, 46], fill=colour)
                im.resize((px, px), Image.BICUBIC).save(root / split / cls / f"{i:02d}.png")
    return root


@pytest.mark.slow
def test_notebook_runs_on_a_train_val_image_folder(tmp_path, monkeypatch):
    """dataset=<an ImageFolder with train/ and val/>: the notebook runs unchanged, validates on images held out of
    train/, tests on val/ (the folder has no test/), and every class is a shape, never a split name. Its 96 px
    images are larger than the quick tier's 64 px: feature extraction runs at the weights' 224 px, the network rows
    at the images' own 96 px (18 training images fit the tier's pixel budget at any size up to that), each row
    printed with its size."""
    from labkit.tools.execution import execute_notebook

    folder = image_folder_with_train_and_val(tmp_path / "shapes", px=96)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    params = {"dataset": str(folder), "device": "cpu", "n_per_class": 6, "test_size": 15, "num_epochs": 1,
              "curve_sizes": [3], "student_id": "ci"}
    status = execute_notebook(REPO / "solutions" / "02_freeze_strategies.ipynb", tmp_path / "out", params,
                              cwd=tmp_path, timeout=1500)
    assert status["status"] == "done", status.get("error")
    recorded = json.loads((tmp_path / "out" / "02_freeze_strategies.results.json").read_text())
    assert recorded["parameters"]["dataset"] == str(folder) and recorded["parameters"]["val_per_class"] == 4
    numbers = recorded["numbers"]
    assert set(numbers["test_acc"]) == (set(standard_strategies()) | {"scratch, to a plateau"}
                                        | set(article_strategies(num_depths=2)))
    assert all(0 <= a <= 1 for a in numbers["test_acc"].values())
    assert numbers["steps"]["two-stage"]["network"] == numbers["steps"]["scratch"]["network"]  # one budget
    executed = (tmp_path / "out" / "02_freeze_strategies.ipynb").read_text()
    assert "ImageDataset('shapes-train', n=18, image=(96, 96, 3), classes=3)" in executed  # 6 per class
    assert "ImageDataset('shapes-val', n=15, image=(96, 96, 3), classes=3)" in executed  # val/ is the test set
    assert "the images are 96 px: frozen-feature rows at the weights' 224 px" in executed
    assert "rows that train through the network at 96 px" in executed
    assert "feature extraction: validation" in executed and " s at 224 px" in executed and " s at 96 px" in executed
    assert recorded["parameters"]["resolution"] == 96
