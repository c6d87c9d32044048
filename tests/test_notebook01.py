"""Notebook 01 runs under papermill on other data and another backbone without edits, and records its probes."""
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "01_feature_hierarchy.ipynb"
TINY = dict(n_per_class=6, test_size=12, second_n_per_class=3, second_test_size=20, resolution=32, device="cpu")


def image_folder_from_lfw(root: Path) -> Path:
    """An ImageFolder directory (root/<class>/<image>.png) of 12 faces and 12 non-faces from scikit-image."""
    from PIL import Image
    from skimage import data as skdata

    images = np.round(skdata.lfw_subset() * 255).astype(np.uint8)  # the first 100 are faces
    for label, offset in (("face", 0), ("non-face", 100)):
        (root / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(images[offset + i]).save(root / label / f"{i:02d}.png")
    return root


def run_notebook(tmp_path: Path, monkeypatch, **parameters) -> dict:
    """Execute the solutions notebook with papermill in tmp_path; return its recorded results."""
    import papermill

    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))  # a fresh feature cache: nothing stale
    monkeypatch.setenv("LABKIT_RESPONSES_DIR", str(tmp_path / "responses"))  # the quiz cell must not touch HOME
    results = tmp_path / "01.results.json"
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), cwd=str(tmp_path), kernel_name="python3",
                               progress_bar=False, parameters={**parameters, "results_path": str(results)})
    return json.loads(results.read_text())


def check_probe_numbers(record: dict, depths: list[str]) -> None:
    numbers = record["numbers"]
    for curve in ("pretrained", "random"):
        acc = numbers["probe_acc"][curve]
        assert set(acc) == set(depths), acc  # results JSON sorts keys
        assert all(0.0 <= a <= 1.0 for a in acc.values())
    assert numbers["probe_acc_pretrained_last"] == numbers["probe_acc"]["pretrained"][depths[-1]]
    assert numbers["probe_best_depth"] in depths
    assert set(numbers["second_target"]["probe_acc"]["random"]) == set(depths)


@pytest.mark.slow
def test_runs_on_an_image_folder(tmp_path, monkeypatch):
    folder = image_folder_from_lfw(tmp_path / "faces")
    record = run_notebook(tmp_path, monkeypatch, dataset=str(folder), **TINY)
    assert record["parameters"]["dataset"] == str(folder)
    check_probe_numbers(record, ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["top"])


@pytest.mark.slow
def test_runs_with_resnet18(tmp_path, monkeypatch):
    """backbone='resnet18' is the online path: stand in for the download with a checkpoint in torch hub's cache."""
    import torch
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    checkpoint = tmp_path / "torch" / "hub" / "checkpoints" / Path(url).name
    checkpoint.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), checkpoint)  # right format, random values
    record = run_notebook(tmp_path, monkeypatch, backbone_name="resnet18", dataset="lfw_subset", **TINY)
    check_probe_numbers(record, ["stem", "layer1", "layer2", "layer3", "layer4"])
