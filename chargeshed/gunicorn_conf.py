"""Gunicorn settings for production.

    gunicorn -c python:chargeshed.gunicorn_conf 'chargeshed:create_app()'

or `flask --app chargeshed serve --gunicorn`. Run `flask --app chargeshed worker` beside it:
the web processes never talk to hardware, they queue port commands in the database.

Environment: BIND (127.0.0.1:8000), WEB_CONCURRENCY (worker processes, default 2 × CPUs + 1),
GUNICORN_THREADS (threads per process, 4). gunicorn itself believes no X-Forwarded-* header: the
app's PROXY_FIX setting (the number of trusted proxies) is the one place that decides.
On SIGTERM gunicorn stops accepting, lets requests in flight
finish (up to graceful_timeout) and exits 0.
"""

import gc
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1) + 1)
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
keepalive = 5
timeout = 30
graceful_timeout = 20
# Each request is logged by the app as one JSON line with its request id; no second access log.
accesslog = None
errorlog = "-"
# Forwarded headers are trusted by the app (PROXY_FIX) or not at all: a client that reaches gunicorn
# through a proxy on loopback must not make a request "https" by sending X-Forwarded-Proto itself.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
# Recycle workers now and then so a slow leak can never grow without bound: by count of requests,
# so a busy worker (hundreds of scans a second) is recycled every few minutes, not every few seconds
# (each recycle drops its keep-alive connections and starts with cold caches), and the workers'
# jitter keeps them from recycling together.
max_requests = 100_000
max_requests_jitter = 20_000
# The app is built once, in the master, and each worker is forked from it: a recycled worker serves
# within milliseconds instead of after a second of imports and set-up (while the others carry its
# share). New code is deployed by restarting gunicorn: a HUP re-reads these settings, not the code.
preload_app = True
# Heartbeat files on tmpfs: a blocked disk never makes gunicorn kill healthy workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No shared control socket in the home directory: several instances may run on one host.
control_socket_disable = True


def when_ready(server) -> None:
    """In the master, before the first fork: templates compiled and catalogues loaded once, for all
    workers. A worker recycled after max_requests then answers at once, without a slow first page
    while its share of the connections waits."""
    from chargeshed.web.jinja import warm_up

    warm_up(server.app.wsgi())


def pre_fork(server, worker) -> None:
    """Before each fork, move what the master built (the app, its templates and libraries) out of the
    garbage collector's sight: a worker's full collections then walk only what it made itself, and
    never write to the pages it shares with the master."""
    gc.freeze()


def post_fork(server, worker) -> None:
    """A forked worker starts with empty connection pools (start-up opens no connection; this makes sure)."""
    from chargeshed.extensions import dispose_engines

    app = worker.app.wsgi()
    if hasattr(app, "extensions"):
        dispose_engines(app, close=False)
