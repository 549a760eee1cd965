"""The models page's data: the registries' versions, their training curves and evaluation results, and the session's loads.

A registry is a directory ``tape train --out DIR`` writes (``DIR/latest`` and one ``DIR/<version>/`` per
version with its ``model.json`` manifest, :mod:`policies.registry`). The registries shown are those given to the
dashboard (``--models DIR``) and those the session's ``ModelLoaded`` events came from (the parent of each
event's ``source``). Beside a version's manifest, any other ``*.json`` file in its directory is read: one with a
``returns`` list is a training report (``tape train --json > DIR/<version>/train.json``: its curve), one with a
``results`` list is an evaluation (``tape eval --json > DIR/<version>/eval.json``). The manifest is read as JSON
here (the dashboard loads no model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["models_page"]

MODEL_FILE = "model.json"  # policies.registry.MODEL_FILE (read here without importing the policies)
LATEST = "latest"
_REPORT_MAX = 2_000_000  # a report file larger than this is not read


def models_page(directories: tuple[str, ...] | list[str], loads: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"registries": [...], "loads": loads, "problems": [...]}``: every registry's versions, newest first."""
    roots: list[Path] = []
    for d in [*directories, *(str(Path(row["source"]).parent) for row in loads if row.get("source"))]:
        path = Path(d).expanduser()
        if (path / MODEL_FILE).is_file():  # a version directory: its registry
            path = path.parent
        path = path.resolve()
        if path not in roots:
            roots.append(path)
    problems: list[str] = []
    registries = [_registry(root, problems) for root in roots if root.is_dir()]
    problems += [f"{root}: no such directory" for root in roots if not root.is_dir()]
    return {"registries": registries, "loads": loads, "problems": problems}


def _registry(root: Path, problems: list[str]) -> dict[str, Any]:
    latest = None
    if (root / LATEST).is_file():
        latest = (root / LATEST).read_text().strip()
    versions = []
    for version_dir in sorted(p for p in root.iterdir() if (p / MODEL_FILE).is_file()):
        try:
            versions.append(_version(version_dir))
        except (OSError, ValueError) as exc:
            problems.append(f"{version_dir}: {exc}")
    versions.sort(key=lambda v: v["saved_ns"], reverse=True)
    return {"directory": str(root), "latest": latest, "versions": versions}


def _version(version_dir: Path) -> dict[str, Any]:
    manifest = json.loads((version_dir / MODEL_FILE).read_text())
    train = manifest.get("train") or {}
    data = manifest.get("data") or {}
    out: dict[str, Any] = {
        "version": manifest.get("version", version_dir.name), "hash": manifest.get("hash", ""),
        "kind": manifest.get("kind", ""), "roles": manifest.get("roles", []), "frozen": manifest.get("frozen", ""),
        "directory": str(version_dir), "saved_ns": (version_dir / MODEL_FILE).stat().st_mtime_ns,
        "train": {k: train[k] for k in ("iterations", "seed", "env", "hidden", "train_batch", "lr") if k in train},
        "data": {k: data[k] for k in ("sessions", "tapes", "digest", "sources") if k in data},
        "software": manifest.get("software", {}), "curves": [], "evals": []}
    for path in sorted(version_dir.glob("*.json")):
        if path.name == MODEL_FILE or path.stat().st_size > _REPORT_MAX:
            continue
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and isinstance(report.get("returns"), list):
            out["curves"].append({"file": path.name, "returns": report["returns"],
                                  "env_steps": report.get("env_steps"), "iterations": report.get("iterations")})
        elif isinstance(report, dict) and isinstance(report.get("results"), list):
            out["evals"].append({"file": path.name, "tapes": report.get("tapes"), "results": [
                {k: r.get(k) for k in ("name", "pnl", "sharpe", "max_drawdown", "trades", "win_rate", "fill_rate",
                                       "fees", "share_of_oracle")} for r in report["results"] if isinstance(r, dict)]})
    return out
