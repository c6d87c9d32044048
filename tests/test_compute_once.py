"""Computed once per machine, also when runs overlap: a run that needs features another run is computing waits for
them and reads the file (`labkit.features.computing`), as `labkit run --jobs 2` and a batch with two workers rely on."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from labkit import data, features, probe
from labkit.assets import Backbone, Preprocessing

HERE = Path(__file__).resolve().parent


def toy_backbone() -> Backbone:
    """A small fixed network: the same weights (so the same cache keys) in every process that builds it."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(a=nn.Conv2d(3, 4, 3, 2, 1), b=nn.Conv2d(4, 6, 3, 1, 1), fc=nn.Linear(6, 2)))
    pre = Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3, size=32)
    return Backbone("toy", net, OrderedDict(a=net.a, b=net.b), "fc", pre, pretrained=False)


def tiny() -> data.ImageDataset:
    return data.digits("test").few_shot(2, seed=0)  # 20 images


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    features.clear_memory_cache()


# the other process: asks for the features another process is computing, then says what it got and what it ran
OTHER_RUN = f"""
import json, sys
sys.path.insert(0, {str(HERE)!r})
from labkit import features
from test_compute_once import tiny, toy_backbone
backbone, ds = toy_backbone(), tiny()
print("asking", flush=True)
X, y = features.extract_features(backbone, ds, size=32, device="cpu", progress=False)
print(json.dumps({{"sum": float(X.sum()), "shape": list(X.shape), "batches": features.STATS["backbone_batches"]}}))
"""


def test_a_second_process_waits_for_the_features_and_reads_them_instead_of_computing(tmp_path):
    backbone, ds = toy_backbone(), tiny()
    key = features.feature_key(backbone, ds, None, 32)
    written = np.full((len(ds), 6), 7.0, dtype=np.float32)  # not what the network computes: proves it was read
    with features.computing([key]):  # this process is "computing" the features
        other = subprocess.Popen([sys.executable, "-c", OTHER_RUN], stdout=subprocess.PIPE, text=True,
                                 env={**__import__("os").environ, "LABKIT_CACHE": str(tmp_path)})
        try:
            assert other.stdout.readline().strip() == "asking"
            time.sleep(1.5)
            assert other.poll() is None  # still waiting for this process's lock
            features.cache_put(key, written, ds.labels.copy())
        except BaseException:
            other.kill()
            raise
    out, _ = other.communicate(timeout=120)
    got = json.loads(out.strip().splitlines()[-1])
    assert other.returncode == 0
    assert got == {"sum": float(written.sum()), "shape": [len(ds), 6], "batches": 0}  # read, not computed


def test_without_a_lock_held_each_process_computes_and_the_file_is_used_next_time(tmp_path):
    backbone, ds = toy_backbone(), tiny()
    X, _ = features.extract_features(backbone, ds, size=32, device="cpu", progress=False)
    done = subprocess.run([sys.executable, "-c", OTHER_RUN], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "LABKIT_CACHE": str(tmp_path)})
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["batches"] == 0 and got["sum"] == pytest.approx(float(X.sum()), rel=1e-6)


def test_depth_features_computes_only_the_depths_the_other_run_did_not_write():
    backbone, ds = toy_backbone(), tiny()
    keys = features.feature_keys(backbone, ds, ["a", "b"], 32)
    written = np.full((len(ds), 4), 3.0, dtype=np.float32)
    result = {}
    with features.computing([keys["a"]]):
        worker = threading.Thread(target=lambda: result.update(
            probe.depth_features(backbone, ds, ["a", "b"], size=32, device="cpu", progress=False)))
        before = features.STATS["backbone_batches"]
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive() and features.STATS["backbone_batches"] == before  # waiting, nothing computed yet
        features.cache_put(keys["a"], written, ds.labels.copy())
    worker.join(timeout=60)
    assert not worker.is_alive()
    np.testing.assert_array_equal(result["a"][0], written)  # depth a: the other run's file
    assert result["b"][0].shape == (len(ds), 6) and features.STATS["backbone_batches"] > before  # depth b: computed
    np.testing.assert_array_equal(features.cache_get(keys["b"])[0][0], result["b"][0])


def test_the_locks_are_taken_in_one_order_and_released(tmp_path):
    with features.computing(["k2", "k1", "k2"]):
        held = sorted(p.name for p in (tmp_path / "features").glob("*.lock"))
    assert held == ["k1.computing.lock", "k2.computing.lock"]
    with features.computing(["k1"]):  # free again: taking it does not block
        pass
