"""`reconcile controller SPEC-DIR... [--git URL --ref REF --poll 60s] [--mode observe|apply]
[--max-disruption none|vm-restart|host-reboot] [--resync 5m] [--listen 127.0.0.1:9180]
[--state PATH|URL] [--notify-webhook URL | --notify-webhook-file FILE] [--events-interval 1s]
[--device-poll 1s|off] [--host-sweep 5m|off] [--lease 10s] [--replica-id ID]`.

Runs until SIGTERM / SIGINT, then exits 0 once the current step is finished or safely abandoned.
Exit 1 when it cannot start (bad options, the status port taken, a bad git source).
"""
from __future__ import annotations

import argparse
import re
import signal
import threading
from pathlib import Path
from typing import Any

from reconciler.commands.drift import usage_errors_exit
from reconciler.commands.options import (add_max_disruption, add_no_probe, add_specs, add_state,
                                       state_path, subcommand)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """'250ms', '1s', '5m', '1h' or plain seconds; more than 0."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 500ms, 30s, 5m, 1h)")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if value <= 0:
        raise argparse.ArgumentTypeError("a duration must be more than 0")
    return value


def duration_or_off(text: str) -> float:
    """A duration, or `off` / `0` (the feature is disabled: 0.0)."""
    if text.strip().lower() in ("off", "0", "0s"):
        return 0.0
    return duration(text)


def listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPV6]:PORT or :PORT (127.0.0.1)."""
    match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):(\d{1,5})$", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, not {text!r}")
    host = match.group(1) or match.group(2) or "127.0.0.1"
    port = int(match.group(3))
    if port > 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range")
    return host, port


def register(subparsers: Any) -> None:
    parser = subcommand(subparsers, "controller", "keep reconciling: watch the spec, the engine and a git ref", __doc__, run)
    add_specs(parser, "SPEC-DIR", "spec files or folders (with --git: one path inside the "
                                  "repository)")
    parser.add_argument("--git", metavar="URL", help="take the spec from this git repository")
    parser.add_argument("--ref", default="main", metavar="REF",
                        help="branch, tag or ref to follow with --git (default main)")
    parser.add_argument("--poll", type=duration, default=60.0, metavar="DURATION",
                        help="how often to fetch the git ref (default 60s)")
    parser.add_argument("--mode", choices=["observe", "apply"], default="observe",
                        help="observe: report only (default); apply: converge within "
                             "--max-disruption")
    add_max_disruption(parser, "none", "the most disruptive actions apply mode may run; the "
                       "rest stay pending")
    parser.add_argument("--resync", type=duration, default=300.0, metavar="DURATION",
                        help="full pass at least this often (default 5m)")
    parser.add_argument("--listen", type=listen_address, default=("127.0.0.1", 9180),
                        metavar="HOST:PORT",
                        help="where to serve /healthz /readyz /metrics /status "
                             "(default 127.0.0.1:9180; port 0 picks one)")
    add_state(parser, "drift history, runs, lock; the git clone lives next to it")
    hook = parser.add_mutually_exclusive_group()
    hook.add_argument("--notify-webhook", metavar="URL",
                      help="POST drift and apply events (JSON) to this URL")
    hook.add_argument("--notify-webhook-file", type=Path, metavar="FILE",
                      help="the same, with the URL read from FILE: webhook URLs usually carry "
                           "a token, which a command line shows to every local user")
    parser.add_argument("--notify-secret-file", type=Path, metavar="FILE",
                        help="sign webhook bodies with the HMAC key in this file")
    parser.add_argument("--events-interval", type=duration, default=1.0, metavar="DURATION",
                        help="how often to poll the engine's events (default 1s)")
    parser.add_argument("--device-poll", type=duration_or_off, default=1.0, metavar="DURATION",
                        help="shortest interval of the poll of the spec's VMs' devices, which "
                             "finds vGPU changes the engine logs no event for; it grows with "
                             "the poll's cost (default 1s; 'off' disables it)")
    parser.add_argument("--host-sweep", type=duration_or_off, default=300.0, metavar="DURATION",
                        help="probe the spec's hosts one at a time, each once per DURATION, "
                             "for host-level drift between full passes (default 5m; 'off')")
    parser.add_argument("--lease", type=duration, default=10.0, metavar="DURATION",
                        help="leader lease of each engine among replicas sharing --state: "
                             "another replica takes over this long after a leader dies "
                             "(default 10s)")
    parser.add_argument("--replica-id", metavar="ID",
                        help="this replica's name in the leases and on /status "
                             "(default HOST:PID:RANDOM)")
    add_no_probe(parser)
    parser.add_argument("--stop-timeout", type=duration, default=240.0, metavar="DURATION",
                        help="on SIGTERM, how long an apply may take to reach a safe point "
                             "before the controller exits anyway (default 4m)")
    usage_errors_exit(parser, 1)


def webhook_url(args: argparse.Namespace) -> str | None:
    """The webhook URL from --notify-webhook, or from the file --notify-webhook-file names."""
    from reconciler.errors import ReconcilerError

    path: Path | None = getattr(args, "notify_webhook_file", None)
    if path is None:
        return args.notify_webhook  # type: ignore[no-any-return]
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ReconcilerError(f"--notify-webhook-file {path}: {reason}") from exc
    urls = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(urls) != 1:
        raise ReconcilerError(f"--notify-webhook-file {path}: want exactly one URL line, found "
                              f"{len(urls)}")
    return urls[0]


def run(args: argparse.Namespace) -> int:
    from reconciler import log
    from reconciler.commands.endpoints import open_endpoint
    from reconciler.controller.loop import ControllerConfig
    from reconciler.controller.notify import WebhookNotifier
    from reconciler.controller.server import ControllerServer
    from reconciler.controller.supervisor import Supervisor
    from reconciler.errors import ReconcilerError
    from reconciler.plan.actions import Disruption

    logger = log.get_logger("controller")
    config = ControllerConfig(
        spec_paths=tuple(args.specs), state=state_path(args), mode=args.mode,
        max_disruption=Disruption(args.max_disruption), resync=args.resync,
        events_interval=args.events_interval, git_url=args.git, git_ref=args.ref,
        git_poll=args.poll, probe=not args.no_probe, device_poll=args.device_poll,
        host_sweep=args.host_sweep, lease_ttl=args.lease, replica=args.replica_id)
    if args.git is None and (args.ref != "main" or args.poll != 60.0):
        raise ReconcilerError("--ref and --poll only apply with --git URL")
    for spec in ([] if args.git else args.specs):
        if not Path(spec).exists():
            raise ReconcilerError(f"{spec}: no such spec file or folder")
    secret: bytes | None = None
    if args.notify_secret_file is not None:
        try:
            secret = args.notify_secret_file.read_bytes().strip()
        except OSError as exc:
            raise ReconcilerError(f"--notify-secret-file {args.notify_secret_file}: "
                                  f"{exc.strerror or exc}") from exc
    url = webhook_url(args)
    notifier = WebhookNotifier(url, secret=secret) if url else None
    controller = Supervisor(config, notifier, open_endpoint=open_endpoint)
    state, metrics = controller.state, controller.metrics
    if notifier is not None:
        metrics.track("notify_dropped", "Webhook events dropped (queue full or undeliverable)",
                      lambda: float(notifier.dropped + notifier.failed))
    server = ControllerServer(state, metrics, host=args.listen[0],  # type: ignore[arg-type]
                              port=args.listen[1]).start()

    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("controller.stopping", signal=signal.Signals(signum).name)
        stop_requested.set()
        controller.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    loop = threading.Thread(target=controller.run, name="reconcile-loop", daemon=True)
    try:
        logger.info("controller.started", mode=args.mode, max_disruption=args.max_disruption,
                    status=server.url, specs=list(args.specs), git=bool(args.git),
                    replica=controller.replica, lease=args.lease)
        loop.start()
        while loop.is_alive() and not stop_requested.wait(0.5):
            pass
        loop.join(args.stop_timeout)
        if loop.is_alive():
            # The journal holds the unfinished step; the next apply reports and re-plans it.
            logger.warning("controller.stop_timeout",
                           stop_timeout=args.stop_timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
        if notifier is not None:
            notifier.close(timeout=5.0)
    if not stop_requested.is_set():
        logger.error("controller.loop_ended")
        return 1
    logger.info("controller.stopped")
    return 0
