"""flask commands: demo, ports, chargers, worker, gateway, serve, check-ledger, create-user."""

from __future__ import annotations

import json
import sys
import threading

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from chargeshed.accounts.models import STAFF_ROLES
from chargeshed.extensions import db

# Feature packages that contribute commands through a module-level COMMANDS list.
FEATURE_COMMAND_MODULES = (
    "chargeshed.sites.cli",
    "chargeshed.settlement.cli",
    "chargeshed.payments.cli",
    "chargeshed.safety.cli",
)


def register(app: Flask) -> None:
    """Attach our commands and the feature packages' commands to the app's CLI."""
    import importlib
    import importlib.util

    for command in (
        demo_command,
        safety_demo_command,
        ports_command,
        chargers_command,
        worker_command,
        gateway_command,
        serve_command,
        check_ledger_command,
        create_user_command,
    ):
        app.cli.add_command(command)
    for name in FEATURE_COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            for command in importlib.import_module(name).COMMANDS:
                app.cli.add_command(command)


@click.command("demo")
@click.option("--days", default=30, show_default=True, help="Days of simulated history.")
@click.option("--per-day", default=40, show_default=True, help="Charges a day in the history.")
@with_appcontext
def demo_command(days: int, per_day: int) -> None:
    """Load the demo compound (idempotent: does nothing if it exists)."""
    from chargeshed.demo import DEMO_PASSWORD, load_demo

    result = load_demo(days, per_day, sim_speed=float(current_app.config["SIM_SPEED"]))
    if not result["created"]:
        click.echo("Demo compound already loaded.")
        return
    click.echo(
        f"Demo compound loaded: {result['ports']} ports, {result['residents']} residents, "
        f"{result['sessions']} past charges."
    )
    from chargeshed.safety.demo import load_safety_demo

    safety = load_safety_demo(DEMO_PASSWORD)
    if safety.get("created"):
        click.echo("Fire-safety cases loaded (staff sign-in: patrol).")
    click.echo(f"Sign in as resident 13800000001, or staff admin / manager / operator; password {DEMO_PASSWORD}")


@click.command("safety-demo")
@with_appcontext
def safety_demo_command() -> None:
    """Add demo safety cases (and a patrol user) to the demo compound; does nothing twice."""
    from chargeshed.demo import DEMO_PASSWORD
    from chargeshed.safety.demo import load_safety_demo

    with current_app.test_request_context():
        result = load_safety_demo(DEMO_PASSWORD)
    if not result["created"]:
        click.echo(result["reason"])
        return
    click.echo(f"safety demo: {result['cases']} cases; patrol user {result['patrol']} / {DEMO_PASSWORD}")


@click.group("ports", invoke_without_command=True)
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default="text", show_default=True)
@click.pass_context
@with_appcontext
def ports_command(ctx: click.Context, fmt: str) -> None:
    """List every port with its public URL and hardware target (subcommand: bind)."""
    if ctx.invoked_subcommand is not None:
        return
    from chargeshed.sites.models import Port
    from chargeshed.sites.qr import port_url

    base = current_app.config["PUBLIC_BASE_URL"]
    ports = db.session.execute(select(Port).options(joinedload(Port.shed)).order_by(Port.shed_id, Port.number))
    rows = [
        {
            "code": p.code,
            "shed": p.shed.name,
            "shed_id": p.shed_id,
            "number": p.number,
            "url": port_url(base, p.code),
            "hardware_target": p.hardware_target,
        }
        for p in ports.scalars()
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
    else:
        for row in rows:
            click.echo(f"{row['code']}  {row['shed']} #{row['number']:<3} {row['url']}  {row['hardware_target']}")


@ports_command.command("bind")
@click.argument("port_code")
@click.argument("target")
@with_appcontext
def ports_bind_command(port_code: str, target: str) -> None:
    """Wire PORT_CODE to TARGET: sim, ocpp:<id>/<connector>, shelly:<prefix>/<switch>, tasmota:<topic>[/<relay>]."""
    from chargeshed.ports import telemetry
    from chargeshed.ports.targets import TargetError
    from chargeshed.sites.models import Port

    port = db.session.execute(select(Port).where(Port.code == port_code)).scalar_one_or_none()
    if port is None:
        raise click.ClickException(f"no port {port_code}")
    try:
        telemetry.bind(port, target)
    except TargetError as exc:
        raise click.BadParameter(str(exc), param_hint="TARGET") from None
    db.session.commit()
    click.echo(f"{port.code} → {port.hardware_target}")


@click.group("chargers", invoke_without_command=True)
@click.pass_context
def chargers_command(ctx: click.Context) -> None:
    """OCPP charge points: add (prints the AuthorizationKey once), list (link state, last heard)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(chargers_list_command)


@chargers_command.command("add")
@click.argument("charge_point_id")
@click.option("--connectors", type=click.IntRange(1, 99), default=1, show_default=True)
@click.option("--operator-id", type=int, default=None, help="The operator whose staff may see it.")
@with_appcontext
def chargers_add_command(charge_point_id: str, connectors: int, operator_id: int | None) -> None:
    """Register CHARGE_POINT_ID and print its AuthorizationKey (shown this once; stored hashed)."""
    from chargeshed.ports.registry import RegistryError, add_charger

    try:
        added = add_charger(charge_point_id, connectors, operator_id=operator_id)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"charger {charge_point_id}: {connectors} connector(s); bind ports to ocpp:{charge_point_id}/<n>")
    click.echo(f"AuthorizationKey: {added.key}")
    click.echo("Store it in the station now: it is not shown again.", err=True)


@chargers_command.command("list")
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default="text", show_default=True)
@with_appcontext
def chargers_list_command(fmt: str = "text") -> None:
    """Every charge point with its link state, when it was last heard, and whether its charges run
    without a device-side cap (a station that refuses charging profiles)."""
    from chargeshed.ports.registry import charger_rows

    rows = [
        {
            "charge_point_id": c.charge_point_id,
            "connectors": c.connectors,
            "online": bool(link and link.online),
            "last_heard": link.heard_at.isoformat(timespec="seconds") if link and link.heard_at else None,
            "gateway": link.gateway_id if link else None,
            "state": link.state if link else None,
            "device_cap": c.device_cap,
        }
        for c, link in charger_rows()
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for row in rows:
        click.echo(
            f"{row['charge_point_id']:<24} {row['connectors']:>2}  {'online ' if row['online'] else 'offline'}"
            f"  last heard {row['last_heard'] or 'never'}  {row['state'] or ''}"
            + ("" if row["device_cap"] else "  no device-side cap")
        )


@click.command("gateway")
@click.option("--ocpp-host", default=None, help="OCPP listen host (default from OCPP_LISTEN).")
@click.option("--ocpp-port", type=int, default=None, help="OCPP listen port (default from OCPP_LISTEN).")
@with_appcontext
def gateway_command(ocpp_host: str | None, ocpp_port: int | None) -> None:
    """Run the hardware gateway (OCPP stations, MQTT relays) until SIGTERM; shares only the database."""
    from chargeshed.ports.gateway import Gateway, load_adapters

    app = current_app._get_current_object()
    host, _, port = app.config["OCPP_LISTEN"].rpartition(":")
    app.config["OCPP_LISTEN"] = f"{ocpp_host or host or '127.0.0.1'}:{ocpp_port or port or 9000}"
    adapters = load_adapters(app.config)
    gateway = Gateway(app, adapters)
    click.echo(
        f"gateway {gateway.gateway_id}: {', '.join(sorted(gateway.adapters)) or 'no adapters installed'}", err=True
    )
    gateway.run()
    click.echo("gateway: stopped", err=True)


@click.command("worker")
@click.option("--interval", type=float, default=None, help="Seconds between full supervisor ticks.")
@with_appcontext
def worker_command(interval: float | None) -> None:
    """Run the supervisor (port commands, readings, rules) until SIGTERM; shares only the database."""
    from chargeshed.worker import Worker

    app = current_app._get_current_object()
    worker = Worker(app, interval or app.config["WORKER_INTERVAL_SECONDS"])
    worker.install_signal_handlers()
    click.echo(f"worker: ticking every {worker.interval}s", err=True)
    worker.run()
    click.echo("worker: stopped", err=True)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--with-worker", is_flag=True, help="Also run the supervisor in this process (demo).")
@click.option(
    "--gunicorn",
    "use_gunicorn",
    is_flag=True,
    help="Serve with gunicorn (production; settings in chargeshed/gunicorn_conf.py).",
)
@click.option("--workers", type=int, default=None, help="gunicorn worker processes (default WEB_CONCURRENCY).")
@with_appcontext
def serve_command(host: str, port: int, with_worker: bool, use_gunicorn: bool, workers: int | None) -> None:
    """Serve the app until SIGTERM, letting requests in flight finish.

    Production: `serve --gunicorn` (or gunicorn directly, see chargeshed/gunicorn_conf.py) and a
    separate `worker` process. Without --gunicorn a threaded development server is used.
    """
    if use_gunicorn:
        if with_worker:
            raise click.UsageError("run `flask --app chargeshed worker` as its own process with --gunicorn")
        _exec_gunicorn(host, port, workers)
    _serve_threaded(current_app._get_current_object(), host, port, with_worker)


def _exec_gunicorn(host: str, port: int, workers: int | None) -> None:
    """Replace this process by gunicorn, so it receives SIGTERM itself and shuts down gracefully."""
    import os

    argv = [sys.executable, "-m", "gunicorn", "-c", "python:chargeshed.gunicorn_conf", "--bind", f"{host}:{port}"]
    if workers:
        argv += ["--workers", str(workers)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv + ["chargeshed:create_app()"])


def _serve_threaded(app: Flask, host: str, port: int, with_worker: bool) -> None:
    """werkzeug's threaded server; SIGTERM/SIGINT stop accepting, finish requests and the tick, exit 0."""
    import signal

    from werkzeug.serving import WSGIRequestHandler, make_server

    from chargeshed.worker import Worker

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs) -> None:  # the app logs every request itself
            pass

    server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
    server.daemon_threads = False  # server_close() then waits for requests in flight
    worker = supervisor = None
    if with_worker:
        worker = Worker(app, app.config["WORKER_INTERVAL_SECONDS"])
        supervisor = threading.Thread(target=worker.run, name="supervisor", daemon=True)
        supervisor.start()
        click.echo("supervisor running in this process", err=True)

    def shut_down(*_args) -> None:
        # shutdown() waits for serve_forever to return, so it must not run in the serving thread.
        threading.Thread(target=server.shutdown, name="shutdown").start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    click.echo(f"serving on http://{host}:{server.server_port}", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if worker is not None:
            worker.stop()
            supervisor.join(timeout=30)
    click.echo("server stopped", err=True)


@click.command("check-ledger")
@with_appcontext
def check_ledger_command() -> None:
    """Verify the books: balanced transactions, cached balances, holds. Exits 1 on any problem."""
    from chargeshed.charging.sessions import holds_problems
    from chargeshed.money.ledger import check_ledger
    from chargeshed.payments.refunds import pending_refunds_problems

    problems = check_ledger() + holds_problems() + pending_refunds_problems()
    for problem in problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo("ledger OK")


@click.command("create-user")
@click.argument("login")
@click.option("--role", type=click.Choice(STAFF_ROLES), default="admin", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--site-id", type=int, default=None)
@click.option("--operator-id", type=int, default=None)
@with_appcontext
def create_user_command(login: str, role: str, password: str, site_id: int | None, operator_id: int | None) -> None:
    """Create a staff user (e.g. the first admin)."""
    from chargeshed.accounts.services import create_user

    if len(password) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="--password")
    try:
        user = create_user(login, password, role, site_id=site_id, operator_id=operator_id)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"created {user.role} {user.login} (id {user.id})")
