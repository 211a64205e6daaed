"""Screenshots the browser tests save: what users see, for review and for docs/.

Every browser test that shows a page a user meets calls `save_screenshot`. They go to
``$EGI_HUB_SCREENSHOTS`` when it is set, else to ``.screenshots/`` in the checkout
(ignored by git), so a developer can look at the last run's pages.

``docs/images`` holds only the pictures a doc page shows: ``make screenshots`` runs the
browser tests into ``.screenshots/``, then `publish` (``python -m tests.screens``)
copies the ones that ``docs/`` links over their old versions. A new picture reaches the
docs by being linked from a page, not by being taken.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# How a doc page links a picture: ![alt](../images/name.png).
_IMAGE_LINK = re.compile(r"\]\((?:\.\./)*images/([a-z0-9][a-z0-9-]*\.png)\)")


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


def referenced_images(docs: Path = DOCS) -> set[str]:
    """The file names of the pictures that the Markdown pages under ``docs`` link."""
    names: set[str] = set()
    for page in docs.rglob("*.md"):
        names.update(_IMAGE_LINK.findall(page.read_text(encoding="utf-8")))
    return names


def publish(source: Path, docs: Path = DOCS) -> tuple[list[str], list[str]]:
    """Copy the linked pictures from ``source`` into ``docs/images``.

    Returns the names copied and the linked names that ``source`` lacks (a run of only
    some of the browser tests leaves those pictures as they were).
    """
    images = docs / "images"
    images.mkdir(exist_ok=True)
    copied, missing = [], []
    for name in sorted(referenced_images(docs)):
        if (source / name).is_file():
            shutil.copyfile(source / name, images / name)
            copied.append(name)
        else:
            missing.append(name)
    return copied, missing


if __name__ == "__main__":
    copied, missing = publish(screenshot_dir())
    print(f"docs/images: {len(copied)} picture(s) updated from {screenshot_dir()}")
    if missing:
        print("not taken in this run (left as they were): " + ", ".join(missing))
