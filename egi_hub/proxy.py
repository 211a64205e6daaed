"""Which proxy the local stack runs: npm's configurable-http-proxy 5.x.

The stack runs the reference proxy that JupyterHub and zero-to-jupyterhub run, so a
laptop and a Kubernetes cluster route, stream and upgrade requests alike. (PyPI's
Python port buffered each whole response: spawn progress events reached the browser
all at once, at "ready".) It is a Node.js program, so it cannot be a Python
dependency; it is looked for in this order:

1. the checkout's ``proxy/node_modules/.bin/configurable-http-proxy``, which
   ``make run`` installs from ``proxy/package-lock.json`` (an editable install);
2. ``configurable-http-proxy`` on ``PATH`` (a wheel install on a machine where
   ``npm install -g configurable-http-proxy@5`` was run).

`proxy_command` only looks at files, so building the hub config stays cheap and
process-free; `check_proxy` runs ``--version`` once, before the hub starts, so that a
missing or wrong proxy stops ``egi-hub up`` with one line saying how to install it,
not with JupyterHub's traceback from deep inside its start-up.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "INSTALL_HINT",
    "PROXY_NAME",
    "ProxyError",
    "check_proxy",
    "checkout_proxy",
    "find_proxy",
    "proxy_command",
]

PROXY_NAME = "configurable-http-proxy"
MAJOR = 5
INSTALL_HINT = (
    "run 'make run' in an egi-hub checkout (installs it into proxy/ with npm), "
    f"or install it with Node.js 20+: npm install -g {PROXY_NAME}@{MAJOR}"
)


class ProxyError(Exception):
    """The proxy cannot be run: missing, failing, or not 5.x. The message is one line."""


def checkout_proxy() -> Path:
    """Where ``make run`` installs the proxy when egi-hub runs from its checkout."""
    root = Path(__file__).resolve().parent.parent
    return root / "proxy" / "node_modules" / ".bin" / PROXY_NAME


def find_proxy() -> str | None:
    """The proxy executable: the checkout's, else the one on ``PATH``, else None."""
    local = checkout_proxy()
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(PROXY_NAME)


def proxy_command() -> list[str]:
    """``ConfigurableHTTPProxy.command`` for the stack (the bare name if none is found:
    `check_proxy` then says how to install one)."""
    return [find_proxy() or PROXY_NAME]


def check_proxy(command: Sequence[str] | str, timeout: float = 30) -> str:
    """Return the version of the proxy ``command`` runs; `ProxyError` unless it is 5.x.

    Runs ``command --version`` (blocking, before the hub's event loop starts). A string
    is one program, as JupyterHub reads ``ConfigurableHTTPProxy.command``.
    """
    if isinstance(command, str):
        command = [command]
    if not command:
        raise ProxyError(f"ConfigurableHTTPProxy.command is empty; {INSTALL_HINT}")
    name = command[0]
    try:
        done = subprocess.run(
            [*command, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise ProxyError(f"the proxy ({name}) is not installed; {INSTALL_HINT}") from None
    except PermissionError:
        raise ProxyError(f"the proxy ({name}) is not executable; {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise ProxyError(
            f"the proxy ({name}) did not answer --version in {timeout:g} s; {INSTALL_HINT}"
        ) from None
    output = (done.stdout or done.stderr).strip()
    found = re.fullmatch(r"v?(\d+)\.\d+\.\d+\S*", output)
    if done.returncode != 0 or found is None:
        last = output.splitlines()[-1] if output else f"exit status {done.returncode}"
        raise ProxyError(f"the proxy ({name}) does not run ({last}); {INSTALL_HINT}")
    if int(found.group(1)) != MAJOR:
        raise ProxyError(
            f"the proxy ({name}) is version {output}, egi-hub needs {MAJOR}.x; {INSTALL_HINT}"
        )
    return output.removeprefix("v")
