"""The notebooks' exercises: reference computations and sealed model answers, keyed by exercise id.

A check cell in a notebook holds one call and no reference code:
    check_ex("00-probe-by-hand", my_probe_acc, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
The expected value is computed here from the notebook's own objects, so it follows the run (its seed, tier and
data) and the student copy shows nothing to copy from.

A written exercise shows a text box (`written("01-second-target")`): the answer is recorded with the quiz answers
and then the model answer is shown. Model answers are stored sealed (`labkit.quiz.keys`: readable by this module,
not by someone reading the notebook or this file).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from labkit.quiz import keys

BANK = "exercises"  # the records' bank: written answers sit beside the quiz answers, never graded


@dataclass(frozen=True)
class Exercise:
    name: str  # the variable the student fills in
    expected: Callable[..., Any]  # the notebook's objects -> the reference value (or a predicate on the answer)
    atol: float = 0.0
    hint: str = ""
    after: Callable[..., str] | None = None  # (answer, **objects) -> a line printed after a right answer
    rtol: float = 1e-6
    convert: Callable[[Any], Any] | None = None  # the answer -> the form compared (e.g. optimizer groups -> sizes)
    shape: str = ""  # what the answer should look like, said when `convert` cannot read it


def _few_shot(backbones, pool, test, n, seed, size, device):
    from labkit import features

    rows = pool.few_shot_indices(n, seed=seed)
    out = {}
    for label, model in backbones.items():
        X, y = features.subset_features(model, pool, rows, size=size, device=device)
        out[label] = round(float(features.linear_probe(X, y, *features.extract_features(model, test, size=size,
                                                                                         device=device))), 3)
    return out


def _probe_first(feats, depth, n_train, n_test):
    """Probe accuracy of one depth on the first n_train / n_test images, from the cached pooled features."""
    from labkit import features

    (X_train, y_train), (X_test, y_test) = feats["pretrained", "train"][depth], feats["pretrained", "test"][depth]
    return features.linear_probe(X_train[:n_train], y_train[:n_train], X_test[:n_test], y_test[:n_test])


def _block_after(value, feats, block, around, n_train, n_test):
    before, stage = around
    return (f"on these images: {before} {_probe_first(feats, before, n_train, n_test):.3f}, {block} {value:.3f}, "
            f"{stage} {_probe_first(feats, stage, n_train, n_test):.3f}")


def _diverge(curves):
    from labkit.probe import largest_gap

    return largest_gap(curves["pretrained"], curves["random init"])


def _loader_ok(backbone):
    from labkit import guards

    return lambda loader: guards.check_input_statistics(loader, backbone, warn=False).ok


def _groups(model, lr, decay):
    from labkit.freeze import discriminative_param_groups

    return _group_sizes(discriminative_param_groups(model, lr, decay=decay))


def _group_sizes(groups):
    return [(len(g["params"]), g["lr"]) for g in groups]


def _lora_share(model):
    from labkit.text import trainable_share

    return trainable_share(model)


def _knn1(ref, ref_labels, query, query_labels):
    from labkit.text import knn_accuracy

    return float(knn_accuracy(ref, ref_labels, query, query_labels, k=1))


def _ewc_penalty(fisher, theta_star, model, lam):
    """EWC's own penalty for `model` anchored at `theta_star` (what the fit loop adds to the loss)."""
    from labkit.forgetting import EWC

    class _State:  # what EWC.penalty reads from the fit loop's trainer
        pass

    _State.model = model
    ewc = EWC(fisher, lam=lam, anchor=theta_star)
    ewc.on_fit_start(_State)
    return float(ewc.penalty(_State).detach())


def _forgetting_by_epoch(history, before):
    return {e + 1: float(before["a_acc"]) - float(a) for e, a in enumerate(history["a_acc"])}


def _linear_probe(X_train, y_train, X_test, y_test):
    from labkit import features

    return float(features.linear_probe(X_train, y_train, X_test, y_test))


EXERCISES: dict[str, Exercise] = {
    "00-probe-by-hand": Exercise(
        "my_probe_acc", _linear_probe, atol=0.005,
        hint="fit the scaler on X_train only, transform both sets with it, then clf.predict(...) == y_test"),
    "00-few-shot": Exercise(
        "few_acc", _few_shot, atol=0.0015,
        hint="slice the cached pool features with rows_10 for each network; score on the same test features"),
    "01-block-probe": Exercise(
        "block_acc", lambda feats, block, around, n_train, n_test: _probe_first(feats, block, n_train, n_test),
        atol=0.01, hint="pool over height and width (dims 2 and 3); fit on ex_train, score on ex_test.",
        after=_block_after),
    "01-diverge": Exercise(
        "diverge_depth", _diverge,
        hint="subtract the two curves depth by depth and take the depth with the largest difference.",
        after=lambda value, curves: (f"pretrained - random at {value}: "
                                     f"{curves['pretrained'][value] - curves['random init'][value]:+.3f}")),
    "02-groups": Exercise(
        "my_groups", _groups, convert=_group_sizes, shape='a list of {"params": [...], "lr": ...} dicts',
        hint="Skip frozen depths; the classifier is the last depth and gets lr; each depth below gets decay x more."),
    "02-memory-ratio": Exercise(
        "my_ratio", lambda memory: memory["full fine-tune"]["total_mb"] / memory[list(memory)[1]]["total_mb"],
        hint="total = weights + gradients + optimizer_state + activations + workspace, for each of the two rows."),
    "03-forgetting-by-epoch": Exercise(
        "forgetting_by_epoch", _forgetting_by_epoch, atol=1e-3,
        hint="forgetting = task A before - task A after; history['a_acc'][0] is after epoch 1."),
    "03-ewc-penalty": Exercise(
        "my_penalty", _ewc_penalty, rtol=1e-4,
        hint="multiply each weight's squared move by its Fisher value, sum everything, then scale by lam / 2."),
    "04-lora-share": Exercise(
        "my_lora_share", _lora_share,
        hint="divide the number of elements of the parameters with requires_grad=True by the number of all elements"),
    "04-knn": Exercise(
        "my_knn_acc", _knn1,
        atol=1e-6, hint="use argmax over the similarity of each query to all reference texts"),
    "05-fixed-loader": Exercise(
        "fixed_loader", _loader_ok,
        hint="make_loader(ds, backbone, size=...) applies the backbone's own preprocessing once."),
    "05-honest-acc": Exercise(
        "honest_acc", lambda epoch_logs: max(epoch_logs, key=lambda e: e["val_acc"])["test_acc"], atol=1e-9,
        hint="max(epoch_logs, key=lambda e: e['val_acc']) is the candidate validation picks."),
}


def _as_comparable(value):
    """Dicts of numbers are compared as their values in key order (after checking the keys)."""
    if isinstance(value, dict):
        return {k: round(float(v), 3) if isinstance(v, (int, float)) or hasattr(v, "__float__") else v
                for k, v in value.items()}
    return value


def check_ex(exercise_id: str, value, **objects) -> bool | None:
    """Check a student's answer to a notebook exercise against the reference computed from `objects`.

    Prints right / not yet right / not attempted (see `labkit.exercise.check`); returns True, False or None.
    """
    from labkit.exercise import check, not_yet

    if exercise_id not in EXERCISES:
        raise KeyError(f"No exercise {exercise_id!r}; the exercises are: {', '.join(sorted(EXERCISES))}.")
    ex = EXERCISES[exercise_id]
    if value is None:  # not attempted: say so without computing the reference
        return check(ex.name, None, expected=None)
    expected = ex.expected(**objects)
    if ex.convert is not None:
        try:
            value = ex.convert(value)
        except Exception:  # not the shape the exercise asks for
            not_yet(ex.name, f"it should be {ex.shape or 'another kind of value'}.")
            return False
    if isinstance(expected, dict):
        value = _as_comparable(value) if isinstance(value, dict) else value
        if isinstance(value, dict) and set(value) != set(expected):
            not_yet(ex.name, f"its keys are {sorted(value)} but should be {sorted(expected)}.")
            return False
        if isinstance(value, dict):  # compare key by key as one array, with the exercise's tolerance
            keys_ = sorted(expected)
            value, expected = [value[k] for k in keys_], [expected[k] for k in keys_]
            import numpy as np

            expected = np.asarray(expected, dtype=float)
    ok = check(ex.name, value, expected=expected, atol=ex.atol, rtol=ex.rtol, hint=ex.hint or None)
    if ok and ex.after is not None:
        print(ex.after(value, **objects))
    return ok


# ---- written answers: a text box, the answer recorded, then the sealed model answer shown

_SALT = "labkit-exercises"
_CANONICAL = "written"


def seal(exercise_id: str, text: str) -> str:
    """The sealed form of a model answer (what WRITTEN stores); used when an instructor writes a new one."""
    return keys.encrypt_explanation(BANK, exercise_id, _SALT, _CANONICAL, text.strip())


def model_answer(exercise_id: str) -> str:
    """The model answer of a written exercise, unsealed."""
    if exercise_id not in WRITTEN:
        raise KeyError(f"No written exercise {exercise_id!r}; they are: {', '.join(sorted(WRITTEN))}.")
    return keys.decrypt_explanation(BANK, exercise_id, _SALT, _CANONICAL, WRITTEN[exercise_id])


# exercise id -> sealed model answer (labkit.exercises.seal(id, text))
WRITTEN: dict[str, str] = {
    "00-few-shot-why": (
        "umXjthUtTcX04a8k.KPSc97pHGR8pAOkQmREqv6YsDqQvLadQf0USWL/AO6ACgMvGYVJeo0NT9HRNtOUd9vmjnWa/DXDqdNIZ70B"
        "juzrDDzd+PqEpgn8OwNAdV+Z0wZXf8fnOJKSD8j7tCzOZ2kpYwDhloiqRNJwWNjEAhGVZ767j+Mc0NlCQbtuII8PRip32u1/0oF/"
        "M+E9FL1t0iHm+EDsismI6ajivBFApDAOYU2BUUPhFEDhDuPOnkw8NfPS/sFc3BUR9zvYCDaly68H+Ljn3wNIbkK7Yvvx1+30oWJ1"
        "d/nVbMsVeiCaM4/iKKTz3fxXVe/xcw/6TTs37FtGJLalb44IVD09yTlPgjwdgHa8WpMUfUf44JrCBwbb4ffWYX1A1ltPwm1sENTn"
        "Hie8/3wQALEz+OsVN0w6YM1fgOv84xGdF9kgDW/SGMJyEPfvcaJOglW2BkUKYKnRbmthgt6itFCb16z3fkXucnaRfi4yAyA3LqRb"
        "Ex0iI5eGVpjnpLYK/1Wz7lBX/oQeSM4NiKaWlcC7a+2Yt79glIf+S0ocDIIS0oc8OX+ovKv6fQXja03DBbWGmJxRNPR4r7ixfff8"
        "8KrAOLSaf+0+H8CAfKkVgFQipJROjLWE+pH/7/HyjBzA+9z8k648FbZ7PvkxfrzPandjYxuTYeLAjKaoEf3TjnJ5BWPIr7N/H"),
    "01-second-target": (
        "9dPnkq7K7PrlMF7W.HnkPb25NQbgDYnXy/di8IkssC6/y4vSLq/mM3KzuYUAILH4EW43mLt/afU73fvHQdgNw2Ucig1xzqSqFneG"
        "JDpq6vLTZzNIPVEZSnKTgE3G4MnLyWX0+cARBakHBNqc3QvdGkPlp7sT3mS1KnYDVgn+AG47vjsZSmTofI0MrOixQHfUMk0crFr5"
        "cL1P/k4QMT2ScIshoIHTR5GTbEZJxyBKWq5kCMgLK18PteW01Y0qMMaAzwPfsXcOO9/LSlsiUaRx3Ny6OBFUPsF7qGNFzUzfVl9y"
        "lnqx3+3yPgoGd+LLoB+oNLlXVdwwQlcpy5oDODnq1iBKsETDf/K1/P1Vv54j5vcFkkS0ATQaQx81A9Ngyac/EsKIVdmnGBRvAB6Z"
        "o0ZUGEfCOcib+mXPJzan1gewh4GsaY23ELUUGKX2u/J+wJAuGE93TrGCF/wpTgmmrDzhGkRBcGQULZQRC7FnbmruqxEodEfb4nC4"
        "Ke4kdDJzDGcz6CWRFaG6qvuANE3HqvG7nl8IXnsPLqqC7AcFACHHFqXLWlpdTl4YNoEL2NxMFB2vRb/kNR7AKx6nKWpAKT70s8Vf"
        "7+uMtCtzVM4D3fCl4Zbevgy6rEYOLJAKEmpXehidqyfL+PnCKQ4cS8l19UJk0Gi9CbxWeqwkY688UJOAoBmabkax4uiHvxMHW1Je"
        "9uIFnjWcJNFwB8yZ/mFj4ARfk1jksSm05fFl0qk0YoSpN"),
    "02-batchnorm": (
        "/Op32LDyOoOY1SNx.CeA4HsS9/62RiVI090RaRpjeqRLQf6b3nZWrEdDoCd9GIjmPDG8l/J/A3dN7fPf7+1mwVrnP084VzldKxvk"
        "qxDZC4sAUp73aUpZqWkdIlqcP9gDZcjxhpvgVLWcEontJxOwuc3SdXchvySz3saBCRARRr/V2tdYu4R0/rpusrMjf59GXeoigO78"
        "fR+h7PjlpfVny2x5wHljoWuPDOY580Wih4mrVVSuXbnXLadaPRQQ89p/6FnFt7zMGavh86vsY4ZDBVYGL7Lidxm9P3ImdeHQ8hG2"
        "ucBZSbcOfRINxbgUwv2hkgNRY1KqaC8JBAWxqI4ZX3A4J03w1cDy6XkrcAHh18mYZ+cG6VWhaQfngyynvHlsdxGxaa/zUsaND9oj"
        "GkVwbsomhE4VkJX4Y1r7dOL3HDaCs0LX30BRwsjoJKAv0pMqzU19vBIEPPONVquSHnXqO9d/nC3P2IAB14H4TnCUqV3p1BtSzqeS"
        "GVgAfVkd6l4zyOG4XSHKyUnBD/IMwVWu4U+vyhCGYF7q81WkHVRaalKUbxuzRh4qIpZeaWPNECDftcnDYTHh/+xl99phFzRLFeTw"
        "0hozbyGELVi57QHdLXZa2rupb+i+4ew0wyMimdBBhUmEttadPQCpAGxBrnf7Dz/8MgeJN3w4NVnNsCHWBlRT0pk2/3yiLrWKs3yW"
        "rrEU0XV6d4jpQvPGk2MIiq0zRvAnQpOLYNCTLq5G2Elz48JfB0+uZ7IDDP+Wfnja8LDjhsGwFgcPIvHUz/fSsD34BSqO9ynOiJ9I"
        "SSOks5CNFNDNkUhdgcxb8DxVmkjZ9LACSyM8duGF08YbVOIGu+A6VXvnjeN8axHc1Z39xRSYFEvGts6IjanZNjKPOxDZU+G/fXWD"
        "7t2IsjyXcbDYwYTu6pTzkF3+MnYzZikGh+Uv3W5vUshz+0BsbMbK4NgcOGyUnhA4QDCwWL1F7BXh84K7mi13EQb11gO5hDiqiF50"
        "o8yWK6QLNgIcIVqvb2dwccVwf6B/6xJf8jVS4fXvVyl2CVa+oTTF2l6GizTkAkPgZN7QkRyqVndyYEn05fTwLvQU1gxujMae+xtn"
        "6Yo3nzhVZNIP4ilPHWWSDWBAFzwfCiFVTcfoeaGAjbXs7kHNbnp9NAtACsmVkYcBuJlv1JglPy0KPA4BChsa+5iPL3XG2gi0DKZU"
        "Kkhm0ExUqkD8rSHTxTpLx6RdZHajDgs9idrOZPGkzRcga3Ats95rfmuM3jRFFfSveS96zqyMG8+IRL3ldf6Bpdgll1oyJc1wBLzX"
        "h2QsuQXU9jZRGbSgAVwroDxSfplvHLbjO1AfwiB5s48jsEKTFCxrkEyMCjaYHqbsC5dY0xkGRBr68zFOgHV1A4gr+uw/5hOfGNYu"
        "YrA=="),
    "03-own-mitigation": (
        "Da3FGTuHEdMMl5UN.yj7TgMVMoQmWdhMERAl+123xI5WkQ4AFq5EbnZshN1d+HWy8iYJK3XJF8coFdb7VEBmdp7PNDZyRqr4NVq0"
        "EYzfTKdeBuF7yx0j+f4SiKUqKEfiTZk7zVraVt5osDb57XhiXNL/rigUCmAs8DERka/mnedDVgxZ2Yxw3jpIYWM4olR2NGiLygWS"
        "W0TepO/H3tZ2B8HU1hiHSwlg2xyOXEVBthiV0GdnCJONrEE27b0A7sAAP5p/oy5FsOCsb6st2ILE0zHkuJArA0gJRv8g4k015vNI"
        "Vi4B3QcS2b3NfgfiIpwOIF1JGdMLH3SfxKSi0hq/yyJ4bP2yvNRkv7Xf066NXvfSVyER0tJbZBg09S0IAoGZZVT2ThJl4jf9cQUX"
        "pmG+cKOKvmz40lcRe18yiwhYpDZjRYUaVaWfodF9ngqtt0MhRESK8W1/h4A1qvhJjR6O07qOIwZY4lNhernH0HSaBVcxD/cRDBwe"
        "1zqF6gOtuAj3DDn47UUxOvU5EUopYYBBXxWdowS7+BDZS47mEjqIYzF329LDzlYtxldz/CIDpH2uOIacDkzYKX0WiMJjmWaPZevx"
        "q2h4tFKKpD8PzE3T6yl245U0K5lpR3OwiNA5Rldq07tYVj5qIdaFMI5Fr5LJ9nUXFrLsWn0EPQfFu3sYTlY9pn2+wAfdeFX3BGdX"
        "hPedJZA=="),
    "04-lora-forgetting": (
        "kHKXXOpXxiVaewyl.n1W4NTFNukgNVNUy12fpoywZtewghgrr5nBY4grzrGD2nGB4EVOSB2yaLzWc8rXTIQaOCMntmUN5p2+tT9w"
        "2uLsvDHwSjSKVBcT/U3VaDwQeNRGVgfcDRI13oGYYMss7wDVNtmrvukpKkxJEbOW0knn7PwBGFd+6UiUMH3DAj1R8FmRtBQglSs5"
        "uA9k4OWiQxxO99G5m4xp60O6sgkGXJEJHbnvSFtZkpkqf+r/b5XwrqExxcfJNukdT31B4R4gdLZdP75+7lCevi7eW1+Hf4yr24eM"
        "8YL4nkTgk4CLCxMpJ+ESxcJIPV3CnMHweKbpPi14ndYZ9q7TO7qmNcunkUXIM1Po10AM5aCU+hH4FKuCDfZvDP1ARRtQMHFmsTJk"
        "aHeMWVFaznhYE+LuVmFalNw492UIToWbzRuoG4sfOI+FGn2ScOm5B1LttYWHVCZ9DzdTzYFwO8ds0mWeLeol2Zl+nLKMRSGdEgFb"
        "++v1AwKzQYTgStZwuVJhkHh1B55mGWQr2kgOnDH9TLkBNUluMlg6cxXRzoR4ot/x2i8ilLvQtPtx7igOIQJ8iI/OBzwusv0RXnoZ"
        "K0BruEaqcupmWyDWb8HJIN5oeCUIYlxZCUV0azEcgshT2uAmiZjBkDz1R9Eu6AyqiJ5fiRiazWf7845zda8I1rVtd3PCdDk47BFQ"
        "zhvzw0U0xpOvueL6Ms6Sao2gP1OQCmkjEZNaCTsBpBD35gH3osyw0DttEBh/9t24GCjjg0KHg1ICU7EeqIJSGUml3SJLk0fgal+r"
        "o+06qrJdWleBDUJPZYh0tgTfow0suF2sCeMBTx3T2QUwkoZDyyEML5h2RrGdoq3CECNHJQiSKKaf6q48SbR5koQhbM5Jb5mZUtum"
        "3AYzA4g1FE/bYfTc1ft25eFL/ZDZvbH+U5zqIQoexPlEq1OEB/oIzcgaaYUDz8Yshs/BYheannantn3RhUvokJ7SiP9wuAQPXvbL"
        "vx4T1rYtihvt5axgdIAoQ/W8g93oIxz5Ie7Qyxxsqy9v1ffJef4V8zP16F4przQ87o0cAKourCGVmwnALDWY42qneiQxdfT/9xhY"
        "SpIehG8R+xa1/aH5IsFU+rCxzcAPUkoqm8HNKyiuuV/ELvl2J3JtIjXBL+UImFggSyU65OmWdOCWcragnJhDqY7eOEXFms1tBvfI"
        "ZmEUpGEU/9xZlDtTZkRt1bkpxRicAvGdz++lfsNme4gZ0wOQOnQ=="),
    "05-own-project": (
        "IXxnXDcS+AKghii/.ofp3rKQ0ZPq4Hg8Fx0wWPTs//5ZdMMq1Di6UjSCbY9CTSxXuV3LKuK+15pWjj6rana1nCb9Y3uqNA9ChYrA"
        "8KIpiMprWI6XXUK3ZmIQXNK4Dnzt0tx85rIZjA+GTjSp/GfBBrmfPnAJnpG0bUDNp+hGcJWE+Hh/9knygqyH6CcI1JWEqar/E5QJ"
        "SekKDZJHf7oqbZ9iA9wYDqd06Pxqmyr+dqB+TSyx52s4UsOGeYK9cyg1JKsvTyR1eg/JPTTKdkfDibiazX3VIfNxiLip34X9bTBB"
        "w+Mj1rprZbCEocHqsFTnpzOahSCLT/XhqSKoDomcgsIzrXUmQSabKOLnH1BMVwz6B/yDunPbG8uu/ef3Kg0ASWqcSlVzx4VYkGtB"
        "vA4q7R4469Mhay3Ha2RVxIuSYDqh69Rf+ibFLAvea7a6dxLr5WP27bCXAs1RCK5XGSrB1JjOeWxyCMks/If+RCJajlBiRagRvH9o"
        "SHkcZoN+aYY++AVNu2NB7D8B+gFz/Dg=="),
}


class Written:
    """A written exercise's answer box: `submit` records the answer with the quiz answers, then shows the model
    answer. The latest earlier answer is restored after a kernel restart (and its model answer shown again)."""

    def __init__(self, exercise_id: str, student_id: str | None = None, responses=None):
        from labkit.quiz.responses import ResponseLog

        if exercise_id not in WRITTEN:
            raise KeyError(f"No written exercise {exercise_id!r}; they are: {', '.join(sorted(WRITTEN))}.")
        self.id = exercise_id
        self.log = ResponseLog(student_id, responses)
        earlier = [r for r in self.log.previous if r.get("bank") == BANK and r.get("question") == exercise_id
                   and str(r.get("answer") or "").strip()]
        self.answer = str(earlier[-1]["answer"]) if earlier else None
        self._widget = None

    def submit(self, answer: str) -> str:
        """Record an answer (a few sentences) and return the model answer to compare it with."""
        text = str(answer or "").strip()
        if not text:
            raise ValueError("Write a few sentences first, then press Submit.")
        self.answer = text
        self.log.record(BANK, self.id, "written", text, None)
        self._refresh()
        return model_answer(self.id)

    def text(self) -> str:
        """What the cell shows without a widget frontend."""
        if self.answer is None:
            return (f"Written exercise {self.id}: type your answer in the box and press Submit; the model answer is "
                    "shown after you submit.")
        return f"Written exercise {self.id}: your answer is recorded.\nYour answer: {self.answer}\n" \
               f"Compare with the model answer: {model_answer(self.id)}"

    def _refresh(self) -> None:
        if self._widget is not None and self.answer is not None:
            from labkit.quiz.widgets import _markup

            self._widget.feedback.value = (f"✎ Recorded. Compare with the model answer: "
                                           f"{_markup(model_answer(self.id))}")

    @property
    def widget(self):
        if self._widget is None:
            import ipywidgets as widgets

            box = widgets.Textarea(value=self.answer or "", placeholder="Your answer, in a few sentences",
                                   layout=widgets.Layout(width="95%", height="7em"))
            button = widgets.Button(description="Submit", button_style="primary")
            feedback = widgets.HTML("")

            def on_click(_button) -> None:
                try:
                    self.submit(box.value)
                except ValueError as exc:
                    feedback.value = f"ℹ {exc}"

            button.on_click(on_click)
            self._widget = widgets.VBox([box, widgets.HBox([button]), feedback])
            self._widget.add_class("labkit-written")
            self._widget.feedback = feedback
            self._refresh()
        return self._widget

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = self.text()
        return bundle


def written(exercise_id: str, student_id: str | None = None, responses=None, display: bool = True) -> Written:
    """Show a written exercise's answer box (the question is in the notebook's text above it)."""
    w = Written(exercise_id, student_id=student_id, responses=responses)
    if display:
        from IPython.display import display as _display

        _display(w)
    return w
