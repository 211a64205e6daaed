"""The egi-hub command: start the local stack (up), check a site file (config check),
print the versions (version).

This docstring is also the description of ``egi-hub --help`` (argparse prints it as it
is), so its first paragraph is plain text, not reStructuredText.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import SiteConfigError, load_site_file
from .procs import PortInUseError

__all__ = ["main"]


def _load(path: str | None) -> dict[str, Any]:
    from .stack import validate_site

    site = load_site_file(path) if path else {}
    for warning in validate_site(site):
        print(f"egi-hub: warning: {warning}", file=sys.stderr)
    return site


def _up(args: argparse.Namespace) -> int:
    from .proxy import ProxyError
    from .stack import CryptKeyError, build_config, run

    site = _load(args.config)
    try:
        stack_config = build_config(site, port=args.port, ip=args.ip, data_dir=args.data_dir)
        run(stack_config)
    except (CryptKeyError, ProxyError) as e:
        print(f"egi-hub: {e}", file=sys.stderr)
        return 1
    return 0


def _config_check(args: argparse.Namespace) -> int:
    _load(args.file)
    print(f"{args.file}: OK")
    return 0


def _version(args: argparse.Namespace) -> int:
    import jupyterhub

    print(f"egi-hub {__version__} (JupyterHub {jupyterhub.__version__})")
    return 0


def _parser() -> argparse.ArgumentParser:
    description = (__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="egi-hub", description=description)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the local stack (hub, proxy, spawner, culler)")
    up.add_argument("--config", metavar="SITE.yaml", help="site file (traitlets as YAML)")
    up.add_argument("--port", type=int, help="public port (default 8000, or JupyterHub.port)")
    up.add_argument("--ip", help="public address (default 127.0.0.1, or JupyterHub.ip)")
    up.add_argument("--data-dir", metavar="DIR", help="state directory (LocalStack.data_dir)")
    up.set_defaults(func=_up)

    config = commands.add_parser("config", help="work with site files")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="validate a site file, naming any bad key")
    check.add_argument("file", metavar="SITE.yaml")
    check.set_defaults(func=_config_check)

    version = commands.add_parser("version", help="print the versions")
    version.set_defaults(func=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``egi-hub`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except SiteConfigError as e:
        for issue in e.issues:
            print(f"egi-hub: {issue}", file=sys.stderr)
        return 2
    except PortInUseError as e:
        print(f"egi-hub: {e.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
