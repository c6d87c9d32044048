"""Exercise checks: tell a student whether their answer is right, not yet right, or not attempted.

The expected value is computed in the notebook by a labkit reference function, never typed in as a literal:
    check("probe_acc", probe_acc, expected=linear_probe(features, labels), atol=0.02)
"""
from __future__ import annotations

import math

# what to do next, said once at the end of every "not yet" message
_NEXT = "Change your code in the exercise cell above, run it, then run this cell again."


def _to_array(value):
    """A numpy array from a tensor / array / nested list, or None if value is not array-like."""
    import numpy as np

    if hasattr(value, "detach"):  # a torch tensor: compare on the CPU without importing torch here
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float, list, tuple)) for v in value):
        try:
            return np.asarray(value, dtype=float)
        except ValueError:
            return None
    return None


def _compare(value, expected, atol: float, rtol: float) -> tuple[bool, str]:
    """(matches, what differs) for numbers, arrays/tensors and plain Python values."""
    import numpy as np

    if isinstance(expected, bool) or isinstance(value, bool):
        return value == expected, f"got {value!r}"
    if isinstance(expected, (int, float, np.number)):
        if isinstance(value, (str, bytes)):
            return False, f"expected a number but got a {type(value).__name__} ({value!r})"
        try:
            got = float(value)
        except (TypeError, ValueError):
            return False, f"expected a number but got a {type(value).__name__}"
        if math.isclose(got, float(expected), rel_tol=rtol, abs_tol=atol):
            return True, ""
        return False, f"got {got:.4g}, which is too {'high' if got > float(expected) else 'low'}"
    exp_arr, got_arr = _to_array(expected), _to_array(value)
    if exp_arr is not None:
        if got_arr is None:
            return False, f"expected an array of shape {tuple(exp_arr.shape)} but got a {type(value).__name__}"
        if got_arr.shape != exp_arr.shape:
            return False, f"shape is {tuple(got_arr.shape)} but should be {tuple(exp_arr.shape)}"
        if np.allclose(got_arr, exp_arr, atol=atol, rtol=rtol, equal_nan=True):
            return True, ""
        worst = float(np.nanmax(np.abs(got_arr.astype(float) - exp_arr.astype(float))))
        return False, f"the shape is right but values differ (largest difference {worst:.3g})"
    try:
        same = bool(value == expected)
    except Exception:  # e.g. ambiguous truth value of a comparison
        same = False
    return same, "" if same else f"got {value!r}"


def check(name: str, value, expected, *, atol: float = 0.0, rtol: float = 1e-6, hint: str | None = None) -> bool | None:
    """Print whether an exercise answer is right; returns True, False, or None when not attempted.

    name: the variable the student fills in, as shown in messages.
    expected: the reference value (computed by a labkit function in the notebook), or a predicate
        `lambda value: bool` for answers with more than one right form.
    atol, rtol: absolute and relative tolerance for numbers, arrays and tensors.
    """
    if value is None:
        print(f"⏳ `{name}` is not attempted yet (it is still None). Write your code in the exercise cell above "
              "where it says YOUR CODE HERE, run it, then run this cell again.")
        return None
    try:
        if callable(expected):
            ok, detail = bool(expected(value)), f"got {value!r}"
        else:
            ok, detail = _compare(value, expected, atol, rtol)
    except Exception as exc:  # a check must never crash the notebook
        ok, detail = False, f"checking it raised {type(exc).__name__}: {exc}"
    if ok:
        print(f"✅ `{name}` is right. Well done!")
        return True
    not_yet(name, f"{detail}.", hint)
    return False


def not_yet(name: str, why: str, hint: str | None = None) -> None:
    """Print that an answer is not right yet: why on the first line, then the hint and the next step, each on a line
    of its own (one long line would wrap mid-word in a notebook's output)."""
    lines = [f"❌ `{name}` is not right yet: {why}"]
    if hint:
        lines.append(f"Hint: {hint.strip()}" + ("" if hint.strip().endswith((".", "!", "?")) else "."))
    print("\n".join(lines + [_NEXT]))
