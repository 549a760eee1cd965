"""The hyperparameter search behind ``tape tune``: Ray Tune trials of PPO training, scored on held-out sessions.

**The search space is data** — a TOML file (``config/tune-default.toml`` unless ``--space`` names another)::

    [base]                                  # fixed for every trial: any TrainConfig field
    iterations = 20
    envs_per_runner = 8

    [space]                                 # searched: each key a TrainConfig field, each value a distribution
    lr = { loguniform = [1e-5, 1e-3] }      # low <= x <= high, uniform in log
    gamma = { uniform = [0.98, 0.999] }
    epochs = { randint = [3, 10] }          # whole numbers, both ends included
    hidden = { choice = [[64, 64], [256, 256]] }

    [space.env_config]                      # a field that is a table (a dict, or a struct): one level further
    max_steps = { choice = [0, 600] }

Every name is checked against :class:`~policies.train.TrainConfig` as it is now (its fields are read, not listed
here): an unknown parameter, a key of a role-keyed table that is not a role, or a value a field cannot take
(``roles = { choice = [["signal", "timing"]] }``) is a :class:`SpaceError` naming the file and the key
(``space.toml:space.roles``) before anything runs. ``env_config`` keys are :class:`~policies.env.EnvConfig`'s.

**A trial** trains one configuration (the base, overridden by one draw from the space) with
:func:`policies.train.train`, the function behind ``tape train``, which every ``eval_every`` iterations and at the
last plays the held-out tapes with the policies as they are then (:func:`policies.evaluate.evaluate_one`: the paper
session's execution, latency, queue model and fees): each such held-out PnL, in dollars, is reported to Tune as
``heldout_pnl``. The ASHA scheduler compares trials at those reports and stops the worse ones early (its time unit
is a report; ``reduction_factor`` 2). A trial that reaches its last iteration has saved its model as a registry
version (with its history and training curve), which is the trial's Tune checkpoint.

**The result** (:func:`tune`): the finished trial with the highest held-out PnL (ties: the earlier trial) is
published as a new version under ``out``, as ``tape train --out`` would (``out/latest`` names it), with the search
record beside its manifest: :data:`SEARCH_FILE`, every trial's parameters, full config, status (``finished``,
``stopped`` early by the scheduler or the time budget, ``error``), its held-out PnL at each report, and which one
won. Trials run in parallel as the Ray cluster's CPUs allow (``$RAY_ADDRESS``'s cluster when set, each trial
reserving 1 CPU plus its env runners and learners).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .base import ROLES
from .data import Tape
from .train import TrainConfig

__all__ = ["DISTRIBUTIONS", "SEARCH_FILE", "Space", "SpaceError", "TrialRecord", "TuneReport", "load_space",
           "parse_space", "short_params", "trial_config", "tune"]

SEARCH_FILE = "search.json"
"""the search record, in the best trial's version directory"""
DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")
METRIC = "heldout_pnl"
_FROM_COMMAND_LINE = {"data": "--data", "heldout": "--heldout", "eval_every": "--eval-every"}
_NOT_SEARCHED = {"iterations": "the length of every trial: set it in [base] or with --iterations"}


class SpaceError(ValueError):
    """A search space that cannot be used: the message names the file and key (``space.toml:space.lr: …``)."""


class Space(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed search space: ``base`` fixed fields, ``space`` the distributions (nested like the config; a leaf
    is ``{kind: args}``, one of :data:`DISTRIBUTIONS`)."""

    source: str
    base: dict[str, Any]
    space: dict[str, Any]


# --- the space: parsing and checking -------------------------------------------------------------------------
def load_space(path: str | Path) -> Space:
    """The search space in the TOML file ``path`` (module docstring); :class:`SpaceError` if it is not one."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpaceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpaceError(f"{path}: is a directory, not a TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{path}: not TOML ({exc})") from None
    return parse_space(data, str(path))


def parse_space(data: Mapping[str, Any], source: str = "<space>") -> Space:
    """Check a search space read from ``source`` (module docstring) and return it."""
    unknown = sorted(set(data) - {"base", "space"})
    if unknown:
        raise SpaceError(f"{source}:{unknown[0]}: unknown table; a search space has [base] (fixed settings) and "
                         "[space] (what is searched)")
    base, space = data.get("base", {}), data.get("space", {})
    for name, table in (("base", base), ("space", space)):
        if not isinstance(table, Mapping):
            raise SpaceError(f"{source}:{name}: a table, got {table!r}")
    _check_names(base, _config_type(), f"{source}:base", "TrainConfig", leaves="values")
    _check_names(space, _config_type(), f"{source}:space", "TrainConfig", leaves="distributions")
    for name in (*_NOT_SEARCHED, *_FROM_COMMAND_LINE):
        if name in space:
            why = _NOT_SEARCHED.get(name) or f"set by {_FROM_COMMAND_LINE[name]}"
            raise SpaceError(f"{source}:space.{name}: not searched ({why})")
    for name in _FROM_COMMAND_LINE:
        if name in base:
            raise SpaceError(f"{source}:base.{name}: set by {_FROM_COMMAND_LINE[name]}, not in the space file")
    for key, value in base.items():
        _check_value({}, {key: value}, f"{source}:base.{key}", repr(value))
    _check_value(dict(base), {}, f"{source}:base", "the fixed settings together")
    for path, dist in _leaves(space):
        for i, value in enumerate(_representatives(dist, f"{source}:space.{'.'.join(path)}")):
            what = f"choice {i + 1}: {value!r}" if "choice" in dist else repr(value)
            _check_value(dict(base), _nest(path, value), f"{source}:space.{'.'.join(path)}", what)
    return Space(source=source, base=dict(base), space=dict(space))


def _config_type() -> Any:
    return msgspec.inspect.type_info(TrainConfig)


def _is_distribution(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS


def _keys_of(t: Any, owner: str) -> tuple[str, str, dict[str, Any] | None, set[str] | None]:
    """What a table-valued field of type ``t`` takes as keys: (a noun for one, who has them, the types of its values
    by key or None, the keys allowed or None for any); ("", …) if ``t`` is not a table."""
    from msgspec import inspect as mi

    if isinstance(t, mi.StructType):
        return "parameter", owner, {f.name: f.type for f in t.fields}, {f.name for f in t.fields}
    if isinstance(t, mi.DictType):
        key = t.key_type
        if isinstance(key, mi.LiteralType):
            if set(key.values) <= set(ROLES):
                return "role", "the roles are", None, {str(v) for v in key.values}
            return "key", owner, None, {str(v) for v in key.values}
        return "key", owner, None, None
    return "", owner, None, None


def _check_names(table: Mapping[str, Any], t: Any, where: str, owner: str, *, leaves: str) -> None:
    """Every key of ``table`` names a field (a role, a key) of the type ``t``; nested tables one level down.
    ``env_config`` is a dict of :class:`~policies.env.EnvConfig`'s fields (but data and seed, which train sets)."""
    from .env import EnvConfig

    if owner == "env_config":
        t = msgspec.inspect.type_info(EnvConfig)
    noun, has, types, allowed = _keys_of(t, "EnvConfig has" if owner == "env_config" else f"{owner} has")
    if owner == "env_config":
        allowed = (allowed or set()) - {"data", "seed"}
    for key, value in table.items():
        if allowed is not None and key not in allowed:
            raise SpaceError(f"{where}.{key}: unknown {noun} {key!r}; {has}: {', '.join(_ordered(allowed))}")
        if _is_distribution(value):
            if leaves == "values":
                raise SpaceError(f"{where}.{key}: [base] holds fixed values; put distributions in [space]")
            continue
        inner = types.get(key) if types is not None else getattr(t, "value_type", None)
        nested = owner == "TrainConfig" and key == "env_config"
        if isinstance(value, Mapping) and (nested or _keys_of(inner, key)[0]):
            _check_names(value, inner, f"{where}.{key}", "env_config" if nested else key, leaves=leaves)
        elif leaves == "distributions":
            raise SpaceError(f"{where}.{key}: a distribution is a table {{loguniform = [low, high]}}, "
                             f"{{uniform = [low, high]}}, {{randint = [low, high]}} or {{choice = [a, b, …]}}; "
                             f"got {value!r} (fixed values go in [base])")


def _ordered(names: set[str]) -> list[str]:
    order = [*ROLES, *(f.name for f in msgspec.structs.fields(TrainConfig))]
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def _leaves(space: Mapping[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    out = []
    for key, value in space.items():
        if _is_distribution(value):
            out.append(((*path, key), dict(value)))
        else:
            out.extend(_leaves(value, (*path, key)))
    return out


def _representatives(dist: Mapping[str, Any], where: str) -> list[Any]:
    """The values a distribution can give that are checked against the config: its ends, or every choice."""
    (kind, args), = dist.items()
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise SpaceError(f"{where}: choice takes a list of one or more values, got {args!r}")
        return list(args)
    if (not isinstance(args, list) or len(args) != 2
            or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)):
        raise SpaceError(f"{where}: {kind} takes [low, high], two numbers, got {args!r}")
    low, high = args
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise SpaceError(f"{where}: randint takes [low, high], two whole numbers, got {args!r}")
    if not low <= high or (kind == "loguniform" and not low > 0):
        more = " and 0 < low" if kind == "loguniform" else ""
        raise SpaceError(f"{where}: {kind} takes [low, high] with low <= high{more}, got {args!r}")
    return [low, high]


def _nest(path: Sequence[str], value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(path):
        out = {key: out}
    return out


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: tables merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_ENUM = re.compile(r"Invalid enum value '([^']*)'")


def _check_value(base: dict[str, Any], over: dict[str, Any], where: str, what: str) -> None:
    try:
        trial_config(base, over, data=("<data>",))
    except msgspec.ValidationError as exc:
        text = str(exc)
        bad = _ENUM.search(text)
        values = _literal_values(where) if bad else []
        if bad and bad.group(1) not in ROLES and set(values) & set(ROLES):
            raise SpaceError(f"{where}: {what}: unknown role {bad.group(1)!r} (the roles are "
                             f"{', '.join(ROLES)})") from None
        if bad and values:
            raise SpaceError(f"{where}: {what}: unknown value {bad.group(1)!r} (it takes "
                             f"{', '.join(map(str, values))})") from None
        raise SpaceError(f"{where}: {what}: {text}") from None
    except ValueError as exc:
        raise SpaceError(f"{where}: {what}: {str(exc).replace('env config: env config:', 'env config:')}") from None


def _literal_values(where: str) -> list[Any]:
    """The named values the field at ``where`` (``file:space.roles``, ``file:base``) may hold somewhere in its type
    (the roles, a schedule's names); every field's for the fixed settings as a whole."""
    from msgspec import inspect as mi

    path = where.split(":")[-1].split(".")[1:]
    types = {f.name: f.type for f in _config_type().fields}
    seen: list[Any] = [types.get(path[0])] if path else list(types.values())
    for key in path[1:]:  # into a struct field (rewards.horizon_s)
        seen = [getattr(t, "fields", None) and {f.name: f.type for f in t.fields}.get(key) for t in seen]
    out: list[Any] = []
    while seen:
        t = seen.pop()
        if isinstance(t, mi.LiteralType):
            out += [v for v in t.values if v not in out]
        for attr in ("types", "item_types", "item_type", "key_type", "value_type"):
            inner = getattr(t, attr, None)
            seen.extend(inner if isinstance(inner, tuple) else [inner] if inner is not None else [])
    return out


def trial_config(base: Mapping[str, Any], params: Mapping[str, Any], *,
                 data: Sequence[str] | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of one trial: ``params`` (one draw from the space) over ``base`` (and ``data``);
    ``ValueError`` / ``msgspec.ValidationError`` if it is not a valid one."""
    fields = _merge(_plain(base), _plain(params))
    if data is not None:
        fields["data"] = list(data)
    config = msgspec.convert(fields, TrainConfig)
    if not config.roles:
        raise ValueError("roles: at least one role must learn")
    if min(config.iterations, config.train_batch, config.minibatch, config.epochs, config.envs_per_runner) < 1:
        raise ValueError("iterations, train_batch, minibatch, epochs and envs_per_runner must be >= 1")
    if min(config.hidden, default=1) < 1 or config.lr <= 0:
        raise ValueError("hidden layer sizes must be >= 1 and lr > 0")
    from .env import env_config
    from .registry import is_named, load_model

    env_config({k: v for k, v in config.env_config.items() if k not in ("data", "seed")})
    if config.env == "roles" and not is_named(config.frozen):
        load_model(config.frozen)  # a ModelError (a ValueError) naming what is wrong with it
    return config


def _plain(value: Any) -> Any:
    """Numbers drawn by Tune (numpy scalars) as Python's; tables and lists walked."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str | bytes) else value


def _tune_space(space: Mapping[str, Any]) -> dict[str, Any]:
    from ray import tune

    out: dict[str, Any] = {}
    for key, value in space.items():
        if not _is_distribution(value):
            out[key] = _tune_space(value)
            continue
        (kind, args), = value.items()
        if kind == "choice":
            out[key] = tune.choice(list(args))
        elif kind == "randint":
            out[key] = tune.randint(args[0], args[1] + 1)  # Tune's upper end is excluded; ours is included
        elif kind == "uniform":
            out[key] = tune.uniform(*args)
        else:
            out[key] = tune.loguniform(*args)
    return out


# --- a trial ---------------------------------------------------------------------------------------------------
def _with_heldout(base: Mapping[str, Any], params: Mapping[str, Any], data: Sequence[str],
                  heldout_sources: Sequence[str], every: int) -> TrainConfig:
    """A trial's whole config: its draw over the base, with the data and the held-out evaluation."""
    return trial_config(base, {**params, "eval_every": every, "heldout": list(heldout_sources)}, data=data)


def _trial(params: dict[str, Any], *, base: dict[str, Any], data: tuple[str, ...], heldout_sources: tuple[str, ...],
           tapes: list[Tape], heldout: list[Tape], every: int) -> None:
    """One Tune trial (module docstring): :func:`policies.train.train` with the held-out PnL every ``every``
    iterations, each reported to Tune as it comes; the last with the saved model as the trial's checkpoint."""
    from ray import tune

    from .train import train

    config = _with_heldout(base, params, data, heldout_sources, every)

    def scored(item: dict[str, Any]) -> None:
        """An iteration's held-out PnL to Tune as it is measured (the last is reported below, with the model)."""
        if item["heldout_pnl"] is None or item["iteration"] >= config.iterations:
            return
        known = [v for v in item["returns"].values() if v is not None]
        tune.report({METRIC: float(item["heldout_pnl"]), "iteration": item["iteration"], "final": False,
                     **({"episode_return": sum(known) / len(known)} if known else {})})

    root = Path(tune.get_context().get_trial_dir()) / "model"
    report = train(config, root, tapes=tapes, heldout=heldout, on_iteration=scored)
    last = report.history[-1] if report.history else {}
    ret = report.returns[-1] if report.returns else None
    tune.report({METRIC: float(last.get("heldout_pnl") or 0.0), "iteration": report.iterations, "final": True,
                 "version": report.version, "env_steps": report.env_steps,
                 **({"episode_return": ret} if ret is not None else {})},
                checkpoint=tune.Checkpoint.from_directory(str(root / report.version)))


# --- the search ------------------------------------------------------------------------------------------------
class TrialRecord(msgspec.Struct, kw_only=True):
    """One trial in the search record."""

    number: int
    trial_id: str
    params: dict[str, Any]
    config: dict[str, Any]
    status: str = "pending"
    """finished (ran every iteration), stopped (by the scheduler or the time budget), error, pending (never ran)"""
    iterations: int = 0
    scores: list[dict[str, Any]] = []
    """each report: iteration, heldout_pnl (dollars), episode_return (null: no episode ended)"""
    heldout_pnl: float | None = None
    """the last report's"""
    version: str | None = None
    error: str | None = None
    node: str | None = None
    """the address of the Ray node it ran on"""


class TuneReport(msgspec.Struct, kw_only=True):
    """What :func:`tune` did: the search record (:data:`SEARCH_FILE`)."""

    out: str
    version: str | None
    """the best trial's version, published under ``out``; None if no trial finished"""
    best: int | None
    """the best trial's number"""
    metric: str
    space: dict[str, Any]
    data: list[str]
    heldout: dict[str, Any]
    trials_asked: int
    time_budget_s: float | None
    eval_every: int
    scheduler: dict[str, Any]
    seconds: float
    trials: list[TrialRecord]


def short_params(params: Mapping[str, Any], prefix: str = "") -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, Mapping):
            parts.append(short_params(value, f"{prefix}{key}."))
        elif isinstance(value, float):
            parts.append(f"{prefix}{key}={value:.3g}")
        else:
            parts.append(f"{prefix}{key}={json.dumps(_plain(value), separators=(',', ':'))}")
    return " ".join(p for p in parts if p)


def _dollars(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"${x:+,.2f}"


def _callback(records: dict[str, TrialRecord], config_of: Callable[[dict[str, Any]], TrainConfig], iterations: int,
              total: int, say: Callable[[str], None]) -> Any:
    from ray import tune

    from .train import format_return

    class Progress(tune.Callback):
        """Each trial's reports into its record, and a progress line for each."""

        def record(self, trial: Any) -> TrialRecord:
            if trial.trial_id not in records:
                params = _plain(trial.config)
                records[trial.trial_id] = TrialRecord(
                    number=_number(trial.trial_id, len(records)), trial_id=trial.trial_id, params=params,
                    config=msgspec.to_builtins(config_of(params)))
            return records[trial.trial_id]

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            r = self.record(trial)
            r.status = "running"
            say(f"trial {r.number}/{total} started: {short_params(r.params) or '(the base config)'}")

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            r = self.record(trial)
            r.iterations = int(result["iteration"])
            r.heldout_pnl = float(result[METRIC])
            r.node = result.get("node_ip") or r.node
            r.scores.append({"iteration": r.iterations, METRIC: r.heldout_pnl,
                             "episode_return": result.get("episode_return")})
            if result.get("final"):
                r.status, r.version = "finished", result.get("version")
            say(f"trial {r.number}/{total}: iteration {r.iterations}/{iterations}, episode return "
                f"{format_return(result.get('episode_return'))}, held-out PnL {_dollars(r.heldout_pnl)}"
                f"{', finished' if result.get('final') else ''}")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            r = self.record(trial)
            if r.status != "finished":
                r.status = "stopped"
                say(f"trial {r.number}/{total}: stopped early at iteration {r.iterations}/{iterations} "
                    f"(held-out PnL {_dollars(r.heldout_pnl)})")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            r = self.record(trial)
            r.status = "error"
            r.error = _error_text(trial)
            say(f"trial {r.number}/{total}: failed: {r.error}")

    return Progress()


def _number(trial_id: str, seen: int) -> int:
    """A trial's number, 1, 2, …, in the order Tune drew them (its ids end in _00000, _00001, …)."""
    tail = trial_id.rpartition("_")[2]
    return int(tail) + 1 if tail.isdigit() else seen + 1


def _error_text(trial: Any) -> str:
    try:
        error = trial.get_error()
    except Exception:
        error = None
    if error is None:
        return "failed (see the Tune log)"
    text = str(getattr(error, "cause", None) or error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def _resources(base: Mapping[str, Any]) -> Any:
    """What one trial reserves: 1 CPU for itself (its learner when local), one per env runner and learner."""
    from ray import tune

    config = trial_config(base, {}, data=("<data>",))
    gpus = config.num_gpus_per_learner
    head = {"CPU": 1.0, **({"GPU": gpus} if gpus and not config.num_learners else {})}
    bundles = [head, *([{"CPU": 1.0}] * config.num_env_runners),
               *([{"CPU": 1.0, **({"GPU": gpus} if gpus else {})}] * config.num_learners)]
    return tune.PlacementGroupFactory(bundles)


def tune(space: Space, data: Sequence[str], tapes: Sequence[Tape], heldout_sources: Sequence[str],
         heldout: Sequence[Tape], out: str | Path, *,
         trials: int = 8, iterations: int | None = None, eval_every: int = 0, seed: int | None = None,
         time_budget_s: float | None = None, max_concurrent: int | None = None, storage: str | Path | None = None,
         say: Callable[[str], None] = lambda _: None) -> TuneReport:
    """Search ``space`` (module docstring) with ``trials`` trials, training on ``tapes`` (loaded from ``data``) and
    scoring on ``heldout`` (loaded from ``heldout_sources``); publish the best finished trial under ``out`` with :data:`SEARCH_FILE` beside its
    manifest. ``iterations`` and ``seed`` override the space's base; ``eval_every`` 0 reports 4 times per trial.
    The Ray cluster must be connected (:func:`runtime.cli.cluster.connect`)."""
    from ray import tune as ray_tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    base = dict(space.base)
    if iterations is not None:
        base["iterations"] = iterations
    if seed is not None:
        base["seed"] = seed
    config = trial_config(base, {}, data=data)  # checked before anything runs
    every = eval_every or max(1, math.ceil(config.iterations / 4))
    rungs = math.ceil(config.iterations / every)
    scheduler = {"name": "asha", "time_attr": "reports", "max_t": rungs, "grace_period": 1, "reduction_factor": 2}
    records: dict[str, TrialRecord] = {}
    own_storage = storage is None
    storage_path = Path(tempfile.mkdtemp(prefix="tape-tune-")) if storage is None else Path(storage).resolve()
    started = time.perf_counter()
    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(_trial, base=base, data=tuple(data), heldout_sources=tuple(heldout_sources),
                                 tapes=list(tapes), heldout=list(heldout), every=every),
        _resources(base))
    tuner = ray_tune.Tuner(
        trainable,
        param_space=_tune_space(space.space),
        tune_config=ray_tune.TuneConfig(
            metric=METRIC, mode="max", num_samples=trials, time_budget_s=time_budget_s,
            # the limit goes to the generator: Tune ignores max_concurrent_trials beside a BasicVariantGenerator
            search_alg=BasicVariantGenerator(random_state=config.seed, max_concurrent=max_concurrent or 0),
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=rungs, grace_period=1,
                                    reduction_factor=2)),
        run_config=ray_tune.RunConfig(
            name="tune", storage_path=str(storage_path), verbose=0,
            callbacks=[_callback(records, lambda p: _with_heldout(base, p, data, heldout_sources, every),
                                 config.iterations, trials, say)]))
    quiet = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's newer console output prints its tables whatever `verbose` says
    try:
        try:
            grid = tuner.fit()
        finally:
            if quiet is None:
                os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
            else:
                os.environ["RAY_AIR_NEW_OUTPUT"] = quiet
        ordered = sorted(records.values(), key=lambda r: r.number)
        finished = [r for r in ordered if r.status == "finished" and r.heldout_pnl is not None]
        best = max(finished, key=lambda r: (r.heldout_pnl, -r.number)) if finished else None
        report = TuneReport(
            out=str(out), version=best.version if best else None, best=best.number if best else None, metric=METRIC,
            space={"file": space.source, "base": space.base, "space": space.space}, data=list(data),
            heldout={"sources": list(heldout_sources), "sessions": sorted({t.session for t in heldout}),
                     "tapes": len(heldout)},
            trials_asked=trials, time_budget_s=time_budget_s, eval_every=every, scheduler=scheduler,
            seconds=time.perf_counter() - started, trials=ordered)
        if best is not None:
            result = next(r for r in grid if r.metrics and r.metrics.get("trial_id") == best.trial_id)
            with result.checkpoint.as_directory() as version_dir:
                _publish(Path(version_dir), Path(out), best.version or "", report)
        return report
    finally:
        if own_storage:
            shutil.rmtree(storage_path, ignore_errors=True)


def _publish(version_dir: Path, root: Path, version: str, report: TuneReport) -> None:
    """The best trial's saved version into the registry ``root`` as a new version named ``latest``, with the search
    record in it (a version already there, the same weights trained before, gets the record)."""
    from .registry import LATEST

    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    record = msgspec.json.format(msgspec.json.encode(report))
    final = root / version
    if final.exists():
        (final / SEARCH_FILE).write_bytes(record)
    else:
        staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=root))
        try:
            shutil.copytree(version_dir, staging, dirs_exist_ok=True)
            (staging / SEARCH_FILE).write_bytes(record)
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    tmp = root / f".{LATEST}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, root / LATEST)
