"""The `zt-connector` command: run, service install|uninstall, version."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shlex
import signal
import ssl
import sys
import time
from urllib.parse import urlsplit

from . import __version__, service
from .metrics import MetricsServer
from .supervisor import Settings, Supervisor, go_arch
from .token import InvalidToken, TunnelToken, is_loopback, parse_token, read_token_file, resolve_edge_url

log = logging.getLogger("connector")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}
_LEVEL_TAGS = {"DEBUG": "DBG", "INFO": "INF", "WARNING": "WRN", "ERROR": "ERR", "CRITICAL": "FTL"}


class _Formatter(logging.Formatter):
    """cloudflared-like lines: `2026-11-25T06:41:55Z INF Registered tunnel connection connIndex=0 ...`."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", self.converter(record.created))
        line = f"{stamp} {_LEVEL_TAGS.get(record.levelname, record.levelname)} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger = logging.getLogger("connector")
    logger.handlers[:] = [handler]
    logger.setLevel(_LEVELS.get(level, logging.INFO))
    logger.propagate = False


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zt-connector", description="Connect a private origin to the control plane.")
    parser.add_argument("--version", action="version", version=f"zt-connector version {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{run,service,version}")

    run = commands.add_parser("run", help="run the connector (the token comes from --token, a file or the environment)")
    run.add_argument("--token", default=os.environ.get("TUNNEL_TOKEN"), help="tunnel token (env TUNNEL_TOKEN)")
    run.add_argument(
        "--token-file",
        default=os.environ.get("TUNNEL_TOKEN_FILE"),
        help="file holding the token (env TUNNEL_TOKEN_FILE); --token wins when both are given",
    )
    run.add_argument(
        "--edge",
        default=os.environ.get("TUNNEL_EDGE"),
        help="control plane URL (env TUNNEL_EDGE; overrides the token's)",
    )
    run.add_argument(
        "--edge-ca-file", default=os.environ.get("TUNNEL_EDGE_CA_FILE"), help="CA bundle to verify the control plane"
    )
    run.add_argument(
        "--ha-connections", type=int, default=_env_int("TUNNEL_HA_CONNECTIONS", 2), help="connections to hold (2)"
    )
    run.add_argument(
        "--metrics",
        default=os.environ.get("TUNNEL_METRICS"),
        help="host:port for /ready and /metrics (default: first free of 127.0.0.1:20241-20245, else any port)",
    )
    run.add_argument("--grace-period", type=float, default=30.0, help="seconds to finish in-flight requests (30)")
    run.add_argument(
        "--loglevel", choices=sorted(_LEVELS), default=os.environ.get("TUNNEL_LOGLEVEL", "info"), help="log level"
    )

    svc = commands.add_parser("service", help="install or remove a systemd unit")
    svc_commands = svc.add_subparsers(dest="service_command", metavar="{install,uninstall}")
    install = svc_commands.add_parser("install", help="write the token (0600) and a systemd unit, then start it")
    install.add_argument("token")
    install.add_argument("--edge", default=None, help="control plane URL, when the token has none")
    for sub in (install, svc_commands.add_parser("uninstall", help="stop and remove the unit and the token file")):
        sub.add_argument("--name", default=service.DEFAULT_NAME, help="unit name (zt-connector)")
        sub.add_argument("--unit-dir", default=service.DEFAULT_UNIT_DIR, help="where the unit goes")
        sub.add_argument(
            "--config-dir",
            default=os.environ.get("ZT_CONNECTOR_CONFIG_DIR") or service.DEFAULT_CONFIG_DIR,
            help="where the token file goes ($ZT_CONNECTOR_CONFIG_DIR, else /etc/zt-connector)",
        )
        sub.add_argument("--no-enable", action="store_true", help="only write files; do not call systemctl")
    install.add_argument("--force", action="store_true", help="overwrite an existing unit")

    commands.add_parser("version", help="print the version")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "service":
        if args.service_command == "install":
            return cmd_service_install(args)
        if args.service_command == "uninstall":
            return cmd_service_uninstall(args)
        parser.parse_args(["service", "--help"])
    if args.command == "version":
        print(f"zt-connector version {__version__} (Python {platform.python_version()}, {go_arch()})")
        return 0
    parser.print_help()
    return 2


def _fail(message: str, detail: str = "") -> int:
    print(message, file=sys.stderr)
    if detail:
        print(f"({detail})", file=sys.stderr)
    return 1


def _load_token(args: argparse.Namespace) -> TunnelToken:
    """--token / TUNNEL_TOKEN wins over --token-file / TUNNEL_TOKEN_FILE, as in cloudflared."""
    if args.token:
        return parse_token(args.token)
    if args.token_file:
        return parse_token(read_token_file(args.token_file))
    raise InvalidToken("no token: pass --token, --token-file, or set TUNNEL_TOKEN")


def cmd_run(args: argparse.Namespace) -> int:
    configure_logging(args.loglevel)
    try:
        token = _load_token(args)
    except InvalidToken as exc:
        return _fail(str(exc), exc.detail)
    try:
        url = resolve_edge_url(args.edge, token)
    except ValueError as exc:
        return _fail(f"error: {exc}")
    if not 1 <= args.ha_connections <= 64:
        return _fail("error: --ha-connections must be between 1 and 64")
    context = None
    if url.startswith("wss://"):
        try:
            context = ssl.create_default_context(cafile=args.edge_ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            return _fail(f"error: cannot load --edge-ca-file: {exc}")
    elif not is_loopback(urlsplit(url).hostname or ""):
        log.warning("Connecting to %s without TLS: the tunnel token crosses the network in clear text", url)
    settings = Settings(
        url=url, token=token, ha_connections=args.ha_connections, grace_period=args.grace_period, ssl=context
    )
    log.info("Starting zt-connector version %s, tunnel %s, control plane %s", __version__, token.tunnel_id, url)
    return _run_event_loop(_run(settings, args.metrics))


def _run_event_loop(coro) -> int:
    try:
        import uvloop  # optional speed-up (pip install zt-connector[fast])
    except ImportError:
        return asyncio.run(coro)
    if hasattr(uvloop, "run"):
        return uvloop.run(coro)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # pragma: no cover - old uvloop
    return asyncio.run(coro)


async def _run(settings: Settings, metrics_address: str | None) -> int:
    supervisor = Supervisor(settings)
    metrics = MetricsServer(supervisor)
    try:
        await metrics.start(metrics_address)
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    received = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            log.info("Received %s: draining connections (send it again to exit at once)", name)
            supervisor.stop()
        else:
            log.warning("Received %s again: exiting without draining", name)
            if main_task is not None:
                main_task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            pass
    try:
        await supervisor.run()
    except asyncio.CancelledError:
        return 1
    finally:
        await metrics.close()
    log.info("zt-connector stopped")
    return 0


def cmd_service_install(args: argparse.Namespace) -> int:
    try:
        token = parse_token(args.token)
    except InvalidToken as exc:
        return _fail(str(exc), exc.detail)
    try:
        resolve_edge_url(args.edge, token)
    except ValueError as exc:
        return _fail(f"error: {exc}")
    try:
        unit_path, token_path, managed = service.install(
            token=token.raw,
            edge=args.edge,
            name=args.name,
            unit_dir=args.unit_dir,
            config_dir=args.config_dir,
            enable=not args.no_enable,
            force=args.force,
        )
    except (service.ServiceError, OSError) as exc:
        return _fail(f"error: {exc}")
    if not unit_path:
        _print_without_systemd(token_path, args.edge)
        return 0
    print(f"Wrote {unit_path} and the token to {token_path} (mode 0600).")
    if managed:
        print(f"Enabled and started {args.name}.service; follow it with: journalctl -u {args.name} -f")
    else:
        print(f"Start it with: systemctl daemon-reload && systemctl enable --now {args.name}.service")
    return 0


def _print_without_systemd(token_path: str, edge: str | None) -> None:
    """No systemd on this host (a container, another init system): how to run the connector without it."""
    installed = os.path.join(os.path.dirname(sys.executable), "zt-connector")
    program = installed if os.path.exists(installed) else f"{sys.executable} -m connector"
    command = f"{program} run --token-file {shlex.quote(token_path)}"
    if edge:
        command += f" --edge {shlex.quote(edge)}"
    print("This host does not run systemd (a container, or another init system), so no service was installed.")
    print(f"The token is in {token_path} (mode 0600). Run the connector in the foreground with:")
    print(f"  {command}")
    print(
        "or have your supervisor (supervisord, runit, s6, OpenRC, or the container's entrypoint) run that command and "
        "restart it when it exits."
    )


def cmd_service_uninstall(args: argparse.Namespace) -> int:
    try:
        removed = service.uninstall(
            name=args.name, unit_dir=args.unit_dir, config_dir=args.config_dir, enable=not args.no_enable
        )
    except (service.ServiceError, OSError) as exc:
        return _fail(f"error: {exc}")
    for path in removed:
        print(f"Removed {path}")
    return 0
