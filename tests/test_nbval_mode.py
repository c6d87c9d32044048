"""Notebook outputs are compared exactly on the CPU kind they were recorded on, with numbers masked elsewhere."""
import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

from labkit.repro import cpu_signature, run_signature
from labkit.tools.nbval_mode import outputs_comparable

TESTS = Path(__file__).parent


def sanitize(text: str, *cfgs: str) -> str:
    for cfg in cfgs:
        for regex, replace in get_sanitize_patterns((TESTS / cfg).read_text()):
            text = re.sub(regex, replace, text)
    return text


def test_cpu_signature_names_machine_vendor_and_vector_level():
    machine, vendor, level = cpu_signature().split(" ")
    assert machine and vendor and level


def test_the_recorded_cpu_is_a_run_signature():
    machine, vendor, level, threads = (TESTS / "nbval_reference_cpu.txt").read_text().split()
    assert threads.startswith("threads=") and int(threads.removeprefix("threads=")) >= 1


def test_run_signature_adds_the_thread_count_torch_uses(monkeypatch):
    import torch

    assert run_signature() == f"{cpu_signature()} threads={torch.get_num_threads()}"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
    assert run_signature().endswith(" threads=7")


def test_another_thread_count_masks_the_numbers():
    # pooled features of a random Lite0 differ from stage3 on between one and two threads: not digit for digit
    exact, why = outputs_comparable("x86_64 AuthenticAMD AVX512 threads=2", here="x86_64 AuthenticAMD AVX512 threads=4")
    assert exact is False and "threads=4" in why and "masked" in why


def test_same_cpu_compares_exactly_and_another_masks():
    here = "x86_64 AuthenticAMD AVX512"
    assert outputs_comparable(here + "\n", here=here)[0] is True
    exact, why = outputs_comparable(here, here="x86_64 GenuineIntel AVX2")
    assert exact is False and "AVX2" in why and "masked" in why
    assert outputs_comparable(None, here=here)[0] is False
    assert outputs_comparable("other", here=here, forced="1")[0] is True
    assert outputs_comparable(here, here=here, forced="0")[0] is False
    with pytest.raises(ValueError, match="LABKIT_NBVAL_EXACT"):
        outputs_comparable(here, here=here, forced="yes")


MASKED = ("nbval_sanitize.cfg", "nbval_sanitize_numbers.cfg")


def test_every_masking_section_is_read_by_nbval():
    # nbval reads "regex: ...\nreplace: ..." pairs; a "replace:" that lost its trailing space would drop its pair
    for cfg in MASKED:
        text = (TESTS / cfg).read_text()
        assert len(get_sanitize_patterns(text)) == len(re.findall(r"^\[[\w-]+\]$", text, flags=re.M)), cfg


# Rows as 02 and 05 printed them on two CPU kinds (AMD and Intel, AVX-512, two threads each), from one commit.
AMD_TABLE = ("<td>scratch, to a plateau</td>\n<td>80 network steps</td>\n<td>3</td>\n<td>0.466</td>\n"
             "<td>unresolved: the test pool of 539 items cannot settle it with any number of seeds (the effect is "
             "within 0.004 of the claim's boundary)</td>\n"
             "<td>holds</td>\n<td>tips if 2 items flip</td>\n"
             "<td>4 hold, 1 fail (1 of them a tie below the smallest effect that matters), 3 unresolved</td>")
INTEL_TABLE = ("<td>scratch, to a plateau</td>\n<td>128 network steps</td>\n<td>8</td>\n<td>0.512</td>\n"
               "<td>unresolved: about 1,419 test items would settle it 80 % of the time (here 500)</td>\n"
               "<td>holds</td>\n<td></td>\n<td>5 hold, 1 fail, 2 unresolved</td>")
AMD_PRINTED = (
    "[fails] Wrong normalisation breaks frozen features. the weights' own vs raw 0-255: 0.692 vs\n"
    "    0.696; effect -0.004 [-0.058, +0.050], needs > +0.050; edge: tips if 2\n    items flip\n"
    "scratch: lr 0.01, the largest lr tried; epoch 36 of 40 kept (validation loss stopped improving before the "
    "budget ran out)\nscratch, to a plateau: stopped on validation at epoch 5, kept epoch 3")
INTEL_PRINTED = (
    "[unresolved] Wrong normalisation breaks frozen features. the weights' own vs raw 0-255: 0.760 vs 0.708;\n"
    "    effect +0.052 [-0.003, +0.107], needs > +0.050; all 539 items of the pool would not settle it at one\n"
    "    seed, though more seeds might if part of the item noise is churn (one run cannot tell)\n"
    "scratch: lr 0.003; epoch 40 of 40 kept (the best validation loss came at the last epoch: a longer budget "
    "might change this number)\nscratch, to a plateau: its best validation loss came at its last epoch (8 of "
    "8), so scratch had not plateaued yet: this row is scratch's best at 128 steps, not its ceiling")


def test_another_cpu_masks_numbers_verdicts_and_what_the_run_chose():
    for amd, intel in ((AMD_TABLE, INTEL_TABLE), (AMD_PRINTED, INTEL_PRINTED)):
        assert sanitize(amd, "nbval_sanitize.cfg") != sanitize(intel, "nbval_sanitize.cfg")  # the recorded CPU: exact
        assert sanitize(amd, *MASKED) == sanitize(intel, *MASKED)


def test_masked_comparison_still_fails_on_wording_rows_and_columns():
    masked = sanitize(AMD_TABLE, *MASKED)
    assert masked != sanitize(AMD_TABLE.replace("scratch, to a plateau", "scratch, to plateau"), *MASKED)
    assert masked != sanitize(AMD_TABLE.replace("<td>3</td>\n", ""), *MASKED)  # a cell went missing
    assert masked != sanitize(AMD_TABLE.replace("network steps", "head steps"), *MASKED)
    printed = sanitize(AMD_PRINTED, *MASKED)
    assert printed != sanitize(AMD_PRINTED.replace("raw 0-255", "[0, 1]"), *MASKED)
    assert printed != sanitize(AMD_PRINTED.replace("[fails]", "[demonstration]"), *MASKED)
    assert printed != sanitize(AMD_PRINTED.replace("needs > +0.050", "needs < +0.050"), *MASKED)


# What 01, 03 and 05 printed on an AVX2 CPU (recorded) and an AVX-512 one from one commit: the same cells, the
# run's choices differing (an lr, which depths, which mitigations passed a one-point bar, which claims came first).
AVX2_CHOICES = (
    "raw pixels (0.812) beat the pretrained probe at 2 of 8 depths: stage2, stage3\n"
    "- freeze depth block2: kept +0.031 more task-A accuracy than plain fine-tune (lr=0.0003), at no real cost on "
    "task B.\n- LwF, alpha 1: kept +0.050 more task-A accuracy than plain fine-tune (lr=0.0003), at a cost of 0.021 "
    "on task B.\n"
    "applied twice: lr 3e-3 chosen (the largest lr tried: a larger one might do better); 100 steps (validation loss\n"
    "    stopped improving before the end); validation accuracy 0.670, test accuracy 0.680\n"
    "scratch: lr 3e-3; epoch 33 of 40 kept\n"
    "You recorded no prediction before the run, so there is nothing to compare with this time.\n"
    "Measured in this run: two-stage 0.826 > full fine-tune, lr 1e-4 0.824 > scratch 0.592.\n"
    "- fails: Wrong normalisation breaks frozen features (0.705 vs 0.715; effect -0.010 [-0.040, +0.020])\n"
    "- holds in this run, unresolved over 5 seeds: Fine-tuned, a matching source beats scratch (0.883 vs 0.818)\n"
    "<td>flagged: lr=3e-05, lr=0.03</td>")
AVX512_CHOICES = (
    "raw pixels (0.806) beat the pretrained probe at 3 of 8 depths: stage2, stage3, stage4\n"
    "- freeze depth block2: did not help - task A 0.561 vs 0.560 for plain fine-tune (lr=0.0003) (+0.001).\n"
    "- LwF, alpha 1: kept +0.043 more task-A accuracy than plain fine-tune (lr=0.0003), at no real cost on task "
    "B.\n"
    "applied twice: lr 1e-3 chosen (inside the grid); 100 steps (the best validation loss came at the last epoch: "
    "a\n    longer budget might change this number); validation accuracy 0.660, test accuracy 0.675\n"
    "scratch: lr 1e-2; epoch 36 of 40 kept\n"
    "You recorded no prediction before the run, so there is nothing to compare with this time.\n"
    "Measured in this run: full fine-tune, lr 1e-4 0.830 > two-stage 0.826 > partial fine-tune (top 4) 0.80.\n"
    "- unresolved: Fine-tuning on raw 0-255 pixels costs accuracy (0.655 vs 0.683)\n"
    "- shown: Where to cut depends on the target task (best depth on the test set: stage6 vs top)\n"
    "<td>no run was flagged</td>")


def test_another_cpu_masks_the_words_a_run_chooses():
    assert sanitize(AVX2_CHOICES, "nbval_sanitize.cfg") != sanitize(AVX512_CHOICES, "nbval_sanitize.cfg")
    assert sanitize(AVX2_CHOICES, *MASKED) == sanitize(AVX512_CHOICES, *MASKED)
    # what stays compared: the sentence frames around each choice
    masked = sanitize(AVX2_CHOICES, *MASKED)
    assert masked != sanitize(AVX2_CHOICES.replace("beat the pretrained probe", "beat the probe"), *MASKED)
    assert masked != sanitize(AVX2_CHOICES.replace("- LwF, alpha", "- LwF, beta"), *MASKED)
    assert masked != sanitize(AVX2_CHOICES.replace("Measured in this run", "Seen in this run"), *MASKED)


class _Cell:
    def __init__(self, tags):
        self.cell = {"metadata": {"tags": tags}} if tags is not None else {"metadata": {}}
        self.options = {"check": True}
        self.name = f"cell {tags}"


def test_run_chosen_cells_are_run_but_not_compared_in_masked_mode():
    from labkit.tools.nbval_mode import RUN_CHOSEN_TAG, uncheck_run_chosen

    items = [_Cell([RUN_CHOSEN_TAG]), _Cell(["solution"]), _Cell(None), object()]
    assert uncheck_run_chosen(items) == [items[0].name]
    assert [i.options["check"] for i in items[:3]] == [False, True, True]


def test_run_chosen_cells_exist_where_a_run_picks_its_sentences():
    # 05's verdict-chosen sentences: were the tag lost, the masked comparison would compare this run's verdicts
    import json

    from labkit.tools.nbval_mode import RUN_CHOSEN_TAG

    nb = json.loads((TESTS.parent / "solutions" / "05_pitfalls.ipynb").read_text())
    tagged = ["".join(c["source"]) for c in nb["cells"] if RUN_CHOSEN_TAG in c.get("metadata", {}).get("tags", [])]
    assert any("said[j.verdict]" in s for s in tagged) and any("mis.verdict" in s for s in tagged)
