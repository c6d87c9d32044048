"""labkit benchmarks: every target is a ratio of two things measured side by side in this one run.

    python benchmarks/run.py                 # all CPU benchmarks (a few minutes)
    python benchmarks/run.py --course        # also time the whole course in quick mode (`labkit run`)
    python benchmarks/run.py --only claims --update-readme   # the course's claims over 5 seeds (about 77 min):
                                             # `labkit batch batches/claims.yaml` from an empty feature cache,
                                             # published to docs/claims.md
    python benchmarks/run.py --only claims --claims-from bench_out/claims/course-claims --update-readme
                                             # the same row from a batch already run (in parts, with --only)
    python benchmarks/run.py --only first_run --update-readme  # the course's first run as `make run` meets it on
                                             # a fresh machine: `labkit run` from an empty feature cache (15 min)
    python benchmarks/run.py --only fit,memory --update-readme
    python benchmarks/run.py --only claims --rows-from bench_out/first-run.json --update-readme
                                             # the table also gets the rows an earlier run wrote to that file

Writes bench_out/benchmarks.json and bench_out/benchmarks.md (and, with --update-readme, the table in README.md).
On a CUDA machine the same table is measured there, plus AMP and channels_last vs fp32 throughput.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import labkit  # noqa: E402
from labkit import data, features  # noqa: E402
from labkit.freeze import freeze_to  # noqa: E402
from labkit.train import (  # noqa: E402
    MeasureMemory,
    Precision,
    ProgressBar,
    adamw,
    bytes_to_mb,
    fit,
    measure_training_memory,
)

RESULTS: list[dict] = []


def row(name: str, labkit_value: float, reference_value: float, unit: str, ratio: float, target: str,
        met: bool | None, note: str = "") -> None:
    RESULTS.append({"benchmark": name, "labkit": labkit_value, "reference": reference_value, "unit": unit,
                    "ratio": ratio, "target": target, "met": met, "note": note})
    status = {True: "met", False: "MISSED", None: "-"}[met]
    print(f"[{status:>6}] {name}: labkit {labkit_value:.4g} vs reference {reference_value:.4g} {unit} "
          f"-> ratio {ratio:.3g} (target {target}) {note}", flush=True)


def _best_of(fn, repeats: int = 3) -> float:
    """Minimum wall time of `repeats` calls: the least disturbed measurement on a shared machine."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _device() -> torch.device:
    return labkit.repro.resolve_device("auto") if hasattr(labkit, "repro") else torch.device("cpu")


# ---------------------------------------------------------------------------------------------------------------
def bench_extraction(device, n: int, size: int) -> None:
    """1. Feature-extraction pipeline (uint8 data -> preprocessing -> frozen backbone) vs raw forward on tensors."""
    backbone = labkit.load_backbone("efficientnet_lite0").to(device).eval()
    ds = data.fashion_mnist("test").sample(n, seed=0)
    loader = data.make_loader(ds, backbone, batch_size=64, size=size)
    premade = [x.to(device) for x, _ in loader]  # the same batches, already preprocessed

    def raw():
        with torch.inference_mode():
            for x in premade:
                backbone.features(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def pipeline():
        features.extract_features(backbone, ds, size=size, batch_size=64, device=device, cache=False, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()

    raw()  # warm-up (allocator, kernels)
    t_raw, t_pipe = _best_of(raw), _best_of(pipeline)
    ips_raw, ips_pipe = len(ds) / t_raw, len(ds) / t_pipe
    row("feature extraction: pipeline vs raw forward", ips_pipe, ips_raw, "img/s", ips_pipe / ips_raw, ">= 0.9",
        ips_pipe / ips_raw >= 0.9, f"{len(ds)} Fashion-MNIST images at {size} px, batch 64")


def bench_cached_head(device, n: int, size: int, num_epochs: int = 10) -> None:
    """2. A head trained 10 epochs on cached features vs recomputing the frozen backbone every epoch."""
    backbone = labkit.load_backbone("efficientnet_lite0").to(device)
    ds = data.fashion_mnist("train").sample(n, seed=1)
    test = data.fashion_mnist("test").sample(n, seed=1)
    t0 = time.perf_counter()
    X, y = features.extract_features(backbone, ds, size=size, device=device, cache=False, progress=False)
    Xt, yt = features.extract_features(backbone, test, size=size, device=device, cache=False, progress=False)
    t_extract = time.perf_counter() - t0

    def make_head():
        torch.manual_seed(0)
        return nn.Linear(backbone.num_features, 10)

    # labkit: the fit loop over cached features (what a cache hit costs on every later run or epoch)
    head = make_head()
    t0 = time.perf_counter()
    fit(head, features.FeatureLoader(X, y, 64, shuffle=True), num_epochs=num_epochs, lr=1e-3, device=device,
        callbacks=[ProgressBar(enabled=False)])
    t_cached = time.perf_counter() - t0
    acc_cached = float((head(torch.as_tensor(Xt)).argmax(1).numpy() == yt).mean())

    # the tutorial way: backbone frozen but run on every batch of every epoch
    freeze_to(backbone, -1)
    model = nn.Sequential()
    model.backbone, model.head = backbone, make_head().to(device)

    class Frozen(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = backbone, model.head

        def forward(self, x):
            with torch.no_grad():
                f = self.backbone.features(x)
            return self.head(f)

    frozen = Frozen()
    loader = data.make_loader(ds, backbone, batch_size=64, size=size, shuffle=True)
    t0 = time.perf_counter()
    fit(frozen, loader, num_epochs=num_epochs, lr=1e-3, device=device, callbacks=[ProgressBar(enabled=False)])
    t_tutorial = time.perf_counter() - t0
    acc_tutorial = float((model.head(torch.as_tensor(Xt).to(device)).argmax(1).cpu().numpy() == yt).mean())
    row(f"head training, {num_epochs} epochs: cached features vs backbone every epoch", t_cached, t_tutorial, "s",
        t_tutorial / t_cached, ">= 50x faster", t_tutorial / t_cached >= 50,
        f"test acc {acc_cached:.3f} vs {acc_tutorial:.3f}; one-time extraction {t_extract:.1f} s "
        f"(end to end incl. extraction: {t_tutorial / (t_cached + t_extract):.1f}x)")


def bench_fit_overhead(device, steps: int = 60) -> None:
    """3. labkit.fit step time vs a minimal hand-written loop, same model, same batches."""
    from labkit.zoo import small_cnn

    torch.manual_seed(0)
    batches = [(torch.randn(128, 3, 28, 28), torch.randint(0, 5, (128,))) for _ in range(steps)]
    batches = [(x.to(device), y.to(device)) for x, y in batches]

    def minimal():
        torch.manual_seed(0)
        model = small_cnn(5).to(device)
        model.train()
        opt = adamw(model.parameters(), lr=1e-3)  # fit's optimizer: the ratio is the loop's overhead
        t0 = time.perf_counter()
        for x, y in batches:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def with_fit():
        torch.manual_seed(0)
        model = small_cnn(5).to(device)
        t0 = time.perf_counter()
        fit(model, batches, num_epochs=1, lr=1e-3, device=device,  # memory measured, as fit did by default before
            callbacks=[Precision(amp=False, channels_last=False), MeasureMemory(), ProgressBar(enabled=False)])
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    minimal(), with_fit()  # warm-up
    t_min = min(minimal() for _ in range(3))
    t_fit = min(with_fit() for _ in range(3))
    row("labkit.fit vs minimal loop (step time)", 1e3 * t_fit / steps, 1e3 * t_min / steps, "ms/step",
        t_fit / t_min, "<= 1.1x", t_fit / t_min <= 1.1, "SmallCNN, batch 128 at 28 px, AdamW, defaults of fit")


def bench_layout(device, size: int = 64, batch: int = 32, steps: int = 8) -> None:
    """4b. A Lite0 training step and an eval forward in channels_last (labkit's default) vs torch's default layout."""
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def timed(memory_format, train: bool) -> float:
        labkit.seed_everything(0, deterministic=False)
        model = labkit.load_backbone("efficientnet_lite0", num_classes=10).use_memory_format(memory_format).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            if train:
                model.train()
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            else:
                model.eval()
                with torch.inference_mode():
                    model(x)
        step()  # warm-up: oneDNN picks its kernels on the first call
        return _best_of(lambda: [step() for _ in range(steps)]) / steps

    for train, what in ((True, "training step"), (False, "eval forward")):
        cl, default = timed(torch.channels_last, train), timed(torch.contiguous_format, train)
        row(f"Lite0 {what}: channels_last vs default layout", cl * 1000, default * 1000, "ms", cl / default,
            "<= 1", cl <= default, f"batch {batch} at {size} px, {torch.get_num_threads()} threads")


def bench_memory(device, size: int = 224, batch: int = 32) -> None:
    """4. Peak training memory with a frozen backbone vs full fine-tuning, same batch."""
    backbone = labkit.load_backbone("efficientnet_lite0", num_classes=10).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def peak(frozen: bool) -> float:
        if frozen:
            freeze_to(backbone, -1)
        else:
            freeze_to(backbone, 0)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            opt = torch.optim.AdamW([p for p in backbone.parameters() if p.requires_grad])
            for _ in range(2):  # the second step holds optimizer state
                loss = nn.functional.cross_entropy(backbone(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            del opt
            return (torch.cuda.max_memory_allocated() - base) / 2**20 + base / 2**20
        return bytes_to_mb(measure_training_memory(backbone, (x, y))["total"])

    full, frozen = peak(False), peak(True)
    how = ("torch.cuda.max_memory_allocated" if device.type == "cuda"
           else "weights+grads+AdamW state+forward high-water mark")
    row("peak training memory: frozen backbone vs full fine-tune", frozen, full, "MB", frozen / full, "<= 0.33",
        frozen / full <= 1 / 3, f"Lite0, batch {batch} at {size} px ({how})")


def bench_text(device, steps: int = 8, batch: int = 16, max_length: int = 64) -> None:
    """5. MiniLM fine-tuning: the Hugging Face Trainer vs labkit.fit vs a minimal loop, seconds per step."""
    import tempfile

    from transformers import Trainer, TrainingArguments

    ds = data.newsgroups(["sci.space", "rec.autos", "talk.politics.guns", "comp.graphics"]).sample(steps * batch,
                                                                                                 seed=0)
    ds = ds.subset(np.arange(steps * batch) % len(ds))

    def fresh():
        torch.manual_seed(0)
        return labkit.load_text_model("minilm", num_labels=4)

    tm = fresh()
    loader = data.make_text_loader(ds, tm.tokenizer, batch_size=batch, max_length=max_length)
    batches = [{k: v.to(device) for k, v in b.items()} for b in loader]

    def minimal():
        model = fresh().model.to(device).train()
        opt = adamw(model.parameters(), lr=2e-5)  # fit's optimizer: the ratio is the loop's overhead
        t0 = time.perf_counter()
        for b in batches:
            out = model(**b)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
        return (time.perf_counter() - t0) / len(batches)

    def with_fit():
        model = fresh().model
        t0 = time.perf_counter()
        fit(model, batches, num_epochs=1, lr=2e-5, device=device,
            callbacks=[Precision(amp=False), MeasureMemory(), ProgressBar(enabled=False)])
        return (time.perf_counter() - t0) / len(batches)

    class _Pre(torch.utils.data.Dataset):
        def __init__(self, bs):
            self.items = [{k: v[i] for k, v in b.items()} for b in bs for i in range(len(b["labels"]))]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    cpu_batches = [{k: v.cpu() for k, v in b.items()} for b in batches]

    def trainer():
        model = fresh().model
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=batch, num_train_epochs=1,
                                     learning_rate=2e-5, report_to=[], save_strategy="no", logging_strategy="no",
                                     disable_tqdm=True, use_cpu=device.type == "cpu", dataloader_num_workers=0,
                                     seed=0)

            def collate(items):
                return {k: torch.stack([it[k] for it in items]) for k in items[0]}

            tr = Trainer(model=model, args=args, train_dataset=_Pre(cpu_batches), data_collator=collate)
            t0 = time.perf_counter()
            tr.train()
            return (time.perf_counter() - t0) / len(batches)

    minimal()  # warm-up
    times = {"minimal": [], "fit": [], "trainer": []}
    for _ in range(3):  # interleaved rounds, best of each: a background hiccup hits one round, not one method
        for key, fn in (("minimal", minimal), ("fit", with_fit), ("trainer", trainer)):
            times[key].append(fn())
    t_min, t_fit, t_tr = (min(times[k]) for k in ("minimal", "fit", "trainer"))
    row("MiniLM fine-tune: labkit.fit vs minimal loop", t_fit, t_min, "s/step", t_fit / t_min, "<= 1.1x",
        t_fit / t_min <= 1.1, f"batch {batch}, length {max_length}")
    row("MiniLM fine-tune: HF Trainer vs minimal loop", t_tr, t_min, "s/step", t_tr / t_min, "(reported)", None,
        "the notebook's Trainer recipe; includes the Trainer's own setup in its steps")


def bench_course() -> None:
    """6. The whole course in quick mode, with the feature cache as earlier runs on this machine left it (a
    student's second run): `labkit run` as `make run` runs it (two notebooks side by side) for the course's row,
    then `labkit run --jobs 1` for each notebook's own time, alone on the machine as a student runs one notebook.
    `first_run` measures the course on an empty cache."""
    out = ROOT / "bench_out" / "course"
    env = dict(os.environ, LABKIT_PROGRESS="0")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "labkit", "run", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env=env)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"    labkit run failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    alone = subprocess.run([sys.executable, "-m", "labkit", "run", "--jobs", "1", "--out", str(out)], cwd=ROOT,
                           capture_output=True, text=True, env=env)
    if alone.returncode != 0:
        print(f"    labkit run --jobs 1 failed (exit {alone.returncode}):\n{alone.stdout[-2000:]}"
              f"{alone.stderr[-2000:]}")
    run_dir = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    per = {}
    for status in sorted(run_dir.glob("*.status.json")):
        s = json.loads(status.read_text())
        per[status.name.split(".")[0]] = (float(s.get("duration_s", float("nan"))), s.get("status"))
    for nb, (secs, st) in per.items():
        print(f"    {nb}: {secs:.0f} s ({st})")
        row(f"{nb}, quick mode (labkit run --jobs 1, alone)", secs / 60, 6.0, "min", secs / 60 / 6.0,
            "<= 1 (6 min)", secs <= 6 * 60 and st == "done", f"status {st}; {WARM}")
    row("whole course, quick mode (labkit run)", total / 60, 15.0, "min", total / 60 / 15.0, "<= 1 (15 min)",
        total <= 15 * 60 and proc.returncode == 0, f"two notebooks side by side, as make run runs them; {WARM}")


WARM = "feature cache kept from earlier runs on this machine"


def bench_claims(from_batch: str | None = None) -> None:
    """8. The course's claims over five seeds (`labkit batch batches/claims.yaml`), published to docs/claims.md.

    from_batch: a finished batch folder (e.g. bench_out/claims/course-claims, run in parts with --only): the row is
        then the sum of its runs' own recorded durations (runs.csv), read back, not a new batch.
    """
    import shutil

    if from_batch:
        _claims_row_from(Path(from_batch))
        return

    out = ROOT / "bench_out" / "claims"
    cache = ROOT / "bench_out" / "claims-cache"
    shutil.rmtree(out, ignore_errors=True)  # a fresh batch: nothing to resume
    # an empty feature cache: every seed-independent result (frozen features of a fixed pool, frozen embeddings,
    # the source model) is computed once inside the batch and shared by its seeds, and that once is timed
    shutil.rmtree(cache, ignore_errors=True)
    out.mkdir(parents=True)
    (out / EMPTY_CACHE_MARK).write_text(f"this batch started from an empty feature cache ({cache.name})\n")
    from labkit.tools.batch_spec import load_spec

    spec = "batches/claims.yaml"
    workers = load_spec(ROOT / spec).cpu_workers
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "labkit", "batch", spec, "--out", str(out), "--no-progress",
                           "--publish", "docs/claims.md"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, LABKIT_PROGRESS="0", LABKIT_CACHE=str(cache)))
    total = time.perf_counter() - t0
    print(proc.stdout[-3000:])
    if proc.returncode != 0:
        print(f"    labkit batch failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    per_nb = _minutes_by_notebook(_done_runs(out / "course-claims" / "runs.csv"))
    # the counts live in one place, the README's claims line written from the ledger; this row is the time only
    row("course claims over 5 seeds (labkit batch batches/claims.yaml)", total / 60, 75.0, "min", total / 60 / 75.0,
        "<= 1 (75 min)", total <= 75 * 60 and proc.returncode == 0,
        f"wall time from an empty feature cache, {workers} runs side by side (the spec's cpu_workers; min per "
        f"notebook, its runs' own durations, each sharing the cores: {per_nb}); ledger in docs/claims.md")


EMPTY_CACHE_MARK = "empty-cache.txt"  # written beside a batch that bench_claims started from an empty cache


def bench_first_run() -> None:
    """9. The course as a student's first `make run` meets it on a fresh machine: `labkit run` (the quick tier, its
    default of two notebooks side by side) from an empty feature cache, so every seed-independent result (frozen
    features of the fixed pools, frozen embeddings) is computed inside the timed run, once."""
    import shutil

    out, cache = ROOT / "bench_out" / "first-run", ROOT / "bench_out" / "first-run-cache"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "labkit", "run", "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, LABKIT_PROGRESS="0", LABKIT_CACHE=str(cache)))
    total = time.perf_counter() - t0
    print(proc.stdout[-1500:])
    if proc.returncode != 0:
        print(f"    labkit run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    from labkit.tools.runner import default_jobs

    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*/*.status.json"))]
    jobs = min(default_jobs("quick"), len(runs) or 1)
    per_nb = _minutes_by_notebook(runs)
    row("whole course, first run on an empty feature cache (labkit run, as make run)", total / 60, 15.0, "min",
        total / 60 / 15.0, "<= 1 (15 min)", total <= 15 * 60 and proc.returncode == 0,
        f"{jobs} notebooks side by side; min per notebook, each sharing the cores with another: {per_nb}")


def _done_runs(table: Path) -> list[dict]:
    """The finished runs of a batch's runs.csv (none when the table does not exist)."""
    import csv

    if not table.exists():
        return []
    with open(table, newline="") as f:
        return [r for r in csv.DictReader(f) if r["status"] == "done"]


def _minutes_by_notebook(runs: list[dict]) -> str:
    """'00 1.5, 01 1.7, ...': the minutes each notebook's runs took, from runs.csv rows."""
    per_nb: dict[str, float] = {}
    for r in runs:
        per_nb[r["notebook"]] = per_nb.get(r["notebook"], 0.0) + float(r["duration_s"] or 0)
    return ", ".join(f"{nb[:2]} {sec / 60:.1f}" for nb, sec in sorted(per_nb.items()))


def _claims_row_from(folder: Path) -> None:
    """The claims-batch row from a finished batch's runs.csv: every run of the spec done, durations summed."""
    table = folder / "runs.csv"
    if not table.exists():
        raise SystemExit(f"{table} does not exist: run `labkit batch batches/claims.yaml --out ...` (or its "
                         "--report-only) first.")
    from labkit.tools.batch_spec import load_spec

    expected = {run.run_id for run in load_spec(ROOT / "batches" / "claims.yaml").runs}
    done = [r for r in _done_runs(table) if r["run_id"] in expected]
    if len(done) != len(expected):
        raise SystemExit(f"{table}: {len(done)} of the spec's {len(expected)} runs are done; finish the batch first.")
    total = sum(float(r["duration_s"]) for r in done)
    row("course claims over 5 seeds (labkit batch batches/claims.yaml)", total / 60, 75.0, "min", total / 60 / 75.0,
        "<= 1 (75 min)", total <= 75 * 60,
        f"the sum of its {len(done)} runs' recorded durations (min: {_minutes_by_notebook(done)}); ledger in "
        "docs/claims.md")


def bench_gpu_modes(device, size: int = 224, batch: int = 128) -> None:
    """7 (CUDA only). Throughput with AMP and channels_last vs fp32, eval forward of Lite0."""
    backbone = labkit.load_backbone("efficientnet_lite0").to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)

    def run(amp: bool, cl: bool) -> float:
        m = backbone.use_memory_format(torch.channels_last if cl else torch.contiguous_format)
        xi = x
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cuda", enabled=False)
        with torch.inference_mode(), ctx:
            for _ in range(3):
                m(xi)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(20):
                m(xi)
            torch.cuda.synchronize()
        return 20 * batch / (time.perf_counter() - t0)

    fp32 = run(False, False)
    for amp, cl, label in ((True, False, "AMP bf16"), (False, True, "channels_last"), (True, True, "AMP + CL")):
        ips = run(amp, cl)
        row(f"GPU eval throughput: {label} vs fp32", ips, fp32, "img/s", ips / fp32, "(reported)", None,
            f"batch {batch} at {size} px")


# ---------------------------------------------------------------------------------------------------------------
def write_outputs(device, update_readme: bool) -> None:
    from labkit.repro import cpu_signature

    cpu = cpu_signature()  # e.g. "x86_64 GenuineIntel AVX512": speeds differ by CPU kind, so every row names it
    measured = {r["benchmark"] for r in RESULTS if not r.get("kept")}
    RESULTS[:] = [r for r in RESULTS if not (r.get("kept") and r["benchmark"] in measured)]  # re-run: the new row
    for r in RESULTS:
        if not r.pop("kept", False):  # a row read back with --rows-from already names its CPU
            r["note"] = f"{r['note']}; {cpu}" if r["note"] else cpu
    machine = (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
               f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    out = ROOT / "bench_out"
    out.mkdir(exist_ok=True)
    payload = {"machine": machine, "date": time.strftime("%Y-%m-%d"), "results": RESULTS}
    (out / "benchmarks.json").write_text(json.dumps(payload, indent=2))
    lines = [f"Measured {payload['date']} on {machine}.", "",
             "| benchmark | labkit | reference | ratio | target | met | note |", "|---|---|---|---|---|---|---|"]
    for r in RESULTS:
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        lines.append(f"| {r['benchmark']} | {r['labkit']:.4g} {r['unit']} | {r['reference']:.4g} {r['unit']} | "
                     f"{r['ratio']:.3g} | {r['target']} | {met} | {r['note']} |")
    table = "\n".join(lines) + "\n"
    (out / "benchmarks.md").write_text(table)
    print("\n" + table)
    if update_readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        start, end = "<!-- bench:start -->", "<!-- bench:end -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            old, tail = rest.split(end, 1)
            readme.write_text(f"{head}{start}\n{_merge_tables(old, lines, payload['date'])}{end}{tail}")
            print("README.md table updated.")


def _merge_tables(old: str, new_lines: list[str], date: str) -> str:
    """The README table with this run's rows replacing rows of the same benchmark (others keep their numbers)."""
    new_rows = {line.split(" | ")[0]: line for line in new_lines[4:]}
    old_lines = [line for line in old.strip().splitlines()
                 if line.startswith("| ") and not line.startswith("| benchmark")]
    kept = [line for line in old_lines if line.split(" | ")[0] not in new_rows]
    if not kept:
        return "\n".join(new_lines) + "\n"
    rows = [new_rows.get(line.split(" | ")[0], line) for line in old_lines] + \
        [line for name, line in new_rows.items() if name not in {x.split(" | ")[0] for x in old_lines}]
    head = [new_lines[0].rstrip(".") + "; rows not re-run keep their earlier measurement.", ""] + new_lines[2:4]
    return "\n".join(head + rows) + "\n"


BENCHES = ["extraction", "cached_head", "fit", "layout", "memory", "text", "course", "claims", "first_run", "gpu"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help=f"comma-separated subset of {BENCHES}")
    parser.add_argument("--course", action="store_true", help="also time the whole course (labkit run)")
    parser.add_argument("--update-readme", action="store_true", help="write the table into README.md")
    parser.add_argument("--n", type=int, default=512, help="images for the extraction/head benchmarks")
    parser.add_argument("--size", type=int, default=112, help="resolution for the extraction/head benchmarks")
    parser.add_argument("--claims-from", default=None, metavar="BATCH_DIR",
                        help="with --only claims: the row from a finished batch's runs.csv instead of a new batch")
    parser.add_argument("--rows-from", default=None, metavar="BENCHMARKS_JSON",
                        help="also put the rows of an earlier run's bench_out/benchmarks.json (copied aside) into "
                             "this run's table, as measured there (e.g. a first_run measured before a claims batch)")
    args = parser.parse_args(argv)
    if args.rows_from:
        RESULTS.extend({**r, "kept": True} for r in json.loads(Path(args.rows_from).read_text())["results"])
    chosen = [b for b in args.only.split(",") if b] or [b for b in BENCHES if b not in ("course", "claims", "first_run")
                                                         or (b == "course" and args.course)]
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHES}")
    labkit.seed_everything(0, deterministic=False)
    device = _device()
    print(f"device: {device}, torch threads: {torch.get_num_threads()}")
    if "extraction" in chosen:
        bench_extraction(device, args.n, args.size)
    if "cached_head" in chosen:
        bench_cached_head(device, args.n, args.size)
    if "fit" in chosen:
        bench_fit_overhead(device)
    if "layout" in chosen:
        bench_layout(device)
    if "memory" in chosen:
        bench_memory(device)
    if "text" in chosen:
        bench_text(device)
    if "course" in chosen:
        bench_course()
    if "claims" in chosen:
        bench_claims(args.claims_from)
    if "first_run" in chosen:
        bench_first_run()
    if "gpu" in chosen and device.type == "cuda":
        bench_gpu_modes(device)
    write_outputs(device, args.update_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
