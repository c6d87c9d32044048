"""The model registry: real weights load strictly, preprocessing is bound, offline errors are clear."""
import pytest
import torch

import labkit
from labkit import assets
from labkit.viz import photo, top_k


@pytest.fixture(scope="module")
def lite0():
    return labkit.load_backbone("efficientnet_lite0")


def test_lite0_loads_strictly_and_knows_a_cat(lite0):
    raw = torch.load(assets.lite0_weights_path(), map_location="cpu", weights_only=True)
    mapped = {assets._lite0_key_map(k) for k in raw}
    assert mapped == set(lite0.net.state_dict())  # every tensor maps one-to-one, nothing left over
    classes = [name for name, _ in top_k(lite0, photo("chelsea"), k=5)]
    assert any("cat" in c for c in classes), classes


def test_lite0_espresso_is_confident(lite0):
    name, p = top_k(lite0, photo("coffee"), k=1)[0]
    assert name == "espresso" and p > 0.8


def test_preprocessing_is_bound_to_the_weights(lite0):
    pre = lite0.preprocessing
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    assert pre.size == 224 and pre.interpolation == "bicubic" and pre.crop_pct == 0.875
    assert pre.with_size(112).size == 112 and pre.with_size(112).mean == pre.mean


def test_depths_and_feature_widths(lite0):
    assert lite0.depth_names[0] == "stem" and lite0.depth_names[-1] == "classifier"
    x = torch.zeros(2, 3, 64, 64)
    widths = {d: lite0.features(x, d).shape[1] for d in ("stage1", "stage2", "stage3", "stage5", "stage7", "top")}
    assert widths == {"stage1": 16, "stage2": 24, "stage3": 40, "stage5": 112, "stage7": 320, "top": 1280}
    assert lite0.forward_to(torch.zeros(1, 3, 224, 224), "stage7").shape[-1] == 7


def test_random_init_is_same_architecture_different_weights(lite0):
    rand = labkit.load_backbone("efficientnet_lite0", pretrained=False)
    assert set(rand.state_dict()) == set(lite0.state_dict())
    assert not torch.equal(rand.net.conv_stem.weight, lite0.net.conv_stem.weight)
    assert rand.class_names is None


def test_backbones_run_channels_last_and_the_layout_changes_only_rounding():
    bb = labkit.load_backbone("efficientnet_lite0")
    assert bb.net.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert not bb.net.conv_stem.weight.is_contiguous()  # really laid out NHWC, not a 1x1 tensor that is both
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # an ordinary NCHW batch goes in
    with torch.inference_mode():
        fast = bb.eval().features(x, "top")
        plain = bb.use_memory_format(torch.contiguous_format).features(x, "top")
    assert bb.net.conv_stem.weight.is_contiguous()
    assert torch.allclose(fast, plain, atol=1e-4, rtol=1e-4)
    # the weights hold the same values in either layout (the hash that keys the feature cache reads values)
    assert labkit.load_backbone("efficientnet_lite0").state_dict()["net.conv_stem.weight"].equal(
        bb.state_dict()["net.conv_stem.weight"])


def test_num_classes_replaces_the_head():
    bb = labkit.load_backbone("efficientnet_lite0", num_classes=7)
    assert bb(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


def test_wrong_input_shapes_and_dtypes_are_explained(lite0):
    with pytest.raises(ValueError, match="3 channels"):
        lite0(torch.zeros(1, 1, 32, 32))
    with pytest.raises(TypeError, match="float"):
        lite0(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_unknown_asset_name_suggests_the_closest():
    with pytest.raises(KeyError, match="Did you mean 'efficientnet_lite0'"):
        labkit.load_backbone("efficientnet-lite0")
    with pytest.raises(KeyError, match="Unknown text model"):
        labkit.load_text_model("gpt-17")


def test_online_backbone_offline_names_the_embedded_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    with pytest.raises(assets.AssetUnavailableError, match="backbone='efficientnet_lite0'"):
        labkit.load_backbone("resnet50")


def test_online_text_model_offline_names_minilm(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    with pytest.raises(assets.AssetUnavailableError, match="minilm"):
        labkit.load_text_model("distilbert-base-uncased")


def test_resnet_online_path_uses_a_cached_checkpoint(tmp_path, monkeypatch):
    """The online path, exercised with a local checkpoint in torchvision's cache format (no download)."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    fixture = torchvision.models.resnet18(weights=None)
    target = assets._torch_hub_checkpoint(weights.url)
    target.parent.mkdir(parents=True)
    torch.save(fixture.state_dict(), target)
    bb = labkit.load_backbone("resnet18")
    assert torch.equal(bb.net.conv1.weight, fixture.conv1.weight)
    assert bb.preprocessing.mean == assets.IMAGENET_MEAN and bb.depth_names[1:5] == ["layer1", "layer2",
                                                                                      "layer3", "layer4"]
    assert len(bb.class_names) == 1000
    assert bb.features(torch.zeros(1, 3, 64, 64), "layer4").shape == (1, 512)
    assert assets.asset_status("resnet18") == "ready (cached)"


def test_minilm_embeds_similar_sentences_closer():
    tm = labkit.load_text_model("minilm")
    e = tm.encode(["A cat is sleeping on the sofa.", "A kitten naps on the couch.",
                   "The central bank raised interest rates again."])
    sims = e @ e.T
    assert sims[0, 1] > sims[0, 2] + 0.3 and sims[0, 1] > sims[1, 2] + 0.3


def test_minilm_classifier_head(tmp_path):
    tm = labkit.load_text_model("minilm", num_labels=3)
    batch = tm.tokenizer(["hello world"], return_tensors="pt")
    assert tm.model(**batch).logits.shape == (1, 3)


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = "import sys, labkit; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
