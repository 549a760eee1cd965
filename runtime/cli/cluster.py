"""The Ray cluster a command runs on: the one ``$RAY_ADDRESS`` names (``ray up``, or inside a Ray job), else a
local instance of the command's own."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

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


def placement_rules(option: str, specs: Sequence[str], pattern: str | None = None) -> tuple:
    """``option``'s placement rules (:mod:`runtime.placement`): ``PATTERN=RESOURCE[:AMOUNT]`` each, or with
    ``pattern`` one ``RESOURCE[:AMOUNT]`` for it; a malformed one is a usage error naming ``option``."""
    from ..placement import PlacementError, parse, parse_resource
    from . import UsageError

    try:
        return tuple(parse_resource(pattern, s) for s in specs) if pattern is not None else parse(specs)
    except PlacementError as exc:
        raise UsageError(f"{option}: {exc}") from None


def check_placement(option: str, rules: Sequence, names: Sequence[str]) -> None:
    """Connect (:func:`connect`) and refuse, as a usage error naming ``option``, rules this cluster cannot meet or
    that match none of ``names`` (Ray would leave what they place pending forever)."""
    import ray

    from ..placement import PlacementError, check
    from . import UsageError

    connect()
    try:
        check(rules, ray.cluster_resources(), names)
    except PlacementError as exc:
        raise UsageError(f"{option}: {exc}") from None
