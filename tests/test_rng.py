"""No library function reseeds the global random state: a student's own seeding is never silently overridden.

Seeding the global generators is `labkit.repro.seed_everything`'s job alone. A function that takes a seed draws
from a local generator, or inside `torch.random.fork_rng` (labkit.repro.local_seed), which puts the caller's state
back when the block ends.
"""
import ast
from pathlib import Path

import numpy as np
import torch

LABKIT = Path(__file__).resolve().parents[1] / "labkit"
GLOBAL_SEEDS = {("torch", "manual_seed"), ("torch", "seed"), ("torch.cuda", "manual_seed"),
                ("torch.cuda", "manual_seed_all"), ("torch.random.default_generator", "manual_seed"),
                ("torch.default_generator", "manual_seed"), ("np.random", "seed"), ("numpy.random", "seed"),
                ("random", "seed")}


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_fork_rng(item: ast.withitem) -> bool:
    call = item.context_expr
    return isinstance(call, ast.Call) and _dotted(call.func).endswith("random.fork_rng")


def _global_seed_calls(tree: ast.AST) -> list[int]:
    """Lines of global reseeding calls outside seed_everything and outside a `with torch.random.fork_rng()`."""
    found = []

    def visit(node, allowed: bool):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "seed_everything":
            allowed = True
        if isinstance(node, ast.With) and any(_is_fork_rng(item) for item in node.items):
            allowed = True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner, name = _dotted(node.func.value), node.func.attr
            if (owner, name) in GLOBAL_SEEDS and not allowed:
                found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, allowed)

    visit(tree, False)
    return found


def test_no_library_function_reseeds_the_global_random_state():
    offenders = []
    for path in sorted(LABKIT.rglob("*.py")):
        for line in _global_seed_calls(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(LABKIT.parent)}:{line}")
    assert not offenders, ("global reseeding outside seed_everything (take a seed and use a local generator or "
                           f"labkit.repro.local_seed): {offenders}")


def test_the_checker_finds_what_it_should():
    source = ("import random, torch, numpy as np\n"
              "def f(seed):\n    torch.manual_seed(seed)\n    np.random.seed(seed)\n    random.seed(seed)\n"
              "def seed_everything(seed):\n    torch.manual_seed(seed)\n"
              "def g(seed):\n    g = torch.Generator().manual_seed(seed)\n"
              "    with torch.random.fork_rng(devices=[]):\n        torch.manual_seed(seed)\n")
    assert _global_seed_calls(ast.parse(source)) == [3, 4, 5]


def test_local_seed_gives_the_seeded_draws_and_leaves_the_callers_state():
    from labkit.repro import local_seed

    torch.manual_seed(123)
    np.random.seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with local_seed(7):
        inside = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(inside, torch.rand(3))  # the same numbers as after torch.manual_seed(7)
    torch.manual_seed(123)
    with local_seed(7):
        torch.rand(100)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream went on as if nothing had been drawn


def test_train_head_keeps_its_numbers_and_the_callers_state():
    """features.train_head draws its head and dropout from `seed` alone, whatever the caller's state."""
    from labkit import features

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6)).astype(np.float32), np.arange(40) % 3
    torch.manual_seed(1)
    a, _ = features.train_head(X, y, kind="mlp", num_epochs=2, seed=3, device="cpu")
    after_a = torch.rand(2)
    torch.manual_seed(99)
    b, _ = features.train_head(X, y, kind="mlp", num_epochs=2, seed=3, device="cpu")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    torch.manual_seed(1)
    assert torch.equal(torch.rand(2), after_a)  # train_head drew nothing from the caller's stream


def test_article_augmentation_draws_what_torch_manual_seed_gave_without_calling_it(monkeypatch):
    """Each image's transforms draw from its own seed on the CPU generator: the same pixels as seeding with
    torch.manual_seed (which also reseeds every GPU generator, and on a CUDA build records a traceback per call, 9 s
    of a quick run of 02), and the caller's stream goes on as if nothing had been drawn."""
    from labkit.data.loaders import article_augmentation, augment_like_the_article

    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    seeds = torch.randint(0, 2**31 - 1, (6,), generator=torch.Generator().manual_seed(4)).tolist()
    reference = torch.empty_like(x)
    with torch.random.fork_rng(devices=[]):
        for i, s in enumerate(seeds):
            torch.manual_seed(s)
            reference[i] = article_augmentation()(x[i])
    reference.clamp_(0, 1)

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)

    def forbidden(seed):
        raise AssertionError("torch.manual_seed called")

    monkeypatch.setattr(torch, "manual_seed", forbidden)
    out = augment_like_the_article(x, torch.Generator().manual_seed(4))
    monkeypatch.undo()
    assert torch.equal(torch.rand(3), expected_next)
    assert torch.equal(out, reference) and not torch.equal(out, x.clamp(0, 1))
