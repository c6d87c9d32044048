"""The source registry (labkit.sources) and the per-source reproduction reports (labkit.tools.reproductions)."""
import json
import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from labkit import sources
from labkit.sources import SETTINGS, SOURCES, cite, resolve, setting_for
from labkit.tools.reproductions import outcome, write_reports

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
# a claim id as the notebooks declare it: the first string of a ledger call (f-string fields become "*")
_CALL = re.compile(r"(?:ledger\.(?:compare|value|demonstrate|not_measured)|compare_if_learnt)\(\s*"
                   r"(?:(?:\[[^\]]*\]|\w+),\s*){0,2}(f?)\"([^\"]+)\"")
# library helpers that declare a notebook's claims in a loop (03's LR steps and mitigations)
CLAIM_HELPERS = [SOLUTIONS.parent / "labkit" / "forgetting.py"]


def declared_ids() -> set[str]:
    """Every claim id (or id pattern, for ids made in a loop) declared in the solution notebooks."""
    ids = set()
    for path in sorted(SOLUTIONS.glob("0*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                for f, text in _CALL.findall("".join(cell["source"])):
                    ids.add(re.sub(r"\{[^}]*\}", "*", text) if f else text)
    for path in CLAIM_HELPERS:
        for f, text in _CALL.findall(path.read_text(encoding="utf-8")):
            ids.add(re.sub(r"\{[^}]*\}", "*", text) if f else text)
    return ids


def test_resolve_and_cite():
    source, section = resolve("yosinski2014 §Random Weights")
    assert source is SOURCES["yosinski2014"] and section == "Random Weights"
    assert resolve("tle") == (SOURCES["tle"], "")
    assert cite("yosinski2014 §Random Weights") == ("How transferable are features in deep neural networks? "
                                                    "(Yosinski et al., 2014), §Random Weights")
    # no year: none is printed
    assert cite("tle §Lessons Learned") == ("Transfer Learning Explained: Standing on the Shoulders of Pretrained "
                                            "Models (Abstract Algorithms), §Lessons Learned")
    assert cite("li2018") == ("Explicit Inductive Bias for Transfer Learning with Convolutional Networks "
                              "(Li, Grandvalet & Davoine, 2018)")


def test_unknown_key_is_a_sentence_naming_the_registered_keys():
    with pytest.raises(ValueError, match="not registered") as err:
        resolve("Transfer Learning Explained (Abstract Algorithms)")
    assert "tle" in str(err.value) and "asktodo" in str(err.value) and "cw" in str(err.value)


def test_registry_is_consistent():
    assert {"tle", "asktodo", "cw", "course", "mechanism"} <= set(SOURCES)
    assert all(key == s.key and s.kind in sources.KINDS for key, s in SOURCES.items())
    with pytest.raises(ValueError, match="kind"):
        sources.Source("x", "X", "someone", None, "blog")


def test_setting_for_matches_exact_ids_first_then_patterns():
    table = {"lr-step-*": "the sweep", "lr-step-special": "one step"}
    assert setting_for("lr-step-bn-frozen-0-3e-05", table) == "the sweep"
    assert setting_for("lr-step-special", table) == "one step"
    assert setting_for("unknown", table) == ""
    assert setting_for("lr-step-bn-frozen-0-3e-05") == SETTINGS["lr-step-*"]


def test_every_setting_names_a_declared_claim_and_every_declared_claim_has_one():
    declared = declared_ids()
    assert "fe-beats-scratch" in declared and "matrix-*-*" in declared  # the scan sees plain and f-string ids
    for key in SETTINGS:
        assert any(key == d or fnmatchcase(d, key) or fnmatchcase(key, d) for d in declared), \
            f"SETTINGS[{key!r}] matches no claim the notebooks declare"
    for claim_id in declared:
        if "*" in claim_id:
            assert any(fnmatchcase(claim_id, key) or fnmatchcase(key, claim_id) for key in SETTINGS), claim_id
        else:
            assert setting_for(claim_id), f"no setting for the declared claim {claim_id!r}"


def _row(claim_id, verdict, source="", ref=None, effect="0.1", low="0.05", high="0.15", **extra):
    row = {"notebook": "02_freeze_strategies", "id": claim_id, "claim": f"claim {claim_id}", "source": source,
           "article": "", "effect": effect, "low": low, "high": high, "verdict": verdict, "n_seeds": "5", **extra}
    if ref is not None:
        row["source_ref"] = ref
    return row


def test_reports_list_each_sources_claims_with_outcomes_and_counts(tmp_path):
    rows = [
        _row("fe-beats-scratch", "holds", ref="tle §From ImageNet to Chest X-Rays", article="88 % vs 61 %"),
        _row("memory-4x", "fails", ref="tle §Performance Analysis", effect="6.7", low="6.6", high="6.8", unit="x"),
        _row("two-stage-beats-fe", "unresolved: practically a tie", ref="tle §From ImageNet to Chest X-Rays",
             low="-0.02"),
        _row("filters-structured", "demonstration", ref="zeiler2014 §Convnet Visualization", effect=""),
        _row("sensible-lr-fine", "holds", ref="course §the article's counterpoint"),  # the course itself: no page
        _row("mystery", "holds", source="a blog I read once"),  # no source_ref, does not resolve: skipped
        _row("lwf-keeps-a", "holds", source="Learning without Forgetting (Li and Hoiem, 2017)"),  # older ledger
    ]
    paths = write_reports(rows, tmp_path / "reproductions", settings={"fe-beats-*": "Lite0, 50 per class"})
    assert [p.name for p in paths] == ["lihoiem2017.md", "tle.md", "zeiler2014.md"]
    tle = (tmp_path / "reproductions" / "tle.md").read_text()
    assert tle.startswith("# [Re] / [¬Re] Transfer Learning Explained")
    lines = {claim_id: next(line for line in tle.splitlines() if f"`{claim_id}`" in line)
             for claim_id in ("fe-beats-scratch", "memory-4x", "two-stage-beats-fe")}
    assert lines["fe-beats-scratch"].endswith("| reproduced |")
    assert "88 % vs 61 %" in lines["fe-beats-scratch"] and "Lite0, 50 per class" in lines["fe-beats-scratch"]
    assert "+0.100 [+0.050, +0.150]" in lines["fe-beats-scratch"]
    assert lines["memory-4x"].endswith("| not reproduced |") and "6.7x [6.6x, 6.8x]" in lines["memory-4x"]
    assert lines["two-stage-beats-fe"].endswith("| inconclusive |")
    assert "3 claim(s): 1 reproduced, 1 not reproduced, 1 inconclusive, 0 not tested." in tle
    assert "sensible-lr-fine" not in tle and "mystery" not in tle
    zeiler = (tmp_path / "reproductions" / "zeiler2014.md").read_text()
    assert "| not tested |" in zeiler and "1 claim(s): 0 reproduced, 0 not reproduced, 0 inconclusive, 1 not tested" \
        in zeiler
    assert outcome("holds (at the edge)") == "reproduced" and outcome("not measured") == "not tested"
