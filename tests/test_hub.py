"""A real JupyterHub on loopback: two students log in (DummyAuthenticator), each server runs as the same OS user
(SimpleLocalProcessSpawner, as every user is `jovyan` on zero-to-jupyterhub images), each answers a quiz question
and runs `labkit quiz submit`; the instructor collects and grades: two students, each with their own answers.

Two tests: one answers in a kernel over HTTP (no browser needed); the other is what a student does, in Chromium
(Playwright): the hub's login form, JupyterLab in the student's own server, the released notebook 00_tour, a click
on an answer in the quiz widget, then `!labkit quiz submit` typed into a new cell. Screenshots of each student's
answered question go to the test's tmp folder, and are copied to $LABKIT_HUB_SHOTS when it is set.

Needs `jupyterhub` (pip) and `configurable-http-proxy` (npm): `scripts/hub-deps.sh` installs both; the browser
test also needs Debian's chromium and Playwright (as tests/test_browser.py)."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from _browser import CHROMIUM, CHROMIUM_FLAGS, code_index, run_cell, write_lab_settings

from labkit.quiz.exchange import collect, init_exchange
from labkit.quiz.grade import grade

BIN = Path(sys.executable).parent
HUB = shutil.which("jupyterhub", path=str(BIN)) or shutil.which("jupyterhub")
SINGLEUSER = shutil.which("jupyterhub-singleuser", path=str(BIN)) or shutil.which("jupyterhub-singleuser")
PROXY = shutil.which("configurable-http-proxy")
Q = "satellite-strategy"
RIGHT = ("Freeze the backbone, train a linear head on its features, and only then consider unfreezing the top block "
         "with a small learning rate.")
WRONG = "Train the whole network from scratch, so that ImageNet habits do not get in the way."
DEADLINE_S = 300  # the HTTP test; a hub, two servers and two kernels: 30 s when idle, 80 s on two busy cores
REPO = Path(__file__).resolve().parents[1]
BROWSER_TIMEOUT_MS = 300_000  # 2 shared cores: a spawn, JupyterLab's first load and a kernel start take a while
_SHOTS_ENV = os.environ.get("LABKIT_HUB_SHOTS")  # a folder to copy the screenshots to; unset: tmp folder only
SHOTS = Path(_SHOTS_ENV) if _SHOTS_ENV else None
MARKER_ENV = "LABKIT_HUBTEST_RUN"  # set in every process the hub spawns: what cleanup looks for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.hub,
    pytest.mark.skipif(HUB is None or SINGLEUSER is None,
                       reason="jupyterhub is not installed (run scripts/hub-deps.sh: pip install jupyterhub)"),
    pytest.mark.skipif(PROXY is None, reason="configurable-http-proxy is not on PATH (run scripts/hub-deps.sh: "
                                             "npm install -g configurable-http-proxy)"),
]

# what each student types into a notebook cell: answer through the quiz API (an attempt on the record), submit
KERNEL_SNIPPET = """
import os, subprocess, sys
from labkit.quiz import load_bank
question = load_bank("00").question({q!r})
for answer in {answers!r}:
    result = question.check(answer)
    print("CHECK", result.correct, result.attempt)
run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "labkit"), "quiz", "submit"],
                     capture_output=True, text=True)
print("SUBMIT", run.returncode, run.stdout.strip(), run.stderr.strip())
print("WHO", os.environ.get("JUPYTERHUB_USER"), os.getuid(), os.environ.get("HOME"))
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _opener(jar=None):
    handlers = [urllib.request.ProxyHandler({})]  # loopback: never through a proxy
    if jar is not None:
        handlers.append(urllib.request.HTTPCookieProcessor(jar))
    return urllib.request.build_opener(*handlers)


def _api(url: str, token: str, method: str = "GET", body=None, timeout: float = 30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with _opener().open(req, timeout=timeout) as r:
        text = r.read().decode()
        return r.status, (json.loads(text) if text.strip() else None)


def _login(base: str, name: str) -> int:
    """Log in through the hub's login form, as a student in a browser would (any password: DummyAuthenticator)."""
    jar = http.cookiejar.CookieJar()
    opener = _opener(jar)
    with opener.open(f"{base}/hub/login", timeout=30) as r:
        page = r.read().decode()
    xsrf = re.search(r'name="_xsrf"\s+value="([^"]+)"', page)
    form = {"username": name, "password": "any"} | ({"_xsrf": xsrf.group(1)} if xsrf else {})
    req = urllib.request.Request(f"{base}/hub/login?next=%2Fhub%2Fhome", data=urllib.parse.urlencode(form).encode(),
                                 method="POST")
    with opener.open(req, timeout=60) as r:
        assert any(c.name.startswith("jupyterhub-session") for c in jar), "the hub set no session cookie"
        return r.status


async def _execute(ws_url: str, token: str, code: str, timeout: float) -> str:
    """Run code in a kernel over the Jupyter websocket protocol; returns its stdout (raises on an error)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id, out = uuid.uuid4().hex, []
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3", "date": dt.datetime.now(dt.timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    end = time.monotonic() + timeout
    try:
        while True:
            raw = await asyncio.wait_for(ws.read_message(), max(1.0, end - time.monotonic()))
            if raw is None:
                raise AssertionError(f"the kernel websocket closed; output so far: {''.join(out)}")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise AssertionError("\n".join(content.get("traceback", [])) + "\n" + "".join(out))
            elif kind == "execute_reply":
                return "".join(out)
    finally:
        ws.close()


def _marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries this run's marker: the servers the hub spawned, their kernels and
    terminals (each in a session of its own, so killing the hub's process group does not reach them)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return pids


def _end_marked(marker: str) -> list[int]:
    """SIGTERM, then SIGKILL, whatever this run spawned and is still alive; returns the pids that had to be ended."""
    if not Path("/proc").is_dir():
        return []
    ended = []
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        pids = _marked_pids(marker)
        if not pids:
            break
        ended += pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        end = time.monotonic() + grace
        while _marked_pids(marker) and time.monotonic() < end:
            time.sleep(0.2)
    return sorted(set(ended))


@contextlib.contextmanager
def _hub(root: Path, exchange: Path):
    port, hub_port, api_port = _free_ports(3)
    token = secrets.token_hex(24)
    marker = uuid.uuid4().hex
    args = ["--allow-root"] if os.geteuid() == 0 else []
    (root / "jupyterhub_config.py").write_text(f"""
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{PROXY!r}]
c.ConfigurableHTTPProxy.pid_file = {str(root / "proxy.pid")!r}
c.JupyterHub.db_url = "sqlite:///{root / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = {str(root / "cookie_secret")!r}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(root / "home" / "{username}")!r}
c.Spawner.cmd = [{SINGLEUSER!r}]
c.Spawner.args = {args!r}
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 240
c.Spawner.http_timeout = 240
c.Spawner.environment = {{"LABKIT_EXCHANGE": {str(exchange)!r}, "LABKIT_COURSE": "hubtest",
                          "LABKIT_OFFLINE": "1", "PATH": {str(BIN) + os.pathsep + os.environ.get("PATH", "")!r},
                          {MARKER_ENV!r}: {marker!r}}}
c.JupyterHub.services = [{{"name": "labkit-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": ["labkit-test"]}}]
c.JupyterHub.cleanup_servers = True
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "JUPYTERHUB_"))}
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    log = (root / "hub.log").open("w")
    proc = subprocess.Popen([HUB, "-f", str(root / "jupyterhub_config.py")], cwd=root, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while True:
            try:
                _api(f"{base}/hub/api/", token, timeout=5)
                break
            except (OSError, urllib.error.URLError):
                if proc.poll() is not None or time.monotonic() > end:
                    raise AssertionError("the hub did not start:\n" + (root / "hub.log").read_text()[-4000:])
                time.sleep(0.5)
        yield base, token, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the hub stops the users' servers and its proxy
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        leftovers = _end_marked(marker)  # servers or kernels the hub did not stop (a hub killed hard, a hung kernel)
        if leftovers:
            print(f"cleanup: ended {len(leftovers)} processes the hub left behind: {leftovers}")


def _wait_ready(base: str, token: str, name: str, end: float) -> None:
    started = False
    while True:
        _, user = _api(f"{base}/hub/api/users/{name}", token)
        server = (user.get("servers") or {}).get("")
        if server and server.get("ready"):
            return
        if not server and not started:  # the login did not start one (an older hub): ask for it
            with contextlib.suppress(urllib.error.HTTPError):
                _api(f"{base}/hub/api/users/{name}/server", token, method="POST")
            started = True
        if time.monotonic() > end:
            raise AssertionError(f"{name}'s server did not start in time: {user}")
        time.sleep(0.5)


def test_two_students_on_a_real_hub_submit_and_are_graded_apart(tmp_path):
    start = time.monotonic()
    end = start + DEADLINE_S
    exchange = tmp_path / "exchange"
    inbound = init_exchange(exchange, "hubtest")
    plan = {"ada": [RIGHT], "bob": [WRONG, RIGHT]}
    with _hub(tmp_path, exchange) as (base, token, _):
        for name in plan:
            assert _login(base, name) == 200
        outputs = {}
        for name, answers in plan.items():
            _wait_ready(base, token, name, end)
            _, kernel = _api(f"{base}/user/{name}/api/kernels", token, method="POST", body={"name": "python3"})
            ws_url = f"ws://127.0.0.1:{urllib.parse.urlsplit(base).port}/user/{name}/api/kernels/{kernel['id']}/channels"
            code = KERNEL_SNIPPET.format(q=Q, answers=answers)
            outputs[name] = asyncio.run(_execute(ws_url, token, code, max(10.0, end - time.monotonic())))
    ada, bob = outputs["ada"], outputs["bob"]
    assert "CHECK True 1" in ada and "SUBMIT 0 Submitted 1 answers as ada" in ada, ada
    assert "CHECK False 1" in bob and "CHECK True 2" in bob and "SUBMIT 0 Submitted 2 answers as bob" in bob, bob
    uid = str(os.getuid())
    assert f"WHO ada {uid} " in ada and f"WHO bob {uid} " in bob  # one OS user for both, as on zero-to-jupyterhub
    for name in plan:  # each answer file sits in that student's own home, under their hub name
        assert (tmp_path / "home" / name / ".labkit" / "responses" / f"{name}.jsonl").exists()

    rows, _ = collect(tmp_path / "collected", exchange, "hubtest")
    assert sorted(r["student"] for r in rows) == ["ada", "bob"] and len(list(inbound.iterdir())) == 2
    grades = grade(tmp_path / "collected")
    assert grades.students == ["ada", "bob"]
    assert [(r["student_id"], r["question"], r["attempts"]) for r in grades.rows] == [("ada", Q, 1), ("bob", Q, 2)]
    assert grades.first_scores == {"ada": {"00": 1}, "bob": {"00": 0}}
    assert grades.scores == {"ada": {"00": 1}, "bob": {"00": 1}}
    assert time.monotonic() - start < DEADLINE_S


# ---- in Chromium: what a student actually does ---------------------------------------------------------------------

def _student_notebook() -> dict:
    """The released student notebook 00_tour (as the image or nbgitpuller puts it into each home); a two-cell
    stand-in (its parameters and quiz cells) when the student copies have not been released yet."""
    released = REPO / "notebooks" / "00_tour.ipynb"
    if released.exists():
        return json.loads(released.read_text(encoding="utf-8"))

    def code(cid, src, tags=()):
        return {"cell_type": "code", "execution_count": None, "id": cid, "metadata": {"tags": list(tags)},
                "outputs": [], "source": src}
    quiz = 'from labkit.quiz import show_quiz\n\nquiz = show_quiz("00", student_id=student_id)'
    return {"cells": [code("params", "student_id = None", ["parameters"]), code("quiz", quiz)],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _seed_home(home: Path, notebook: dict) -> None:
    """A student's home before the first login: the course notebook, and lab settings that keep the test
    deterministic (no news pop-up over the notebook, every cell in the DOM)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "00_tour.ipynb").write_text(json.dumps(notebook, indent=1), encoding="utf-8")
    write_lab_settings(home / ".jupyter" / "lab" / "user-settings")


def _shoot_answered(page, title, box, path: Path) -> None:
    """A picture of the quiz's title (whose answers, where they are saved), its score and the answered question with
    its feedback; only the question when the two do not fit in the window together."""
    title.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    top, bottom = title.bounding_box(), box.bounding_box()
    view = page.viewport_size
    if top and bottom and bottom["y"] + bottom["height"] <= view["height"] and top["y"] >= 0:
        left = min(top["x"], bottom["x"])
        right = max(top["x"] + top["width"], bottom["x"] + bottom["width"])
        page.screenshot(path=str(path), clip={"x": left, "y": top["y"], "width": right - left,
                                              "height": bottom["y"] + bottom["height"] - top["y"]})
    else:
        box.scroll_into_view_if_needed()
        box.screenshot(path=str(path))


def _student_in_chromium(browser, base: str, name: str, answers: list[str], notebook: dict, shots: Path) -> dict:
    """One student's session: log in through the hub's form, wait for their JupyterLab, open 00_tour, run its
    parameters and quiz cells, click each answer in turn and Check it, then add a cell `!labkit quiz submit` and
    run it. Returns what the page showed."""
    from playwright.sync_api import expect

    params = code_index(notebook, lambda src, tags: "parameters" in tags)
    quiz_at = code_index(notebook, lambda src, tags: "show_quiz(" in src)
    context = browser.new_context(viewport={"width": 1400, "height": 1200})  # a browser of their own: own cookies
    page = context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    seen: dict = {"feedback": []}
    try:
        page.goto(f"{base}/hub/login")
        page.fill("#username_input", name)
        page.fill("#password_input", secrets.token_urlsafe(8))  # DummyAuthenticator takes any password
        page.click("#login_submit")
        # the hub spawns the server (spawn-pending page) and sends the student on to JupyterLab
        page.wait_for_url(re.compile(rf"^{re.escape(base)}/user/{re.escape(name)}/lab"), timeout=BROWSER_TIMEOUT_MS)
        seen["lab_url"] = page.url
        page.goto(f"{base}/user/{name}/lab/tree/00_tour.ipynb")
        page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()  # kernel ready
        run_cell(page, params)
        run_cell(page, quiz_at)
        quiz_cell = page.locator(".jp-Notebook .jp-CodeCell").nth(quiz_at)
        box = quiz_cell.locator(f".labkit-quiz .labkit-q-{Q}")
        box.wait_for()
        seen["title"] = quiz_cell.locator(".labkit-title").inner_text()
        feedback = box.locator(".labkit-feedback")
        for i, answer in enumerate(answers, start=1):
            box.locator("label", has_text=answer).click()
            box.locator("button.labkit-check").click()
            expect(feedback).to_contain_text("Correct" if answer == RIGHT else "Not quite", timeout=60_000)
            seen["feedback"].append(feedback.inner_text())
            if i < len(answers):  # the feedback to a wrong answer, before the student tries again
                box.scroll_into_view_if_needed()
                box.screenshot(path=str(shots / f"{name}_attempt{i}.png"))
        seen["rows"] = box.locator(".labkit-option").evaluate_all(
            "rows => rows.map(r => { const b = r.getBoundingClientRect(); "
            "return [b.left, b.top, b.right, b.bottom]; })")
        expect(box.locator(".labkit-option input:checked")).to_have_count(1)
        seen["checked"] = box.locator(".labkit-option", has=page.locator("input:checked")).inner_text().strip()
        page.wait_for_timeout(500)  # let the feedback's layout settle before the picture
        _shoot_answered(page, quiz_cell.locator(".labkit-title"), box, shots / f"{name}_quiz.png")

        # submit as docs/jupyterhub.md says: a new cell below the quiz, `!labkit quiz submit`, run it
        quiz_cell.locator(".jp-InputArea-editor").first.click()
        page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:insert-cell-below']").first.click()
        new_cell = page.locator(".jp-Notebook .jp-CodeCell").nth(quiz_at + 1)
        new_cell.locator(".jp-InputArea-editor").first.click()
        expect(new_cell.locator(".jp-InputArea-editor .cm-content")).to_have_text(re.compile(r"^\s*$"))  # new, empty
        page.keyboard.type("!labkit quiz submit")
        expect(new_cell.locator(".jp-InputArea-editor .cm-content")).to_have_text("!labkit quiz submit")
        run_cell(page, quiz_at + 1)
        output = new_cell.locator(".jp-OutputArea-output")
        expect(output.first).to_contain_text(re.compile("Submitted|error"), timeout=120_000)
        seen["submit"] = output.first.inner_text()
        page.screenshot(path=str(shots / f"{name}_lab.png"), full_page=True)
        return seen
    except Exception:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shots / f"{name}_failure.png"), full_page=True)
            print(f"screenshot of the failure: {shots / f'{name}_failure.png'}")
        raise
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(),
                    reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
def test_two_students_answer_in_chromium_on_a_real_hub_and_are_graded_apart(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    start = time.monotonic()
    exchange = tmp_path / "exchange"
    inbound = init_exchange(exchange, "hubtest")
    shots = tmp_path / "shots"
    shots.mkdir()
    for old in SHOTS.glob("*.png") if SHOTS and SHOTS.is_dir() else ():  # what is there is from this run only
        if old.name.split("_")[0] in ("ada", "bob"):
            old.unlink(missing_ok=True)
    notebook = _student_notebook()
    plan = {"ada": [RIGHT], "bob": [WRONG, RIGHT]}
    for name in plan:
        _seed_home(tmp_path / "home" / name, notebook)
    seen = {}
    try:
        with _hub(tmp_path, exchange) as (base, _token, _), sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            try:
                for name, answers in plan.items():  # one after the other: two servers at once starve two cores
                    seen[name] = _student_in_chromium(browser, base, name, answers, notebook, shots)
            finally:
                browser.close()
    finally:  # the pictures, also of a failure, where they can be looked at after the tmp folder is gone
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: no $LABKIT_HUB_SHOTS
            SHOTS.mkdir(parents=True, exist_ok=True)
            for shot in shots.glob("*.png"):
                shutil.copy2(shot, SHOTS / shot.name)
            print(f"screenshots: {shots} (copied to {SHOTS})")
    wall = time.monotonic() - start
    print(f"two students in Chromium on a hub: {wall:.0f} s")

    for name, answers in plan.items():
        s = seen[name]
        assert f"/user/{name}/lab" in s["lab_url"], s  # the hub sent each student to their own server
        assert f"saved for {name} in" in s["title"] and f"~/.labkit/responses/{name}.jsonl" in s["title"]
        assert s["checked"] == RIGHT
        rows = s["rows"]  # the option rows as drawn: four, each with some height, none over another
        assert len(rows) == 4 and all(b - t > 10 for _, t, _, b in rows), rows
        assert all(min(a[3], b[3]) - max(a[1], b[1]) <= 1 for i, a in enumerate(rows) for b in rows[i + 1:]), rows
        assert "Correct" in s["feedback"][-1] and "300 images" in s["feedback"][-1]  # the decrypted explanation
        assert s["submit"].startswith(f"Submitted {len(answers)} answers as {name} to the hubtest exchange"), s
        records = [json.loads(line) for line in
                   (tmp_path / "home" / name / ".labkit" / "responses" / f"{name}.jsonl").read_text().splitlines()]
        assert [(r["student_id"], r["answer"], r["attempt"]) for r in records] == [
            (name, a, i + 1) for i, a in enumerate(answers)]
    assert "Not quite" in seen["bob"]["feedback"][0] and "Hint" in seen["bob"]["feedback"][0]
    for shot in ("ada_quiz.png", "bob_quiz.png", "ada_lab.png", "bob_lab.png"):
        assert (shots / shot).stat().st_size > 1000

    rows, notes = collect(tmp_path / "collected", exchange, "hubtest")
    assert notes == [] and sorted(r["student"] for r in rows) == ["ada", "bob"]
    assert len(list(inbound.iterdir())) == 2 and all(r["other_students_records"] == 0 for r in rows)
    grades = grade(tmp_path / "collected")
    assert grades.students == ["ada", "bob"]
    assert [(r["student_id"], r["question"], r["attempts"]) for r in grades.rows] == [("ada", Q, 1), ("bob", Q, 2)]
    assert grades.first_scores == {"ada": {"00": 1}, "bob": {"00": 0}}
    assert grades.scores == {"ada": {"00": 1}, "bob": {"00": 1}}
