"""A real JupyterHub on loopback: two students log in (DummyAuthenticator), each server runs as the same OS user
(SimpleLocalProcessSpawner, as every user is `jovyan` on zero-to-jupyterhub images), each answers a quiz question
in a kernel and runs `labkit quiz submit`; the instructor collects and grades: two students, each with their own
answers. Needs `jupyterhub` (pip) and `configurable-http-proxy` (npm): `scripts/hub-deps.sh` installs both."""
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
DEADLINE_S = 150  # the whole test; a hub, two servers and two kernels start in well under a minute when idle

pytestmark = [
    pytest.mark.slow,
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


@contextlib.contextmanager
def _hub(root: Path, exchange: Path):
    port, hub_port, api_port = _free_ports(3)
    token = secrets.token_hex(24)
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
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = {{"LABKIT_EXCHANGE": {str(exchange)!r}, "LABKIT_COURSE": "hubtest",
                          "LABKIT_OFFLINE": "1", "PATH": {str(BIN) + os.pathsep + os.environ.get("PATH", "")!r}}}
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
