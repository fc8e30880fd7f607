"""The `asterisk-miitel` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from . import __version__
from .calls.classify import Outcome
from .config import Config, ConfigError, load_config
from .logs import setup_logging

if TYPE_CHECKING:
    from .ops.calls import ServiceState
    from .outbox.store import Outbox

log = logging.getLogger("asterisk_miitel")

EPILOG = """\
examples:
  asterisk-miitel demo                          a real captured call, end to end, on this machine
  asterisk-miitel setup --pbx plain --dry-run   what installing would change, as a diff
  asterisk-miitel run --config /etc/asterisk-miitel/config.toml
  asterisk-miitel capture --minutes 10          record the PBX's AMI stream (no secrets)
  asterisk-miitel replay capture.log --explain  what each recording would become
  asterisk-miitel status                        running? AMI connected? the last call, problems
  asterisk-miitel calls --state set_aside       recent calls; `calls show ID` for one in full
  asterisk-miitel retry --all-set-aside         re-queue calls after fixing their cause
  asterisk-miitel mock-miitel --port 8765       a local MiiTel stand-in for staging
  asterisk-miitel check --env-file /etc/asterisk-miitel/env   is everything ready?
  asterisk-miitel users import users.csv        extension -> MiiTel user map from a spreadsheet
  asterisk-miitel users list                    the users the service maps extensions to
  asterisk-miitel backfill --since 2026-11-01   the last weeks' recorded calls, from the CDR
"""


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the command must survive the command's
    # own copy of it (`asterisk-miitel --config x status`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="TOML config file (default: $ASTERISK_MIITEL_CONFIG)")
    common.add_argument("--log-format", choices=["text", "json"], default=argparse.SUPPRESS,
                        help="log format")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="verbose logs and tracebacks")

    parser = argparse.ArgumentParser(
        prog="asterisk-miitel",
        description="Sends every recorded Asterisk/FreePBX call to MiiTel, with its recording.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"asterisk-miitel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help_, description=help_, parents=[common],
            epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = add("run", "listen to Asterisk and send every finished call to MiiTel",
              "asterisk-miitel run --config /etc/asterisk-miitel/config.toml")
    run.add_argument("--stop-deadline", type=float, default=10.0,
                     help="seconds to finish in-flight work on SIGTERM (default 10)")

    replay = add("replay", "print the call_data a raw AMI transcript would produce",
                 "asterisk-miitel replay /tmp/ami.log --explain")
    replay.add_argument("file", help="raw AMI transcript (what the AMI socket sent, as "
                        "`capture` records it); - reads standard input")
    replay.add_argument("--explain", action="store_true",
                        help="say, for each party, which rule decided it")

    status = add("status", "is the service running, is AMI connected, the last call, calls "
                 "by state and the latest reasons",
                 "asterisk-miitel status --config /etc/asterisk-miitel/config.toml")
    status.add_argument("--json", action="store_true", help="one JSON object")

    capture = add("capture", "record the PBX's raw AMI stream (secrets never written) to check "
                  "it with `replay --explain` before turning uploads on",
                  "asterisk-miitel capture --minutes 10 --out pbx.ami\n"
                  "  (make a few typical calls meanwhile, then: asterisk-miitel replay pbx.ami "
                  "--explain)")
    capture.add_argument("--minutes", type=float, required=True,
                         help="how long to record (Ctrl-C stops early and keeps the file)")
    capture.add_argument("--out", metavar="FILE",
                         help="file to write (default: ami-capture-<time>.log here; - for "
                         "standard output, e.g. `| asterisk-miitel replay -`)")

    calls = add("calls", "recent calls, newest first: time, id, event_type, parties, state, "
                "reason ('calls show ID': one call in full)",
                "asterisk-miitel calls --state set_aside --since 1d\n"
                "  asterisk-miitel calls show "
                "pbx1:miitel-1795472139-1795472139.4-1.raw:e4e7265ddfab0f6b")
    calls.add_argument("--state", action="append", default=[], metavar="STATE",
                       help="only these states (repeat or comma-separate): waiting_recording, "
                       "ready, posting, created, uploaded, sent, set_aside, skipped; "
                       "in_progress and done as groups")
    calls.add_argument("--since", metavar="WHEN",
                       help="only calls since then: 2026-11-23, 2026-11-23T14:00 (PBX time), "
                       "or how long ago: 30m, 2h, 1d")
    calls.add_argument("--extension", metavar="EXT",
                       help="only calls with this extension, or a party with this number")
    calls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    calls.add_argument("--json", action="store_true", help="one JSON object per line")
    calls_sub = calls.add_subparsers(dest="calls_command", metavar="show")
    show = calls_sub.add_parser(
        "show", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="one call: its call_data, each step with its time, the file, the reason and "
        "the next action",
        description="one call: its call_data, each step with its time, the file, the reason "
        "and the next action",
        epilog="example:\n  asterisk-miitel calls show e4e7265ddfab0f6b   (any unique part "
        "of the id)")
    show.add_argument("id", metavar="ID", help="the call_data_id, or a unique part of it")
    show.add_argument("--json", action="store_true", help="one JSON object")

    retry = add("retry", "put set-aside calls back in line",
                "asterisk-miitel retry "
                "pbx1:miitel-1795472139-1795472139.4-1.raw:e4e7265ddfab0f6b")
    retry.add_argument("ids", nargs="*", metavar="ID", help="call_data_id(s) from `status`")
    retry.add_argument("--all-set-aside", action="store_true", help="every set-aside call")
    retry.add_argument("--force", action="store_true",
                       help="also calls that MiiTel may already have (outcome unknown, expired)")

    mock = add("mock-miitel", "run a local stand-in for MiiTel's Incoming Webhook",
               "asterisk-miitel mock-miitel --port 8765 --data-dir /tmp/miitel")
    mock.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    check = add("check", "check AMI, MiiTel's host, folders and users before going live",
                "asterisk-miitel check --config /etc/asterisk-miitel/config.toml")
    check.add_argument("--listen", type=float, default=5.0, metavar="SECONDS",
                       help="how long to watch AMI events (make a call meanwhile; default 5)")
    check.add_argument("--env-file", metavar="FILE",
                       help="read the secrets from FILE as systemd's EnvironmentFile= does "
                            "(e.g. /etc/asterisk-miitel/env)")

    users = sub.add_parser("users", help="the extension -> MiiTel user map",
                           description="the extension -> MiiTel user map")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    imp = users_sub.add_parser(
        "import", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="import users from a CSV (extension,miitel_user_id,name,number,endpoints)",
        description="check every row of a CSV and write the config's users_file",
        epilog="example:\n  asterisk-miitel users import users.csv --dry-run",
    )
    imp.add_argument("file", help="CSV with a header row, UTF-8 (Excel: CSV UTF-8)")
    imp.add_argument("--output", metavar="FILE",
                     help="users file to write (default: the config's users_file)")
    imp.add_argument("--replace", action="store_true",
                     help="the CSV is the whole list: drop extensions it does not have")
    imp.add_argument("--dry-run", action="store_true", help="check and report; write nothing")
    users_sub.add_parser(
        "list", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="the users the service maps extensions to, one line each",
        description="the users the service maps extensions to ([users] and users_file)",
        epilog="example:\n  asterisk-miitel users list",
    )
    exp = users_sub.add_parser(
        "export", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="the users as a CSV that `users import` reads back",
        description="the users as a CSV (extension,miitel_user_id,name,number,endpoints)",
        epilog="example:\n  asterisk-miitel users export --output users.csv",
    )
    exp.add_argument("--output", metavar="FILE", help="write FILE (default: standard output)")

    setup = add("setup", "install the dialplan, the manager user, the config, the env file "
                "and the systemd unit (idempotent; --dry-run shows the diff)",
                "asterisk-miitel setup --pbx plain --dry-run")
    setup.add_argument("--pbx", choices=["plain", "freepbx"], required=True,
                       help="plain Asterisk, or FreePBX 16/17 (its *_custom.conf files)")
    setup.add_argument("--dry-run", action="store_true",
                       help="print what would change as a unified diff; write nothing")
    setup.add_argument("--force", action="store_true",
                       help="replace files changed locally since setup wrote them (.bak kept)")
    setup.add_argument("--etc", default="/etc/asterisk", metavar="DIR",
                       help="Asterisk's configuration folder (default /etc/asterisk)")
    setup.add_argument("--config-dir", default="/etc/asterisk-miitel", metavar="DIR",
                       help="this service's folder (default /etc/asterisk-miitel)")
    setup.add_argument("--unit-dir", default="/etc/systemd/system", metavar="DIR",
                       help="where the systemd unit goes (default /etc/systemd/system)")
    setup.add_argument("--user", default="asterisk-miitel",
                       help="the service's system user (default asterisk-miitel)")
    setup.add_argument("--ami-user", default="miitel", help="the manager user (default miitel)")
    setup.add_argument("--root", default="/", metavar="DIR",
                       help="put every path under DIR (a test tree, an image being built)")

    backfill = add("backfill", "send recorded calls from the CDR over a date range",
                   "asterisk-miitel backfill --since 2026-11-01 --until 2026-11-20 --dry-run")
    backfill.add_argument("--since", required=True, metavar="DATE",
                          help="YYYY-MM-DD or YYYY-MM-DDTHH:MM (PBX time)")
    backfill.add_argument("--until", metavar="DATE", help="last day, included (default: now)")
    backfill.add_argument("--dry-run", action="store_true",
                          help="queue nothing; print each call_data as a JSON line")

    demo = add("demo", "send a bundled real call through the service to a local MiiTel stand-in",
               "asterisk-miitel demo")
    demo.add_argument("--keep", metavar="DIR", help="keep the demo's files in DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `mock-miitel` has its own options (and --help): hand everything after it over.
    if "mock-miitel" in args_list:
        from .miitel.standin import main as standin_main

        index = args_list.index("mock-miitel")
        rest = args_list[index + 1 :]
        if "-h" not in rest and "--help" not in rest:
            setup_logging("text", "INFO")
        return standin_main(rest)
    parser = _parser()
    args = parser.parse_args(args_list)
    for name, default in (("config", None), ("log_format", None), ("debug", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _dispatch(args)
    except (UserError, ConfigError) as exc:
        print(f"asterisk-miitel: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"asterisk-miitel: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 1


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.log_format:
        config.log.format = args.log_format
    if args.debug:
        config.log.level = "DEBUG"
    secrets = [config.ami.secret.get_secret_value()]
    if config.miitel.webhook_url is not None:
        secrets.append(config.miitel.webhook_url.get_secret_value())
    secrets += [v.get_secret_value() for v in config.miitel.headers.values()]
    setup_logging(config.log.format, config.log.level, secrets)
    return config


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return asyncio.run(run_demo(keep=args.keep, debug=args.debug))
    if args.command == "setup":
        from pathlib import Path

        from .ops.setup import Options, create_service_user, setup_main

        return setup_main(Options(
            pbx=args.pbx, root=Path(args.root), etc=Path(args.etc),
            config_dir=Path(args.config_dir), unit_dir=Path(args.unit_dir), user=args.user,
            ami_user=args.ami_user, dry_run=args.dry_run, force=args.force,
        ), ensure_user=create_service_user)
    if args.command == "users":
        from .ops import users

        if args.users_command == "list":
            return users.users_list_main(args.config)
        if args.users_command == "export":
            return users.users_export_main(args.config, args.output)
        # Before _config(): the users file the import creates may not exist yet.
        return users.users_import_main(args.file, args.config, output=args.output,
                                       replace=args.replace, dry_run=args.dry_run)
    if args.command == "check" and args.env_file:
        import os
        from pathlib import Path

        from .ops.envfile import EnvFileError, read_env_file

        try:  # this process only: the secrets never reach a command line
            os.environ.update(read_env_file(Path(args.env_file)))
        except EnvFileError as exc:
            raise UserError(str(exc)) from None
    config = _config(args)
    if args.command == "check":
        from pathlib import Path

        from .config import config_path
        from .ops.check import check_main

        return check_main(config, listen_seconds=args.listen, config_path=config_path(
            args.config), env_file=Path(args.env_file) if args.env_file else None)
    if args.command == "run":
        return _run(args, config)
    if args.command == "replay":
        return _replay(args, config)
    if args.command == "backfill":
        from .catchup.cli import backfill_main

        return backfill_main(config, args.since, args.until, args.dry_run)
    if args.command == "status":
        return asyncio.run(_status(config, as_json=args.json, config_file=args.config))
    if args.command == "calls":
        return asyncio.run(_calls(args, config))
    if args.command == "capture":
        return _capture(args, config)
    if args.command == "retry":
        return asyncio.run(_retry(args, config))
    raise UserError(f"unknown command {args.command}")


def _run(args: argparse.Namespace, config: Config) -> int:
    from .outbox.lock import OutboxLock, OutboxLocked
    from .service import Service

    # Taken before anything starts: a second `run` on this outbox says who has
    # it in one line and exits 1, having touched nothing.
    lock = OutboxLock(config.outbox.path)
    try:
        lock.acquire()
    except OutboxLocked as exc:
        print(f"asterisk-miitel: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(Service(config, config_path=args.config, outbox_lock=lock)
                    .run_until_signalled(args.stop_deadline))
    finally:
        lock.release()
    return 0


def _replay(args: argparse.Namespace, config: Config) -> int:
    import os

    from .replay import Tally, iter_lines, replay_stream, transcript_problem, verdict

    tally = Tally()

    def emit(outcome: Outcome) -> None:
        tally.add(verdict(outcome, config)[0])
        for line in iter_lines(outcome, args.explain, config):
            print(line, file=sys.stderr if not args.explain else sys.stdout)
        if outcome.call_data is not None and not outcome.skip:
            print(json.dumps(outcome.call_data.payload(), ensure_ascii=False), flush=True)

    name = "standard input" if args.file == "-" else args.file
    try:
        if args.file == "-":  # `capture ... --out - | replay -`, or a pipe from ssh
            if sys.stdin.isatty():
                raise UserError("replay - reads a transcript from standard input: pipe one "
                                "in (`asterisk-miitel capture --minutes 5 --out - | "
                                "asterisk-miitel replay -`)")
            stream = _Counting(sys.stdin.buffer)
            tracker, parser = replay_stream(stream, config, emit, start_time=time.time() - 3600)
        else:
            size = os.path.getsize(args.file)
            with open(args.file, "rb") as fh:
                stream = _Counting(fh)
                show = Progress("replay", size) if size > PROGRESS_FROM else None
                tracker, parser = replay_stream(
                    stream, config, emit, start_time=os.path.getmtime(args.file) - 3600,
                    total=size, progress=show)
                if show is not None:
                    show.finish(f"{tally.total} recording(s)")
    except OSError as exc:
        raise UserError(f"cannot read {name}: {exc.strerror or exc}") from None
    problem = transcript_problem(tracker, parser, stream.count)
    if problem:
        print(f"asterisk-miitel: {name} {problem}", file=sys.stderr)
        return 1
    if not tally.total:
        print(f"no recordings in this transcript ({tracker.stats.events} events, no MixMonitor "
              "started): were calls recorded while it was captured?", file=sys.stderr)
    else:
        print(tally.summary(), file=sys.stderr)
    return 0


def _capture(args: argparse.Namespace, config: Config) -> int:
    import os
    import signal

    from .ami.capture import CaptureError, CaptureStats, capture

    if not 0 < args.minutes <= 24 * 60:
        raise UserError("--minutes must be more than 0 and at most 1440 (a day)")
    secrets = [config.ami.secret.get_secret_value()]
    if config.miitel.webhook_url is not None:
        url = config.miitel.webhook_url.get_secret_value()
        secrets += [url, *url.split("/")[3:]]
    secrets += [v.get_secret_value() for v in config.miitel.headers.values()]
    to_stdout = args.out == "-"
    path = args.out or time.strftime("ami-capture-%Y%m%d-%H%M%S.log")
    if to_stdout:
        out = sys.stdout.buffer
    else:
        try:  # owner-only, never over an existing file: it holds callers' numbers
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise UserError(f"{path} exists: choose another --out") from None
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror}") from None
        out = os.fdopen(fd, "wb")
    where = f"{config.ami.host}:{config.ami.port}"
    print(f"capturing AMI from {where} as {config.ami.username!r} for {args.minutes:g} min "
          f"into {'standard output' if to_stdout else path}; make a few typical calls now "
          "(Ctrl-C stops early)", file=sys.stderr, flush=True)

    def progress(stats: CaptureStats) -> None:
        print(f"capture: {stats.seconds / 60:.0f} min, {stats.events} events, "
              f"{stats.recordings} recording(s) started", file=sys.stderr, flush=True)

    async def go() -> CaptureStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await capture(config.ami, out, args.minutes * 60, secrets=secrets, stop=stop,
                             progress=progress)

    try:
        stats = asyncio.run(go())
    except CaptureError as exc:
        if not to_stdout:
            out.close()
            os.unlink(path)
        raise UserError(str(exc)) from None
    finally:
        if not to_stdout and not out.closed:
            out.close()
    print(f"capture: {stats.ended} after {stats.seconds:.0f} s: {stats.events} events, "
          f"{stats.recordings} recording(s) started, {stats.bytes} bytes"
          + (f", {stats.redacted} secret value(s) redacted" if stats.redacted else ""),
          file=sys.stderr)
    if not to_stdout:
        if not stats.events:
            print("no events arrived: were calls made? Does the AMI user have read = "
                  "call,dialplan,agent,user? (`asterisk-miitel check` says more)",
                  file=sys.stderr)
        print(f"next: asterisk-miitel replay {path} --explain", file=sys.stderr)
    return 0 if stats.ended in ("time is up", "stopped") else 1


class _Counting:
    """A binary stream that counts what was read (empty input is an error)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.count += len(data)
        return data


PROGRESS_FROM = 4 * 1024 * 1024  # bytes: smaller inputs finish before a bar would help


class Progress:
    """Progress on stderr: a live line on a terminal, a line per 10% otherwise."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = max(total, 1)
        self.tty = sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        percent = min(100, done * 100 // self.total)
        if self.tty:
            if percent != self._last:
                print(f"\r{self.what}: {percent:3d}%", end="", file=sys.stderr, flush=True)
        elif percent // 10 != self._last // 10:
            print(f"{self.what}: {percent}%", file=sys.stderr, flush=True)
        self._last = percent

    def finish(self, summary: str) -> None:
        end = "\n" if self.tty else ""
        print(f"{end}{self.what}: done, {summary}", file=sys.stderr, flush=True)


def _open_outbox(config: Config) -> Outbox:
    from .outbox.store import Outbox

    if not config.outbox.path.exists():
        raise UserError(f"no outbox at {config.outbox.path} yet: has `run` been started "
                        "with this config?")
    return Outbox(config.outbox.path)


async def _status(config: Config, *, as_json: bool = False,
                  config_file: str | None = None) -> int:
    import shlex

    from .catchup.runner import status_lines
    from .ops import calls as ops_calls
    from .outbox.manage import RETRY_FORCE, outcome_unknown_lines, status_report

    tz = config.pbx.tz()
    # The exact command, with the same --config: another config is another outbox.
    resend = RETRY_FORCE + (f" --config {shlex.quote(str(config_file))}" if config_file else "")
    async with _open_outbox(config) as outbox:
        # First: calls only a person can settle (MiiTel may have them).
        unknown = await outcome_unknown_lines(outbox, command=resend, tz=tz)
        service = await ops_calls.service_state(outbox)
        last = await ops_calls.recent(outbox, tz, limit=1, suffix=_config_suffix(config_file))
        if as_json:
            doc = {
                "service": service.as_dict(),
                "last_call": last[0].as_dict() if last else None,
                "counts": await outbox.counts(),
                "last_uploaded_at": await outbox.last_uploaded_at(),
                "oldest_waiting_at": await outbox.oldest_waiting(),
                "outcome_unknown": [
                    {"id": row.id, "command": f"{resend} {row.id}"}
                    for row in (await outbox.set_aside_as("outcome_unknown", 1000))[0]
                ],
            }
            print(json.dumps(doc, ensure_ascii=False))
            return 0
        for line in unknown:
            print(line)
        for line in _service_lines(service, config):
            print(line)
        if last:
            print(f"last call: {last[0].text()}")
            print(f"  next: {last[0].action}")
        else:
            print("last call: none yet")
        uploaded = await outbox.last_uploaded_at()
        if uploaded is not None:
            print(f"last upload to MiiTel: {ops_calls.ago(time.time() - uploaded)}")
        print(await status_report(outbox))
        for line in await status_lines(outbox):
            print(line)
    return 0


def _service_lines(service: ServiceState, config: Config) -> list[str]:
    from .ops.calls import ago, when

    if service.running is None:
        return [f"service: unknown ({service.how}): start it with `asterisk-miitel run`"]
    if not service.running:
        return [f"service: NOT running ({service.how})",
                "AMI: not followed while the service is down"]
    pid = f", pid {service.pid}" if service.pid else ""
    lines = [f"service: running ({service.how}{pid})"
             + ("" if service.uploads else "; uploads OFF: no webhook URL configured")]
    ami = service.ami
    if ami is None:
        lines.append("AMI: not followed (the service was started without a listener)")
    elif ami.get("connected"):
        since = ami.get("since")
        lines.append(f"AMI: connected to {ami.get('host')}" + (
            f" since {when(since, config.pbx.tz())} ({ago(time.time() - since)})"
            if since else ""))
    else:
        lines.append(f"AMI: NOT connected to {ami.get('host')}: check that Asterisk runs and "
                     "[ami] (`asterisk-miitel check` says more)")
    return lines


def _config_suffix(config_file: str | None) -> str:
    """` --config FILE` for the commands we print: another config is another outbox."""
    import shlex

    return f" --config {shlex.quote(str(config_file))}" if config_file else ""


async def _calls(args: argparse.Namespace, config: Config) -> int:
    from .ops import calls as ops_calls

    tz = config.pbx.tz()
    suffix = _config_suffix(args.config)
    async with _open_outbox(config) as outbox:
        if args.calls_command == "show":
            try:
                call = await ops_calls.show(outbox, args.id, tz, suffix)
            except LookupError as exc:
                raise UserError(str(exc)) from None
            print(json.dumps(call.as_dict(), ensure_ascii=False) if args.json else call.text())
            return 0
        try:
            states = ops_calls.parse_states(args.state)
            since = ops_calls.parse_since(args.since, tz) if args.since else None
        except ops_calls.BadFilter as exc:
            raise UserError(str(exc)) from None
        if args.limit < 1:
            raise UserError("--limit must be at least 1")
        found = await ops_calls.recent(outbox, tz, states=states, since=since,
                                       extension=args.extension, limit=args.limit,
                                       suffix=suffix)
    for call in found:
        print(json.dumps(call.as_dict(), ensure_ascii=False) if args.json else call.text())
    if not found and not args.json:
        print("no calls" + (" match" if states or since or args.extension else " yet"),
              file=sys.stderr)
    elif len(found) == args.limit and not args.json:
        print(f"(the latest {args.limit}; --limit N for more)", file=sys.stderr)
    return 0


async def _retry(args: argparse.Namespace, config: Config) -> int:
    from .outbox.manage import retry
    from .outbox.store import Outbox

    if not args.ids and not args.all_set_aside:
        raise UserError("name the calls to retry (IDs from `status`) or use --all-set-aside")
    if not config.outbox.path.exists():
        raise UserError(f"no outbox at {config.outbox.path}")
    failed = 0
    async with Outbox(config.outbox.path) as outbox:
        ids = list(args.ids)
        if args.all_set_aside:
            ids += await outbox.all_ids("set_aside")
        for call_id in ids:
            result = await retry(outbox, call_id, config, force=args.force)
            print(f"{call_id}: {result.message}")
            failed += not result.ok
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
