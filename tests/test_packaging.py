"""Set-up files agree with each other, and results recording works."""
import json
import re
from pathlib import Path

import pytest
import tomllib
import yaml

from labkit import results

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip_list = [p for p in pip_list if not p.startswith("-e")]
    assert sorted(pip_list) == sorted(wanted), "environment.yml and pyproject.toml list different requirements"
    assert {_name(p) for p in pip_list} == {_name(p) for p in wanted}


def test_record_writes_json_next_to_the_notebook(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    path = results.record({"acc": np.float32(0.5), "curve": np.arange(3), "nan": float("nan")}, notebook="00_tour")
    assert path == tmp_path / "00_tour.results.json"
    payload = json.loads(path.read_text())
    assert payload["numbers"] == {"acc": 0.5, "curve": [0, 1, 2], "nan": None}
    explicit = results.record({"x": 1}, notebook="00_tour", path=tmp_path / "runs" / "r.json", parameters={"seed": 3})
    assert results.load(explicit)["parameters"] == {"seed": 3}
    with pytest.raises(ValueError, match="non-empty mapping"):
        results.record({}, notebook="00_tour")


def test_doctor_reports_embedded_assets_ready(capsys):
    from labkit.tools.cli import main

    assert main(["doctor", "--no-network"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"efficientnet_lite0\s+vision\s+embedded\s+ready", out)
    assert re.search(r"minilm\s+text\s+embedded\s+ready", out)
