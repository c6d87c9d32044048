"""labkit.probe: multi-depth features in one pass, layer-wise probes, receptive fields, channels, projections."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import labkit
from labkit import data, features, probe
from labkit.assets import Backbone, Preprocessing
from labkit.hooks import count_calls


def all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def toy_backbone() -> Backbone:
    """3x3 stride 2, then two 3x3 stride 1 convolutions: receptive fields 3, 7 and 11 pixels."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(a=nn.Conv2d(3, 4, 3, 2, 1), b=nn.Conv2d(4, 4, 3, 1, 1),
                                    c=nn.Conv2d(4, 4, 3, 1, 1), fc=nn.Linear(4, 2)))
    steps = OrderedDict(a=net.a, b=net.b, c=net.c)
    pre = Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3, size=32)
    return Backbone("toy", net, steps, "fc", pre, pretrained=False)


@pytest.fixture(scope="module")
def lite0():
    labkit.seed_everything(0)
    return labkit.load_backbone("efficientnet_lite0", pretrained=False)


@pytest.fixture(scope="module")
def resnet18():
    labkit.seed_everything(0)
    return labkit.load_backbone("resnet18", pretrained=False)  # random init: no download needed


@pytest.fixture()
def tiny():
    return data.digits("test").few_shot(3, seed=0)  # 30 images, 10 classes


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    probe.clear_memory_cache()
    features.clear_memory_cache()


def test_one_pass_gives_every_depth_and_matches_backbone_features(lite0, tiny):
    with count_calls(lite0.net.conv_stem) as counter:
        out = probe.depth_features(lite0, tiny, size=32, batch_size=16, progress=False)
    assert counter["calls"] == 2  # 30 images in batches of 16: one forward pass per batch for all depths
    assert list(out) == lite0.feature_depths
    loader = data.make_loader(tiny, lite0, size=32, batch_size=64)
    x, y = next(iter(loader))
    lite0.eval()
    with torch.no_grad():
        for depth in ("stem", "stage3", "top"):
            X, labels = out[depth]
            assert X.shape == (30, lite0.features(x[:1], depth).shape[1]) and X.dtype == np.float32
            np.testing.assert_allclose(X, lite0.features(x, depth).numpy(), atol=1e-5)
            assert np.array_equal(labels, y.numpy())
    assert all_hooks(lite0) == 0


def test_cache_is_shared_with_extract_features(lite0, tiny):
    first = probe.depth_features(lite0, tiny, ["stage2", "classifier"], size=32, progress=False)
    assert first["classifier"][0].shape == (30, 1000)  # the logits pass through unpooled
    assert not hasattr(probe, "STATS") and probe.feature_stats is features.STATS  # one cache, one counter
    stats = features.STATS
    batches, memory_hits, disk_hits = stats["backbone_batches"], stats["memory_hits"], stats["disk_hits"]
    again = probe.depth_features(lite0, tiny, ["stage2"], size=32, progress=False)
    assert stats["backbone_batches"] == batches and stats["memory_hits"] == memory_hits + 1  # memory hit
    X, _ = features.extract_features(lite0, tiny, depth="stage2", size=32, progress=False)
    assert stats["memory_hits"] == memory_hits + 2  # extract_features finds depth_features' result in memory
    probe.clear_memory_cache()
    probe.depth_features(lite0, tiny, ["stage2"], size=32, progress=False)
    assert stats["backbone_batches"] == batches and stats["disk_hits"] == disk_hits + 1  # disk hit
    features.clear_memory_cache()
    X_disk, _ = features.extract_features(lite0, tiny, depth="stage2", size=32, progress=False)
    assert stats["disk_hits"] == disk_hits + 2  # extract_features reads what depth_features wrote
    assert stats["backbone_batches"] == batches
    assert np.array_equal(X, again["stage2"][0]) and np.array_equal(X_disk, X)


def test_blocks_inside_a_depth_and_clear_errors(resnet18, tiny):
    out = probe.depth_features(resnet18, tiny, ["layer3.0", "stem"], size=32, cache=False, progress=False)
    assert list(out) == ["stem", "layer3.0"]  # network order
    assert out["layer3.0"][0].shape == (30, 256)
    with pytest.raises(KeyError, match="layer1"):
        probe.depth_features(resnet18, tiny, ["stage3"], size=32)  # a Lite0 name on a ResNet
    with pytest.raises(KeyError, match="no block '7'"):
        probe.depth_features(resnet18, tiny, ["layer2.7"], size=32)


def test_hooks_are_removed_even_when_the_forward_pass_fails(lite0):
    with pytest.raises(ValueError, match="3, H, W"):
        probe.activation_maps(lite0, torch.zeros(1, 1, 32, 32))  # grayscale: the backbone refuses it
    assert all_hooks(lite0) == 0
    maps = probe.activation_maps(lite0, torch.zeros(3, 64, 64), ["stem", "stage4"])
    assert maps["stem"].shape == (32, 32, 32) and maps["stage4"].shape[0] == 80
    assert all_hooks(lite0) == 0


def test_receptive_fields_are_measured_correctly():
    assert probe.receptive_fields(toy_backbone(), canvas=64) == {"a": 3, "b": 7, "c": 11}


def test_depth_table_uses_the_backbones_own_depths(resnet18):
    rows = probe.depth_table(resnet18, 112, canvas=128)
    assert [r["depth"] for r in rows] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert [r["stride"] for r in rows] == [4, 4, 8, 16, 32]
    # ResNet-18's textbook receptive fields: 11, 43, 99, 211 and 435 pixels (fields beyond the canvas are clipped)
    assert [r["receptive field (px)"] for r in rows] == [11, 43, 99, ">=128", ">=128"]
    assert [r["sees whole image"] for r in rows] == [False, False, False, True, True]
    assert rows[1]["map size"] == "28x28" and rows[1]["channels"] == 64
    assert all_hooks(resnet18) == 0


def test_first_conv_and_filter_smoothness(lite0, resnet18):
    assert probe.first_conv(lite0).weight.shape == (32, 3, 3, 3)
    assert probe.first_conv(resnet18).weight.shape == (64, 3, 7, 7)
    ramp = torch.linspace(-1, 1, 7)
    smooth = (ramp.view(1, 1, 1, 7) + ramp.view(1, 1, 7, 1)).repeat(8, 3, 1, 1)  # gentle gradients
    assert probe.filter_smoothness(smooth) > 0.8
    assert abs(probe.filter_smoothness(torch.randn(256, 3, 7, 7, generator=torch.Generator().manual_seed(0)))) < 0.05
    with pytest.raises(ValueError, match="k >= 2"):
        probe.filter_smoothness(torch.zeros(4, 3, 1, 1))


def test_channels_gaps_and_tables():
    X = np.array([[0.0, 5.0], [3.0, 1.0], [2.0, 1.0], [9.0, 1.0]])
    assert probe.top_activating(X, 0, k=2).tolist() == [3, 1]
    assert probe.pick_channels(X, 1) == [0]  # channel 0 varies most
    with pytest.raises(IndexError, match="2 channels"):
        probe.top_activating(X, 5)
    pre = {"stem": 0.5, "mid": 0.8, "top": 0.85}
    rand = {"stem": 0.5, "mid": 0.6, "top": 0.7}
    assert probe.largest_gap(pre, rand) == "mid"
    rows = probe.probe_rows({"pretrained": pre, "random init": rand})
    assert rows[1] == {"depth": "mid", "pretrained": 0.8, "random init": 0.6, "gap": 0.2}
    with pytest.raises(ValueError, match="share no depth"):
        probe.largest_gap(pre, {"other": 0.1})


def test_layerwise_probe_and_projection(resnet18, tiny):
    train, test = tiny.split(0.5, seed=0)
    acc = probe.layerwise_probe(resnet18, train, test, size=32, progress=False)
    assert list(acc) == resnet18.feature_depths and all(0.0 <= a <= 1.0 for a in acc.values())
    X, _ = probe.depth_features(resnet18, tiny, ["layer2"], size=32, progress=False)["layer2"]
    assert probe.project_2d(X).shape == (30, 2)
    assert probe.project_2d(X, method="tsne").shape == (30, 2)
    with pytest.raises(ValueError, match="pca"):
        probe.project_2d(X, method="umap")


def test_cache_keys_match_extract_features(lite0, tiny):
    keys = features.feature_keys(lite0, tiny, ["stem", "top"], 48)  # what probe.depth_features uses
    assert keys == {d: features.feature_key(lite0, tiny, d, 48) for d in ("stem", "top")}
    assert keys["stem"] != keys["top"] and features.feature_key(lite0, tiny, "stem", 32) != keys["stem"]


def test_final_features_are_shared_between_depth_features_and_extract_features(lite0, tiny):
    """depth None is the last feature depth: 01 probes a test pool at every depth, and 02's final features of the
    same pool at the same size come from that cache with the same numbers, without running the backbone again."""
    last = lite0.feature_depths[-1]
    assert features.feature_key(lite0, tiny, None, 48) == features.feature_key(lite0, tiny, last, 48)
    before_last = lite0.feature_depths[-2]
    assert features.feature_key(lite0, tiny, None, 48) != features.feature_key(lite0, tiny, before_last, 48)
    fresh, _ = features.extract_features(lite0, tiny, size=48, cache=False, progress=False)
    by_depth = probe.depth_features(lite0, tiny, [lite0.feature_depths[1], last], size=48, progress=False)
    with count_calls(lite0.net.conv_stem) as counter:
        X, y = features.extract_features(lite0, tiny, size=48, progress=False)
        features.clear_memory_cache()
        X_disk, _ = features.extract_features(lite0, tiny, size=48, progress=False)
    assert counter["calls"] == 0  # a memory hit, then a disk hit
    assert np.array_equal(X, fresh) and np.array_equal(X_disk, fresh) and np.array_equal(y, tiny.labels)
    assert np.array_equal(by_depth[last][0], fresh)


def test_a_backbone_that_redefines_features_keeps_its_own_default_key(lite0, tiny):
    class Wider(Backbone):
        def features(self, x, depth=None):  # e.g. two depths concatenated: not the last depth's pooled output
            return super().features(x, depth)

    other = Wider.__new__(Wider)
    other.__dict__.update(lite0.__dict__)
    last = lite0.feature_depths[-1]
    assert features.feature_key(other, tiny, None, 48) != features.feature_key(other, tiny, last, 48)
