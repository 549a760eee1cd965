"""The Ray cluster a command runs on: the one ``$RAY_ADDRESS`` names (``ray up``, or inside a Ray job), else a
local instance of the command's own."""

from __future__ import annotations

import os


def connect() -> None:
    """Connect this process to the cluster (module docstring), once."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
