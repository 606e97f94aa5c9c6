"""Real processes for production tests: the web server (gunicorn or werkzeug), the worker, a tiny browser."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLASK = [sys.executable, "-m", "flask", "--app", "chargeshed"]
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')
# Test accounts get a cheap password hash: the hash names its method, so checking it stays cheap too.
FAST_HASH_METHOD = "pbkdf2:sha256:1000"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_instance(directory: str, **settings) -> str:
    """An instance folder whose config.py holds `settings` (read by create_app in every process)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.py"), "w", encoding="utf-8") as handle:
        for key, value in settings.items():
            handle.write(f"{key} = {value!r}\n")
    return directory


def process_env(database_url: str, instance: str, **extra: str) -> dict[str, str]:
    """Environment for a server or worker process: only the database and the instance folder are shared."""
    from chargeshed.config import ENV_KEYS

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ENV_KEYS and not key.startswith(("FLASK_", "WERKZEUG_"))
    }
    env.update(
        DATABASE_URL=database_url,
        CHARGESHED_INSTANCE=instance,
        SECRET_KEY="production-test-secret",
        CHARGESHED_ENV="test",
        PYTHONPATH=ROOT,
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Process:
    """A child process with its output in a log file; stopped with a signal."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: str):
        self.argv, self.env, self.log_path = argv, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115 (handed to the child)
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> int:
        """SIGKILL: no cleanup at all, like a power cut of the process."""
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 15) -> tuple[int, float]:
        """SIGTERM and wait; returns (exit code, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def wait_for_output(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if not self.alive():
                raise AssertionError(f"process exited: {self.output()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen in: {self.output()[-3000:]}")

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class WebServer(Process):
    """`flask serve --gunicorn` (several processes) or the threaded werkzeug server."""

    def __init__(
        self, env: dict[str, str], log_path: str, *, gunicorn: bool = True, workers: int = 3, threads: int = 8
    ):
        self.port = free_port()
        argv = FLASK + ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if gunicorn:
            argv += ["--gunicorn", "--workers", str(workers)]
            env = {**env, "GUNICORN_THREADS": str(threads)}
        super().__init__(argv, env, log_path)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> WebServer:
        super().start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"server exited: {self.output()[-3000:]}")
            try:
                if Browser(self.base).get("/healthz").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not answer: {self.output()[-3000:]}")


class Worker(Process):
    """`flask worker`: the supervisor in its own process."""

    def __init__(self, env: dict[str, str], log_path: str, interval: float = 0.5):
        super().__init__(FLASK + ["worker", "--interval", str(interval)], env, log_path)

    def start(self) -> Worker:
        super().start()
        self.wait_for_output('"worker started"')
        return self


class Reply:
    """An HTTP response: status, headers, text."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def location(self) -> str:
        return urlsplit(self.headers.get("Location", "")).path


class Browser:
    """Just enough of a browser: cookies, CSRF tokens from forms, no redirect following."""

    def __init__(self, base: str):
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Reply:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            sent = dict(headers or {})
            if self.cookies:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            connection.close()
        for header in reply.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0" or morsel["expires"].startswith("Thu, 01 Jan 1970"):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, data: dict | None = None, headers: dict | None = None) -> Reply:
        body = urlencode(data or {}).encode()
        return self.request(
            "POST", path, body, {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        )

    def csrf_token(self, path: str) -> str:
        """The CSRF token of the first form on the page at `path`."""
        reply = self.get(path)
        match = CSRF_RE.search(reply.text)
        assert match, f"no CSRF token on {path} ({reply.status})"
        return match.group(1) or match.group(2)

    def login(self, login: str, password: str) -> Browser:
        """Sign in through the real form (with its CSRF token)."""
        token = self.csrf_token("/login")
        reply = self.post("/login", {"csrf_token": token, "login": login, "password": password})
        assert reply.status == 302, (reply.status, reply.text[:500])
        return self
