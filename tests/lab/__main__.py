"""python -m tests.lab build|start|stop|status|capture [scenario ...]"""

from __future__ import annotations

import argparse
import json
import sys

from . import build, rootfs
from .lab import AMI_HOST, AMI_PORT, ASTERISK_VERSIONS, SIP_HOST, SIP_PORT, Lab
from .rootfs import LabError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab",
                                     description="The real-Asterisk test lab.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or reuse) the cached Debian sid root with "
                       "Asterisk 22, or with --asterisk 16/18/20 that version from source")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--asterisk", choices=ASTERISK_VERSIONS, default="22")
    s = sub.add_parser("start", help="start Asterisk and leave it running (stop with 'stop')")
    s.add_argument("--flavour", choices=("plain", "freepbx"), default="plain")
    s.add_argument("--asterisk", choices=ASTERISK_VERSIONS, default="22")
    sub.add_parser("stop", help="stop the lab 'start' left running")
    sub.add_parser("status", help="is a lab running? print its AMI details")
    c = sub.add_parser("capture", help="record AMI transcripts into tests/fixtures/captures/")
    c.add_argument("scenarios", nargs="*", help="scenario names (default: all)")
    c.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "build" and args.asterisk != "22":
            prefix = build.ensure_build(args.asterisk, force=args.force)
            print(prefix)
            print(json.dumps(build.build_info(prefix), indent=2))
        elif args.cmd == "build":
            root = rootfs.ensure_root(force=args.force)
            print(root)
            print(json.dumps(rootfs.root_info(root), indent=2))
        elif args.cmd == "start":
            lab = Lab(args.flavour, asterisk=args.asterisk, detach=True,
                      keep_run_dir=True).start()
            print(json.dumps(_describe(lab), indent=2))
        elif args.cmd == "stop":
            lab = Lab.attach()
            lab.keep_run_dir = False
            lab.stop()
            print("stopped")
        elif args.cmd == "status":
            try:
                lab = Lab.attach()
            except LabError as exc:
                print(f"not running: {exc}")
                return 1
            alive = lab._alive()
            print(json.dumps({**_describe(lab), "running": alive}, indent=2))
            return 0 if alive else 1
        elif args.cmd == "capture":
            from .capture import SCENARIOS, run_captures

            if args.list:
                for name, (flavour, fn) in SCENARIOS.items():
                    doc = (fn.__doc__ or "").strip()
                    print(f"{name:20s} {flavour:8s} {doc}")
                return 0
            summary = run_captures(args.scenarios or None)
            print(json.dumps(summary, indent=2, ensure_ascii=False))
    except LabError as exc:
        print(f"lab error: {exc}", file=sys.stderr)
        return 2
    return 0


def _describe(lab: Lab) -> dict[str, object]:
    return {
        "asterisk": lab.asterisk_version, "pid": lab.pid, "flavour": lab.flavour,
        "ami": f"{AMI_HOST}:{AMI_PORT}", "sip": f"{SIP_HOST}:{SIP_PORT}",
        "admin": {"username": lab.admin_username, "secret": lab.admin_secret},
        "miitel": {"username": lab.miitel_username, "secret": lab.miitel_secret},
        "run_dir": str(lab.run_dir), "recordings_dir": str(lab.recordings_dir),
        "root": str(lab.root), "prefix": str(lab.prefix) if lab.prefix else None,
    }


if __name__ == "__main__":
    sys.exit(main())
