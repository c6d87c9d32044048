"""Notebook outputs are compared exactly on the CPU kind they were recorded on, with numbers masked elsewhere."""
import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

from labkit.repro import cpu_signature, outputs_comparable, run_signature

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


def test_masking_hides_numbers_but_keeps_verdicts():
    recorded = "<td>0.610</td>\n0 scratch      0.100   61.0%  +0.006  2.1e-04  holds  3 of 4 cells"
    other_cpu = "<td>0.580</td>\n0 scratch       0.10   58.0%  -0.001  2.4e-04  holds  3 of 4 cells"
    flipped = "<td>0.580</td>\n0 scratch       0.10   58.0%  -0.001  2.4e-04  fails  3 of 4 cells"
    masked = ("nbval_sanitize.cfg", "nbval_sanitize_numbers.cfg")
    assert sanitize(recorded, "nbval_sanitize.cfg") != sanitize(other_cpu, "nbval_sanitize.cfg")
    assert sanitize(recorded, *masked) == sanitize(other_cpu, *masked)
    assert sanitize(recorded, *masked) != sanitize(flipped, *masked)
    assert sanitize(recorded, *masked) != sanitize(recorded.replace("3 of 4", "2 of 4"), *masked)


def test_masking_hides_the_settle_hint_of_an_unresolved_claim_but_not_its_verdict():
    masked = ("nbval_sanitize.cfg", "nbval_sanitize_numbers.cfg")
    recorded = "unresolved: about 1,419 test items would settle it (here 500)"
    other_cpu = "unresolved: about 1,389 test items would settle it (here 500)"
    assert sanitize(recorded, *masked) == sanitize(other_cpu, *masked)
    assert sanitize(recorded, *masked) != sanitize("holds", *masked)
    assert sanitize("about 7 seeds would settle it", *masked) == sanitize("about 12 seeds would settle it", *masked)


def test_masking_hides_verdicts_at_the_edge_and_the_counts_they_feed():
    masked = ("nbval_sanitize.cfg", "nbval_sanitize_numbers.cfg")
    here = ("<td>unresolved (at the edge): about 190 test items would settle it (here 160)</td> "
            "5 hold, 1 fail, 2 unresolved")
    there = "<td>holds (at the edge)</td> 6 hold, 1 fail, 1 unresolved"
    assert sanitize(here, *masked) == sanitize(there, *masked)
    assert sanitize("<td>holds</td>", *masked) != sanitize("<td>fails</td>", *masked)
