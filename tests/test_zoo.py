"""labkit's own source models: shipped, hash-checked, and genuinely trained on the source task."""
import json
import shutil

import torch

from labkit import zoo
from labkit.data import make_loader
from labkit.train import evaluate


def test_shipped_source_model_loads_and_knows_its_task():
    model = zoo.fashion_source_model(verbose=False)
    assert model.depth_names == ["block1", "block2", "block3", "classifier"]
    meta = json.loads((zoo.SHIPPED_DIR / "fashion04.json").read_text())
    assert meta["sha256"] == zoo._sha256(zoo.SHIPPED_DIR / "fashion04.safetensors")
    test = zoo.source_task_data("test").sample(1000, seed=0)
    acc = evaluate(model, make_loader(test, model, batch_size=500), device="cpu")["acc"]
    assert acc > 0.8 and abs(acc - meta["source_test_acc"]) < 0.05


def test_a_corrupted_checkpoint_is_never_trusted(tmp_path, capsys):
    for suffix in (".safetensors", ".json"):
        shutil.copy(zoo.SHIPPED_DIR / f"fashion04{suffix}", tmp_path / f"fashion04{suffix}")
    recipe = json.loads((tmp_path / "fashion04.json").read_text())["recipe"]
    model = zoo.small_cnn(5)
    assert zoo.load_verified(model, tmp_path, "fashion04", recipe)
    raw = bytearray((tmp_path / "fashion04.safetensors").read_bytes())
    raw[-10] ^= 0xFF  # flip bits inside the last tensor
    (tmp_path / "fashion04.safetensors").write_bytes(bytes(raw))
    fresh = zoo.small_cnn(5)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    assert not zoo.load_verified(fresh, tmp_path, "fashion04", recipe)
    assert "does not match" in capsys.readouterr().out
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())
    assert not zoo.load_verified(fresh, tmp_path, "fashion04", dict(recipe, num_epochs=99), verbose=False)


def test_scrambled_source_differs_from_the_normal_one():
    a = zoo.source_task_data("test", permute_pixels=True)
    b = zoo.source_task_data("test")
    assert a.images.shape == b.images.shape and not (a.images == b.images).all()
    assert sorted(a.images[0].ravel().tolist()) == sorted(b.images[0].ravel().tolist())  # same pixels, moved
    assert zoo.scrambled_source_model(verbose=False).source_accuracy > 0.7
