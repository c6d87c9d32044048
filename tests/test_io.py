"""Shared cache files: atomic replaces with unique temporary names, and a lock around writers of one file."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from labkit._io import atomic_path, atomic_write_text, file_lock

REPO = Path(__file__).resolve().parents[1]

_WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import numpy as np
    from labkit import features

    go = Path(sys.argv[1])
    while not go.exists():  # start together
        time.sleep(0.005)
    X = np.arange(300_000, dtype=np.float32).reshape(1000, 300)
    y = np.arange(1000, dtype=np.int64)
    for _ in range(15):
        features.cache_put("samekey", X, y, {})
    print("ok")
""")


def test_two_processes_write_the_same_feature_cache_key_at_once(tmp_path):
    env = {**os.environ, "LABKIT_CACHE": str(tmp_path), "PYTHONPATH": str(REPO)}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(go)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    results = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    folder = tmp_path / "features"
    with np.load(folder / "samekey.npz", allow_pickle=False) as f:
        assert np.array_equal(f["X"], np.arange(300_000, dtype=np.float32).reshape(1000, 300))
        assert np.array_equal(f["y"], np.arange(1000))
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "file.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]
    assert (target.stat().st_mode & 0o777) == (0o666 & ~_umask())  # not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_file_lock_is_exclusive_between_processes(tmp_path):
    target = tmp_path / "x"
    holder = textwrap.dedent(f"""
        import time
        from labkit._io import file_lock
        with file_lock({str(target)!r}):
            print("locked", flush=True)
            time.sleep(1.0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    start = time.perf_counter()
    with file_lock(target):
        waited = time.perf_counter() - start
    proc.wait(timeout=30)
    assert waited > 0.3  # it had to wait for the other process to let go


def test_a_trained_source_model_is_written_whole_and_then_loaded(tmp_path, monkeypatch):
    import json

    from labkit import zoo

    model = zoo.train_source_model("tiny", n_train=200, num_epochs=1, verbose=False, out_dir=tmp_path)
    meta = json.loads((tmp_path / "tiny.json").read_text())
    assert meta["sha256"] == zoo._sha256(tmp_path / "tiny.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.safetensors", "tiny.safetensors.lock"]
    monkeypatch.setattr(zoo, "_train_and_save", lambda *a, **k: pytest.fail("retrained a verified model"))
    again = zoo.train_source_model("tiny", n_train=200, num_epochs=1, verbose=False, out_dir=tmp_path)
    assert again.source_accuracy == model.source_accuracy
