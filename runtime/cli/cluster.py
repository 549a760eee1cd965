"""The Ray cluster a command runs on: the one ``$RAY_ADDRESS`` names (``ray up``, or inside a Ray job), else a
local instance of the command's own."""

from __future__ import annotations

import logging
import os

# Ray's notice that a local instance turned its token authentication on by default: on by default it stays (the
# user's RAY_AUTH_MODE is never touched); only the notice is kept out of the command's output.
_AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"


class _DropAuthNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_AUTH_NOTICE)


def quiet_ray_notices() -> None:
    """Keep Ray's token-authentication notice (module constant) out of this process's output (idempotent)."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropAuthNotice) for f in logger.filters):
        logger.addFilter(_DropAuthNotice())


def connect() -> None:
    """Connect this process to the cluster (module docstring), once."""
    import ray

    if not ray.is_initialized():
        quiet_ray_notices()
        address = os.environ.get("RAY_ADDRESS") or "local"
        # a cluster's workers hash strings as this process does (a local instance's inherit its environment): RLlib
        # orders agents by set iteration, and training is repeatable only under one hash seed (policies.train.HASH_SEED)
        hash_seed = os.environ.get("PYTHONHASHSEED")
        runtime_env = {"env_vars": {"PYTHONHASHSEED": hash_seed}} if hash_seed and address != "local" else None
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env=runtime_env)
