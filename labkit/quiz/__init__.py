"""Quizzes: hashed question banks, ipywidgets with immediate feedback, JSONL responses, grading.

`from labkit.quiz import show_quiz; quiz = show_quiz("00", student_id=student_id)`
The widget parts (ipywidgets) are imported on first use, so `labkit quiz grade` stays light.
"""
from __future__ import annotations

import importlib

from labkit.quiz.bank import Bank, BankError, Question, Result, load_bank

_LAZY = {"show_quiz": "labkit.quiz.widgets", "Quiz": "labkit.quiz.widgets", "grade_dir": "labkit.quiz.grade"}

__all__ = ["Bank", "BankError", "Question", "Result", "load_bank"] + sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'labkit.quiz' has no attribute {name!r}")
