"""A real browser test: JupyterLab on loopback, Debian's Chromium driven by Playwright: a student answering a quiz
(and seeing it again after a kernel restart), every bank laid out without overlapping options, and a student working
through the released 00_tour (a prediction recorded and revealed, an exercise checked, a quiz answer restored)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _browser import CHROMIUM, CHROMIUM_FLAGS, code_index, run_cell, write_lab_settings
from playwright.sync_api import expect, sync_playwright

from labkit.quiz.bank import PACKAGE_BANKS, read_yaml, validate_source
from labkit.tools.release import dumps_notebook, release_notebook

REPO = Path(__file__).resolve().parents[1]
STUDENT = "browser-test"
QUESTION = "satellite-strategy"  # the first single-choice question of bank 00
TIMEOUT_MS = 180_000  # 2 shared cores: JupyterLab's first load and a kernel start can take a while

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"),
]


def _fixture_solution() -> dict:
    """A minimal solutions notebook: parameters, one exercise with its check, and the quiz cell."""
    def code(src, tags=()):
        return {"cell_type": "code", "execution_count": 1, "id": f"c{abs(hash(src)) % 10**8}",
                "metadata": {"tags": list(tags)}, "outputs": [], "source": src}
    return {
        "cells": [
            {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": "# Browser fixture"},
            code('tier = "quick"\nseed = 0\nstudent_id = None', tags=["parameters"]),
            code("### BEGIN SOLUTION\nanswer = 6 * 7\n### END SOLUTION"),
            code("from labkit.exercise import check\ncheck(\"answer\", answer, expected=42)"),
            code('from labkit.quiz import show_quiz\nquiz = show_quiz("00", student_id=student_id)'),
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def _student_notebook(root: Path) -> Path:
    """The real notebooks/00_tour.ipynb when it exists, else one released from a fixture solution."""
    real = Path(os.environ.get("LABKIT_BROWSER_NOTEBOOK", REPO / "notebooks" / "00_tour.ipynb"))
    target = root / "00_tour.ipynb"
    if real.exists():
        target.write_text(real.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        target.write_text(dumps_notebook(release_notebook(_fixture_solution(), "00_tour.ipynb")), encoding="utf-8")
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    with opener.open(url, timeout=5) as r:
        return r.status


def _api(lab: dict, path: str, method: str = "GET"):
    """Call the Jupyter server's REST API (token auth) and return the decoded JSON, or None."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"{lab['url']}{path}", method=method, data=b"" if method == "POST" else None,
                                 headers={"Authorization": f"token {lab['token']}"})
    with opener.open(req, timeout=60) as r:
        body = r.read()
    return json.loads(body) if body else None


def _artifacts(lab: dict) -> Path:
    """Where screenshots go: $LABKIT_TEST_ARTIFACTS when set, else the test's tmp folder."""
    folder = Path(os.environ.get("LABKIT_TEST_ARTIFACTS") or lab["tmp"] / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 with a temp root, HOME and response folder; always stopped."""
    root, home, responses = tmp_path / "root", tmp_path / "home", tmp_path / "responses"
    for d in (root, home, responses):
        d.mkdir()
    write_lab_settings(tmp_path / "settings")
    port, token = _free_port(), "labkit-browser-test"
    env = dict(os.environ, HOME=str(home), JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), LABKIT_RESPONSES_DIR=str(responses),
               LABKIT_STUDENT_ID=STUDENT,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(var, None)
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
        + (["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited early:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            try:
                if _get(f"http://127.0.0.1:{port}/api/status?token={token}") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start in 120 s:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            time.sleep(1)
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "root": root, "responses": responses,
               "tmp": tmp_path}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        log.close()


def _code_cell_index(nb_path: Path, needle: str) -> int:
    """Index, among code cells, of the first one whose source contains needle."""
    return code_index(json.loads(nb_path.read_text(encoding="utf-8")), lambda src, tags: needle in src)


@contextlib.contextmanager
def _notebook_page(lab: dict, nb_path: Path, viewport: dict, failure_shot: Path):
    """Chromium on JupyterLab with `nb_path` open, kernel idle, parameters cell run; a screenshot on failure."""
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(lab["tmp"] / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport=viewport)
        page = context.pages[0] if context.pages else context.new_page()
        try:
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{lab['url']}/lab/tree/{nb_path.name}?token={lab['token']}")
            page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
            # kernel ready: the toolbar's kernel status shows idle
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
            run_cell(page, 0)  # parameters: student_id = None -> falls back to $LABKIT_STUDENT_ID
            yield page
        except Exception:
            page.screenshot(path=str(failure_shot), full_page=True)  # the page as it was, for the failure report
            print(f"screenshot of the failure: {failure_shot}")
            raise
        finally:
            context.close()


def test_student_answers_quiz_in_jupyterlab(lab):
    nb_path = _student_notebook(lab["root"])
    source = validate_source(read_yaml(REPO / "solutions" / "quiz" / "00.yaml"), "00")
    question = next(q for q in source if q["id"] == QUESTION)
    right = question["answer"]
    wrong = next(o for o in question["options"] if o != right)
    quiz_index = _code_cell_index(nb_path, "show_quiz(")
    shot = lab["tmp"] / "browser.png"

    with _notebook_page(lab, nb_path, {"width": 1400, "height": 1000}, shot) as page:
        expect(page.locator(".jp-Notebook .jp-CodeCell").nth(0).locator(".jp-InputPrompt")).to_have_text(
            re.compile(r"\[\d+\]"), timeout=TIMEOUT_MS)
        run_cell(page, quiz_index)
        box = page.locator(f".labkit-quiz .labkit-q-{QUESTION}")
        try:
            box.wait_for(timeout=TIMEOUT_MS)
        except Exception:
            page.screenshot(path=str(shot))
            output = page.locator(".jp-Notebook .jp-CodeCell").nth(quiz_index).inner_text()
            raise AssertionError(f"the quiz did not render; the quiz cell shows:\n{output}\n(screenshot {shot})")
        feedback = box.locator(".labkit-feedback")

        box.locator("label", has_text=wrong).click()
        box.locator("button.labkit-check").click()
        expect(feedback).to_contain_text("Not quite", timeout=60_000)
        wrong_feedback = feedback.inner_text()

        box.locator("label", has_text=right).click()
        box.locator("button.labkit-check").click()
        expect(feedback).to_contain_text("Correct", timeout=60_000)
        right_feedback = feedback.inner_text()
        page.screenshot(path=str(shot), full_page=True)

        # a kernel restart, then the same cells again: the quiz shows the earlier answer and score
        kernel = next(s["kernel"]["id"] for s in _api(lab, "/api/sessions") if s["path"].endswith(nb_path.name))
        _api(lab, f"/api/kernels/{kernel}/restart", method="POST")
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
        run_cell(page, 0)
        run_cell(page, quiz_index)
        quiz_cell = page.locator(".jp-Notebook .jp-CodeCell").nth(quiz_index)
        expect(quiz_cell.locator(".labkit-score")).to_contain_text("earlier answers included", timeout=TIMEOUT_MS)
        restored_score = quiz_cell.locator(".labkit-score").inner_text()
        box = quiz_cell.locator(f".labkit-q-{QUESTION}")
        expect(box.locator(".labkit-feedback")).to_contain_text("Correct", timeout=60_000)
        restored_feedback = box.locator(".labkit-feedback").inner_text()
        checked = box.locator(".labkit-option input:checked")
        expect(checked).to_have_count(1)
        restored_choice = box.locator(".labkit-option", has=page.locator("input:checked")).inner_text()
        box.scroll_into_view_if_needed()
        box.screenshot(path=str(_artifacts(lab) / "quiz_restored.png"))
        print(f"screenshot of the restored question: {_artifacts(lab) / 'quiz_restored.png'}")
        page.screenshot(path=str(shot), full_page=True)

    assert "Hint" in wrong_feedback
    assert "300 images" in right_feedback  # the decrypted explanation is shown after the right answer
    records = [json.loads(line) for line in (lab["responses"] / f"{STUDENT}.jsonl").read_text().splitlines()]
    mine = [r for r in records if r["question"] == QUESTION]
    assert [(r["answer"], r["correct"]) for r in mine] == [(wrong, False), (right, True)]
    assert all(r["student_id"] == STUDENT and r["bank"] == "00" for r in mine)
    # after the restart: the right answer is ticked again, with its feedback and the score, and nothing new recorded
    assert restored_choice.strip() == right.strip()
    assert "earlier answer" in restored_feedback and "300 images" in restored_feedback
    assert "Score: 1/" in restored_score
    assert len((lab["responses"] / f"{STUDENT}.jsonl").read_text().splitlines()) == len(records)


# measured in the page, in one go (nothing scrolls in between): every option row, its text and its checkbox
_MEASURE_JS = """
() => [...document.querySelectorAll('.labkit-quiz .labkit-question')].map(q => ({
  question: [...q.classList].find(c => c.startsWith('labkit-q-')),
  options: [...q.querySelectorAll('.labkit-option')].map(o => {
    const label = o.querySelector('label.widget-label-basic'), text = label.querySelector('span'),
          input = label.querySelector('input');
    const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    return {text: text.textContent, row: box(o), label: box(label), span: box(text), input: box(input),
            lineHeight: parseFloat(getComputedStyle(text).lineHeight) || 16,
            clipped: text.scrollWidth > text.clientWidth + 1 || text.scrollHeight > text.clientHeight + 1,
            whiteSpace: getComputedStyle(text).whiteSpace};
  }),
}))
"""


# every number box of every bank: its placeholder's width in the box's own font, and the room the box has for it
_PLACEHOLDER_JS = """
() => [...document.querySelectorAll('.labkit-quiz .labkit-input input[type="text"]')].map(i => {
  const s = getComputedStyle(i), ctx = document.createElement('canvas').getContext('2d');
  ctx.font = `${s.fontStyle} ${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
  return {placeholder: i.placeholder, width: ctx.measureText(i.placeholder).width,
          room: i.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight)};
})
"""


def _overlap(a, b) -> bool:
    """Whether two [left, top, right, bottom] boxes share more than a pixel of area."""
    return min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1


def _inside(inner, outer, slack=1.0) -> bool:
    return (inner[0] >= outer[0] - slack and inner[1] >= outer[1] - slack and inner[2] <= outer[2] + slack
            and inner[3] <= outer[3] + slack)


def test_every_bank_lays_out_options_without_overlap(lab):
    """All banks in one notebook at 1300 px: option texts wrap inside their own rows, no two texts overlap, and
    every option's checkbox is visible and would receive a click."""
    banks = sorted(p.stem for p in PACKAGE_BANKS.glob("*.yaml"))
    nb_path = lab["root"] / "all_quizzes.ipynb"
    src = ("from labkit.quiz import show_quiz\n"
           f"quizzes = [show_quiz(bank, student_id='layout-check') for bank in {banks!r}]")
    nb_path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": "allbanks", "metadata": {}, "outputs": [],
                   "source": src}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    shots = _artifacts(lab)
    # tall: one screenshot holds a whole bank
    with _notebook_page(lab, nb_path, {"width": 1300, "height": 2400}, shots / "failure.png") as page:
        expect(page.locator(".labkit-quiz")).to_have_count(len(banks), timeout=TIMEOUT_MS)
        expect(page.locator(".labkit-quiz .labkit-question").last.locator(".labkit-check")).to_be_visible()
        page.wait_for_timeout(500)  # let the last rows settle their layout
        measured = page.evaluate(_MEASURE_JS)
        number_boxes = page.evaluate(_PLACEHOLDER_JS)
        for i, bank in enumerate(banks):
            quiz = page.locator(".labkit-quiz").nth(i)
            quiz.scroll_into_view_if_needed()
            quiz.screenshot(path=str(shots / f"quiz_{bank}.png"))
        options = page.locator(".labkit-quiz .labkit-option input[type='checkbox']")
        n_options = options.count()
        for k in range(n_options):
            control = options.nth(k)
            expect(control).to_be_visible()
            control.click(trial=True, timeout=30_000)  # actionable: visible, enabled, not covered by anything
    print(f"quiz screenshots: {shots}/quiz_*.png")

    expected = sum(len(q["options"]) for b in banks
                   for q in validate_source(read_yaml(REPO / "solutions" / "quiz" / f"{b}.yaml"), b)
                   if q["kind"] in ("single", "multiple"))
    rows = [o for q in measured for o in q["options"]]
    assert len(rows) == n_options == expected
    problems = []
    for q in measured:
        opts = q["options"]
        for o in opts:
            name = f"{q['question']}: {o['text'][:50]!r}"
            if o["clipped"] or o["whiteSpace"] == "nowrap":
                problems.append(f"{name}: text is cut off or does not wrap ({o['whiteSpace']})")
            if not _inside(o["span"], o["label"]) or not _inside(o["label"], o["row"]):
                problems.append(f"{name}: text sticks out of its row")
            w, h = o["input"][2] - o["input"][0], o["input"][3] - o["input"][1]
            if w < 8 or h < 8:
                problems.append(f"{name}: checkbox is {w:.0f} x {h:.0f} px")
        for a in range(len(opts)):
            for b in range(a + 1, len(opts)):
                if _overlap(opts[a]["span"], opts[b]["span"]) or _overlap(opts[a]["row"], opts[b]["row"]):
                    problems.append(f"{q['question']}: options {a + 1} and {b + 1} overlap")
    spans = [o["span"] for o in rows]
    problems += [f"option texts {a} and {b} overlap" for a in range(len(spans)) for b in range(a + 1, len(spans))
                 if _overlap(spans[a], spans[b])]
    numeric = sum(q["kind"] == "numeric" for b in banks
                  for q in validate_source(read_yaml(REPO / "solutions" / "quiz" / f"{b}.yaml"), b))
    assert len(number_boxes) == numeric
    problems += [f"number box placeholder {b['placeholder']!r} is cut off ({b['width']:.0f} px of text in "
                 f"{b['room']:.0f} px)" for b in number_boxes if b["width"] > b["room"]]
    assert problems == [], "\n".join(problems)
    wrapped = [o for o in rows if o["span"][3] - o["span"][1] > 1.6 * o["lineHeight"]]
    assert wrapped, "no option text wrapped at 1300 px: the long options should take two lines or more"


# ---- the whole released 00_tour, as a student works through it ------------------------------------------------------

GUESS = "pretrained ahead by more than 15 points"  # an option of the prediction 00-random-vs-pretrained
PREDICTION = "00-random-vs-pretrained"
WRONG_PROBE = "my_probe_acc = 0.5\n"
# the student's answer to exercise 1, typed into its cell (the model solution of solutions/00_tour.ipynb)
RIGHT_PROBE = """from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

scaler = StandardScaler().fit(X_train)
clf = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(X_train), y_train)
my_probe_acc = float((clf.predict(scaler.transform(X_test)) == y_test).mean())
"""


def _released_tour(root: Path) -> Path:
    """notebooks/00_tour.ipynb as `labkit release` makes it from solutions/ now."""
    solution = json.loads((REPO / "solutions" / "00_tour.ipynb").read_text(encoding="utf-8"))
    target = root / "00_tour.ipynb"
    target.write_text(dumps_notebook(release_notebook(solution, "00_tour.ipynb")), encoding="utf-8")
    return target


def _cell(page, index: int):
    return page.locator(".jp-Notebook .jp-CodeCell").nth(index)


def _wait_done(page, index: int, timeout_ms: int = TIMEOUT_MS) -> None:
    """Wait until code cell `index` has run: its prompt shows a number, not "[*]" or "[ ]"."""
    expect(_cell(page, index).locator(".jp-InputPrompt").first).to_have_text(re.compile(r"\[\d+\]"),
                                                                           timeout=timeout_ms)


def _run_cells(page, indices) -> None:
    """Run code cells one after the other (the kernel queues them) and wait for the last one."""
    indices = list(indices)
    for i in indices:
        run_cell(page, i)
    _wait_done(page, indices[-1])


def _type_into(page, index: int, text: str) -> None:
    """Replace the source of code cell `index` with `text`, as typed into its editor (no auto-indent, no brackets
    closed for us: the text is inserted as it stands)."""
    editor = _cell(page, index).locator(".jp-InputArea-editor .cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(text)
    expect(editor).to_contain_text(text.strip().splitlines()[-1])


def _shoot(page, locators, path: Path) -> None:
    """One picture of everything in `locators` (scrolled to the first of them), or of the first alone when they do
    not fit in the window together."""
    locators[0].evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    boxes = [loc.bounding_box() for loc in locators]
    view = page.viewport_size
    if all(boxes) and max(b["y"] + b["height"] for b in boxes) <= view["height"] and min(b["y"] for b in boxes) >= 0:
        left, top = min(b["x"] for b in boxes), min(b["y"] for b in boxes)
        right, bottom = max(b["x"] + b["width"] for b in boxes), max(b["y"] + b["height"] for b in boxes)
        page.screenshot(path=str(path), clip={"x": left, "y": top, "width": right - left, "height": bottom - top})
    else:
        locators[0].screenshot(path=str(path))


def _output_text(page, index: int) -> str:
    return _cell(page, index).locator(".jp-OutputArea").first.inner_text()


def test_student_works_through_the_released_tour(lab):
    """The released 00_tour in JupyterLab, cell by cell as a student runs it: a guess recorded in the prediction
    widget and shown beside the measured gap after the run; exercise 1 answered wrong, then right; a quiz question
    answered; then the kernel restarted from the toolbar and the guess and the answer shown again."""
    nb_path = _released_tour(lab["root"])
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    n_code = sum(c["cell_type"] == "code" for c in nb["cells"])
    at = {key: _code_cell_index(nb_path, needle) for key, needle in {
        "imports": "import labkit\n", "predict": f'labkit.predict("{PREDICTION}"', "reveal": "guess_gap.reveal(",
        "exercise": "my_probe_acc = None", "check": 'check_ex("00-probe-by-hand"', "quiz": "show_quiz("}.items()}
    assert at["predict"] < at["reveal"] < at["exercise"] < at["check"] < at["quiz"]
    source = validate_source(read_yaml(REPO / "solutions" / "quiz" / "00.yaml"), "00")
    right = next(q for q in source if q["id"] == QUESTION)["answer"]
    shots = _artifacts(lab)
    seen: dict = {}

    with _notebook_page(lab, nb_path, {"width": 1400, "height": 1300}, shots / "tour_failure.png") as page:
        # (a) predict: run up to the prediction cell, choose an option, record it
        _run_cells(page, range(1, at["predict"] + 1))
        widget = _cell(page, at["predict"]).locator(".labkit-prediction")
        widget.locator(".labkit-option label", has_text=GUESS).click()
        widget.locator("button", has_text="Record my guess").click()
        expect(widget).to_contain_text(f"Your prediction: {GUESS}", timeout=60_000)
        _shoot(page, [widget], shots / "tour_1_prediction_recorded.png")
        # ... run the experiment and the reveal cell
        _run_cells(page, range(at["predict"] + 1, at["reveal"] + 1))
        expect(_cell(page, at["reveal"]).locator(".jp-OutputArea")).to_contain_text("Measured in this run:")
        seen["reveal"] = _output_text(page, at["reveal"])
        expect(widget).to_contain_text("Measured in this run:", timeout=60_000)  # the widget shows it too
        seen["widget"] = widget.inner_text()
        _shoot(page, [_cell(page, at["reveal"])], shots / "tour_2_prediction_revealed.png")
        _shoot(page, [widget], shots / "tour_3_prediction_widget_after_run.png")

        # (b) exercise 1: a wrong answer first, then the right one; the check cell says which
        _run_cells(page, range(at["reveal"] + 1, at["exercise"]))
        for attempt, (code, verdict) in enumerate([(WRONG_PROBE, "❌"), (RIGHT_PROBE, "✅")]):
            _type_into(page, at["exercise"], code)
            _run_cells(page, [at["exercise"], at["check"]])
            check_output = _cell(page, at["check"]).locator(".jp-OutputArea")
            expect(check_output).to_contain_text(verdict, timeout=120_000)
            seen[f"check_{attempt}"] = _output_text(page, at["check"])
            _shoot(page, [_cell(page, at["exercise"]), _cell(page, at["check"])],
                   shots / f"tour_{4 + attempt}_exercise_{'wrong' if attempt == 0 else 'right'}.png")

        # the rest of the notebook, as a student runs it, down to the quiz and the summary
        _run_cells(page, range(at["check"] + 1, n_code))
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        seen["errors"] = [errors.nth(i).inner_text() for i in range(errors.count())]

        # (c) a quiz question answered, then the kernel restarted and the cells run again
        quiz_cell = _cell(page, at["quiz"])
        box = quiz_cell.locator(f".labkit-quiz .labkit-q-{QUESTION}")
        box.locator("label", has_text=right).click()
        box.locator("button.labkit-check").click()
        expect(box.locator(".labkit-feedback")).to_contain_text("Correct", timeout=60_000)
        _shoot(page, [quiz_cell.locator(".labkit-title"), box], shots / "tour_6_quiz_answered.png")
        answered = (lab["responses"] / f"{STUDENT}.jsonl").read_text(encoding="utf-8")

        page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:restart-kernel']").first.click()
        page.locator(".jp-Dialog .jp-mod-accept", has_text="Restart").click()
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
        page.wait_for_timeout(1000)  # let the restart settle before the first cell is queued
        _run_cells(page, [0, at["imports"], at["predict"], at["quiz"]])
        widget = _cell(page, at["predict"]).locator(".labkit-prediction")
        expect(widget).to_contain_text(f"Your prediction: {GUESS} (restored from an earlier session)",
                                       timeout=60_000)
        seen["restored_guess"] = widget.locator(".labkit-option", has=page.locator("input:checked")).inner_text()
        _shoot(page, [widget], shots / "tour_7_prediction_restored.png")
        quiz_cell = _cell(page, at["quiz"])
        box = quiz_cell.locator(f".labkit-q-{QUESTION}")
        expect(box.locator(".labkit-feedback")).to_contain_text("earlier answer", timeout=60_000)
        expect(quiz_cell.locator(".labkit-score")).to_contain_text("earlier answers included")
        seen["restored_choice"] = box.locator(".labkit-option", has=page.locator("input:checked")).inner_text()
        seen["restored_feedback"] = box.locator(".labkit-feedback").inner_text()
        _shoot(page, [quiz_cell.locator(".labkit-title"), box], shots / "tour_8_quiz_restored.png")
    print(f"screenshots: {shots}/tour_*.png")

    assert seen["errors"] == [], "cells raised:\n" + "\n".join(seen["errors"])
    # the guess beside what the run measured, in the reveal cell and under the widget
    assert f"Your prediction: {GUESS}." in seen["reveal"]
    assert re.search(r"Measured in this run: pretrained 0\.\d{3} vs random init 0\.\d{3}, a gap of [+-]0\.\d{3}\.",
                     seen["reveal"]), seen["reveal"]
    assert "Section 4 says whether this gap" in seen["reveal"]
    assert re.search(r"Measured in this run: pretrained 0\.\d{3}", seen["widget"]), seen["widget"]
    assert seen["widget"].count(f"Your prediction: {GUESS}") == 1, seen["widget"]  # once, above the measured gap
    # the check: not right with 0.5, right with the probe by hand
    assert "❌ `my_probe_acc` is not right yet: got 0.5, which is too low.\nHint: fit the scaler" in seen["check_0"]
    assert "✅ `my_probe_acc` is right. Well done!" in seen["check_1"] and "❌" not in seen["check_1"]
    # what was recorded: the guess once, the quiz answer once, and nothing more after the restart
    records = [json.loads(line) for line in answered.splitlines()]
    assert [(r["bank"], r["question"], r["kind"], r["answer"]) for r in records if r["bank"] == "predictions"] == [
        ("predictions", PREDICTION, "prediction", GUESS)]
    assert [(r["question"], r["answer"], r["correct"]) for r in records if r["bank"] == "00"] == [
        (QUESTION, right, True)]
    assert all(r["student_id"] == STUDENT for r in records)
    assert (lab["responses"] / f"{STUDENT}.jsonl").read_text(encoding="utf-8") == answered
    # after the restart: the same guess and the same answer are shown again
    assert seen["restored_guess"].strip() == GUESS
    assert seen["restored_choice"].strip() == right.strip()
    assert "Correct" in seen["restored_feedback"]
