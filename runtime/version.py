"""The code version recorded in every session: the package version plus the git commit when known."""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path


@cache
def code_version() -> str:
    try:
        version = metadata.version("tape")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    commit = _git_commit(Path(__file__).resolve().parent.parent)
    return f"{version}+g{commit[:12]}" if commit else version


def _git_commit(root: Path) -> str | None:
    """The checked-out commit, read from .git without running git (None outside a checkout)."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        ref_file = git / ref
        if ref_file.is_file():
            return ref_file.read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None
