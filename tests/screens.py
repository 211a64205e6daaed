"""Screenshots the browser tests save: what users see, for review and for docs/.

Every browser test that shows a page a user meets calls `save_screenshot`. They go to
``$EGI_HUB_SCREENSHOTS`` when it is set (``make screenshots`` points it at
``docs/images``, which the admin and user guides show), else to ``.screenshots/`` in
the checkout (ignored by git), so a developer can look at the last run's pages.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def screenshot_dir() -> Path:
    """Where screenshots go (created on first use)."""
    folder = Path(os.environ.get("EGI_HUB_SCREENSHOTS") or ROOT / ".screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Save the page as ``<name>.png`` (a short kebab-case name: ``spawn-form-cards``)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"screenshot name {name!r}: use lower-case letters, digits and -")
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
