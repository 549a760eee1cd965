"""The model registry: trained models saved under a version hash, and loaded back as policies for live trading.

**Layout.** ``tape train --out DIR`` saves a new **version** and never touches an older one::

    DIR/
      latest                      the newest version's name (replaced atomically)
      ppo@3f2a9c81d0e4/           one version, immutable
        model.json                the manifest (below)
        history.json              the training history: per iteration, the return per role, the held-out PnL
        training.png              the training curve drawn from it
        checkpoint/               RLlib's checkpoint (Algorithm.save_to_path): resume, inspect
                                  its learner_group/learner/rl_module/<module id>/ is what policies load

``model.json`` holds the format, the ``version`` (``ppo@`` + the first 12 hex digits of ``hash``), the full
``hash`` — sha256 over the learned weights (every trained module's state, keys sorted, dtype, shape and
bytes) and the action and observation tables they were trained with — the ``kind`` (``roles`` or
``single``), the trained ``roles`` and the ``frozen`` policies of the others, the modules' paths, the
training config and a description of the data (sources, sessions, tapes, a digest of their events).
Since format 2 it also holds each module's ``observations`` layout (the names of ``obs.vector()``), its
observation ``scaling`` (:class:`~policies.features.Scaling`, fitted on the training data) and whether its actions
are ``masked`` (:func:`policies.roles.action_mask`); the hash covers all three, so a version means one thing
forever. Format 1 (models saved before scaling and masking) has none of them and loads as it was trained:
unscaled, unmasked, its hash computed as then. A model trained with ``--regimes K`` also holds its ``regimes``
(:class:`~policies.regimes.RegimeModel`): its modules' observations are ``obs.vector()`` followed by the K regime
probabilities that model's causal filter gives for the decision's market (``regime_0`` … in the layout, centre 0 and
scale 1 in the scaling), and the hash covers it too; a model without one records no ``regimes`` and hashes as before.

**The code must match the model**: a model whose recorded observation layout or scaling differs from this code's
(a feature added, renamed or moved since it was trained) is refused with a :class:`ModelError` naming the module,
the position and both names, before its weights are trusted; so is a regime model whose features or sample grid are
not this code's (:data:`~policies.regimes.REGIME_FEATURES`, :class:`~policies.features.FeatureSpec`).

**Loading for inference** (:func:`load_model`) reads only the RLModules (no Algorithm, no Ray cluster),
checks their weights against ``hash`` (a changed or damaged checkpoint is refused), and gives one
:class:`ModelPolicy` per role: ``decide(obs)`` runs the module's ``forward_inference`` on ``obs.vector()``
under ``torch.no_grad`` and takes the most likely action (deterministic), mapped through
:mod:`policies.roles` (or, for a single-agent model, :func:`policies.env.decision_for`). Roles a model did
not train are the policies named by its ``frozen``.

**Names** (:func:`load_policies`): ``rule`` (the rule baselines), ``flow`` (the known-edge reference on the
signed-flow features, :mod:`policies.flow`), ``random`` or ``random:SEED`` (uniform, deterministic), or a path:
a version directory, or a registry directory (its ``latest``).

**In the log** a model enters a session as one ``ModelLoaded`` per role (``model_id`` = the version,
``version_hash`` = the hash, ``source`` = the version directory), logged as an input; the orchestrator's
loader (:func:`loader`) loads it when the event is folded, live and in replay alike, so a replay uses the
same model from the same seq on: from ``source``, or, if the model has moved since, from where :data:`MODELS_ENV`
(``tape replay --models DIR``) says it is now, found by its version and checked by its hash (:func:`locate`).

**Into the runtime**: :data:`PROVIDER` is what the kernel's topology is given (it never imports this package):
:func:`load_policies` for a session's named policies, :func:`loader` for its ``ModelLoaded`` events.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from runtime.events import ModelLoaded, Role
from runtime.topology import PolicyProvider

from .base import OBSERVATION_NAMES, ROLES, Policy
from .data import Tape
from .features import FeatureSpec, Scaling
from .regimes import REGIME_FEATURES, RegimeFilter, RegimeModel
from .roles import ROLE_ACTIONS, action_mask, decision, random_policies

__all__ = ["MODELS_ENV", "MODEL_FILE", "PROVIDER", "Model", "ModelError", "ModelPolicy", "ModelSource", "adopt_model",
           "base_policy", "is_named", "load_model", "load_policies", "loader", "locate", "model_events", "network_input",
           "resolve", "save_model"]

MODEL_FILE = "model.json"
MODELS_ENV = "TAPE_MODELS"
"""where a replay also looks for the models a log names (:func:`locate`): directories, separated by ``os.pathsep``"""
LATEST = "latest"
FORMAT = 2
SINGLE_MODULE = "default_policy"


class ModelError(ValueError):
    """A model that cannot be found, read or trusted."""


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    format: int
    version: str
    hash: str
    kind: str
    roles: tuple[Role, ...]
    frozen: str
    modules: dict[str, str]
    """module id -> its RLModule directory, relative to the version directory"""
    lot: int = 0
    """single-agent models: the order size they were trained with"""
    train: dict[str, Any] = {}
    data: dict[str, Any] = {}
    software: dict[str, str] = {}
    observations: dict[str, tuple[str, ...]] = {}
    """(format 2) module id -> the observation layout it was trained on"""
    scaling: dict[str, Scaling] = {}
    """(format 2) module id -> its observation scaling"""
    masked: bool = False
    """(format 2) the modules take ``{"observations", "action_mask"}`` and mask the actions that cannot apply"""
    regimes: RegimeModel | None = None
    """(format 2, ``--regimes K``) the regime model whose probabilities follow every module's ``obs.vector()``"""


def _weights_digest(modules: Mapping[str, Any], kind: str, inputs: Mapping[str, Any] | None = None) -> str:
    """sha256 over the modules' states (sorted) and the tables they act through (module docstring). ``inputs``
    (format 2): the manifest's ``observations``, ``scaling`` and ``masked``; format 1 hashed this code's
    observation names instead."""
    import torch

    h = hashlib.sha256()
    if inputs is None:
        h.update(json.dumps({"kind": kind, "actions": ROLE_ACTIONS, "observations": OBSERVATION_NAMES},
                            sort_keys=True).encode())
    else:
        h.update(json.dumps({"kind": kind, "actions": ROLE_ACTIONS, **msgspec.to_builtins(inputs)},
                            sort_keys=True).encode())

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, Mapping):
            for key in sorted(obj, key=str):
                walk(f"{prefix}/{key}", obj[key])
            return
        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu().numpy()
        array = np.ascontiguousarray(np.asarray(obj))
        h.update(f"{prefix}|{array.dtype}|{array.shape}|".encode())
        h.update(array.tobytes())

    for mid in sorted(modules):
        walk(mid, modules[mid].get_state())
    return h.hexdigest()


def _data_description(tapes: Sequence[Tape], sources: Sequence[str]) -> dict[str, Any]:
    h = hashlib.sha256()
    for tape in tapes:
        h.update(f"{tape.session}/{tape.market}/{len(tape.events)}".encode())
        h.update(msgspec.msgpack.encode([e for _, e in tape.events]))
    return {"sources": list(sources), "sessions": sorted({t.session for t in tapes}), "tapes": len(tapes),
            "events": sum(len(t.events) for t in tapes), "digest": h.hexdigest()}


def observation_layout(kind: str, module: str, regimes: RegimeModel | None = None) -> tuple[str, ...]:
    """The observation layout of a module (module id = its role, or the single agent's), with the regime
    probabilities of ``regimes`` after ``obs.vector()``'s."""
    base = OBSERVATION_NAMES["exit" if kind == "single" else module]  # type: ignore[index]
    return base if regimes is None else (*base, *regimes.names)


def _inputs(kind: str, ids: Sequence[str], scaling: Mapping[str, Scaling], masked: bool,
            regimes: RegimeModel | None = None) -> dict[str, Any]:
    """What a format-2 manifest records of the modules' inputs (and its hash covers); ``regimes`` only when there
    is a regime model, so the models without one hash as they always did."""
    layouts = {mid: observation_layout(kind, mid, regimes) for mid in ids}
    out = {"observations": layouts, "scaling": {mid: scaling[mid] for mid in ids if mid in scaling}, "masked": masked}
    return out if regimes is None else {**out, "regimes": regimes}


def save_model(algo: Any, root: Path, config: Any, tapes: Sequence[Tape], *,
               scaling: Mapping[str, Scaling] | None = None, masked: bool = False,
               history: Sequence[Mapping[str, Any]] | None = None, regimes: RegimeModel | None = None) -> Manifest:
    """Save ``algo``'s trained modules as a new version under the registry directory ``root`` (module docstring),
    with their observation ``scaling`` (module id -> scaling), whether they are ``masked``, the ``regimes`` model
    their observations end with (if any), and the training ``history`` (``history.json`` and ``training.png``)."""
    learner = algo.learner_group._learner if getattr(algo.learner_group, "_learner", None) else None
    kind = config.env
    ids = list(config.roles) if kind == "roles" else [SINGLE_MODULE]
    if learner is not None:
        multi = learner.module
        modules = {mid: multi[mid] for mid in ids}
    else:  # remote learners: the weights come back as states
        modules = {mid: _StateOnly(state) for mid, state in algo.learner_group.get_weights(module_ids=ids).items()}
    inputs = _inputs(kind, ids, scaling or {}, masked, regimes)
    digest = _weights_digest(modules, kind, inputs)
    version = f"ppo@{digest[:12]}"
    root = root.resolve()  # RLlib's checkpointing reads a relative path as a URI without a scheme
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():  # the same weights trained again (same seed and data): already saved
        _set_latest(root, version)
        return read_manifest(final)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=root))
    try:
        manifest = _save(algo, staging, config, tapes, kind, ids, digest, version, inputs)
        if history is not None:
            _save_history(staging, list(history))
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _set_latest(root, version)
    return manifest


def adopt_model(version_dir: Path, root: Path, *, history: Sequence[Mapping[str, Any]] | None = None) -> Manifest:
    """Move a version saved elsewhere (:func:`save_model` under another root) into the registry ``root`` as its
    newest, with the training ``history`` (replacing any it had): how ``tape train --keep best`` keeps an earlier
    iteration's policies. A version ``root`` already holds (the same weights) stays as it is."""
    manifest = read_manifest(version_dir)
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    if history is not None:
        _save_history(version_dir, list(history))
    final = root / manifest.version
    if not final.exists():
        os.replace(version_dir, final)
    _set_latest(root, manifest.version)
    return manifest


HISTORY_FILE = "history.json"
CURVE_FILE = "training.png"


def _save_history(directory: Path, history: list[Mapping[str, Any]]) -> None:
    """The training history as JSON, and its curve as PNG (:func:`policies.plots.training_curve`)."""
    (directory / HISTORY_FILE).write_text(json.dumps(history, indent=1) + "\n")
    from .plots import training_curve

    training_curve(history, directory / CURVE_FILE)


def _save(algo: Any, staging: Path, config: Any, tapes: Sequence[Tape], kind: str, ids: list[str], digest: str,
          version: str, inputs: Mapping[str, Any]) -> Manifest:
    import ray
    import torch

    from runtime.version import code_version

    algo.save_to_path(str(staging / "checkpoint"))
    module_dir = Path("checkpoint") / "learner_group" / "learner" / "rl_module"
    manifest = Manifest(
        format=FORMAT, version=version, hash=digest, kind=kind, roles=tuple(config.roles) if kind == "roles" else ROLES,
        frozen=_frozen_name(config.frozen) if kind == "roles" else "",
        modules={mid: str(module_dir / mid) for mid in ids},
        lot=int(config.env_config.get("lot", 1_000)) if kind == "single" else 0,
        train=msgspec.to_builtins(config), data=_data_description(tapes, config.data),
        software={"tape": code_version(), "ray": str(ray.__version__), "torch": str(torch.__version__)},
        observations=inputs["observations"], scaling=inputs["scaling"], masked=inputs["masked"],
        regimes=inputs.get("regimes"))
    for mid in ids:
        if not (staging / manifest.modules[mid]).is_dir():
            raise ModelError(f"RLlib's checkpoint has no module directory {manifest.modules[mid]} "
                             f"(this Ray version lays checkpoints out differently)")
    (staging / MODEL_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
    return manifest


def is_named(name: str) -> bool:
    """Whether ``name`` is a built-in policy name (``rule``, ``flow``, ``random[:SEED]``) rather than a model path."""
    return name in ("rule", "flow", "random") or name.startswith("random:")


def _frozen_name(name: str) -> str:
    """A model's ``frozen``: a built-in name, or the version directory a path names now (a registry's latest may
    move on; the version the model was trained beside may not)."""
    return name if is_named(name) else str(resolve(name))


class _StateOnly:
    def __init__(self, state: Any) -> None:
        self.state = state

    def get_state(self) -> Any:
        return self.state


def _set_latest(root: Path, version: str) -> None:
    tmp = root / f".{LATEST}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, root / LATEST)


def read_manifest(version_dir: Path) -> Manifest:
    path = version_dir / MODEL_FILE
    try:
        return msgspec.json.decode(path.read_bytes(), type=Manifest)
    except FileNotFoundError:
        raise ModelError(f"{version_dir}: no {MODEL_FILE} (not a model version saved by tape train)") from None
    except msgspec.DecodeError as exc:
        raise ModelError(f"{path}: unreadable manifest ({exc})") from None


def resolve(path: str | Path) -> Path:
    """The version directory ``path`` names: itself, or the registry's ``latest``."""
    p = Path(path)
    if (p / MODEL_FILE).is_file():
        return p.resolve()
    if (p / LATEST).is_file():
        version = (p / LATEST).read_text().strip()
        if (p / version / MODEL_FILE).is_file():
            return (p / version).resolve()
        raise ModelError(f"{p}: latest names {version!r}, which is not there")
    raise ModelError(f"{p}: not a model (no {MODEL_FILE}) nor a registry directory (no {LATEST}); "
                     "train one with `tape train --out DIR`")


class Model:
    """A loaded model version: its manifest and inference modules."""

    def __init__(self, directory: Path, manifest: Manifest, modules: dict[str, Any]) -> None:
        self.directory, self.manifest, self.modules = directory, manifest, modules

    @property
    def version(self) -> str:
        return self.manifest.version

    def policies(self) -> dict[Role, Policy]:
        """A policy per role: the model's for the roles it learned, the frozen ones for the rest."""
        m = self.manifest
        regimes = None if m.regimes is None else RegimeFilter(m.regimes)  # one per set: its roles share a decision
        if m.kind == "single":
            module = self.modules[SINGLE_MODULE]
            scaling = m.scaling.get(SINGLE_MODULE)
            return {role: SingleAgentPolicy(role, module, m.version, m.lot, scaling, regimes) for role in ROLES}
        out: dict[Role, Policy] = dict(load_policies(m.frozen)) if set(m.roles) != set(ROLES) else {}
        for role in m.roles:
            out[role] = ModelPolicy(role, self.modules[role], m.version, m.scaling.get(role), m.masked, regimes)
        return out


@lru_cache(maxsize=16)
def _load(directory: str, expected_hash: str | None) -> Model:
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = Path(directory)
    manifest = read_manifest(path)
    inputs = _check_inputs(path, manifest)
    modules: dict[str, Any] = {}
    for mid, rel in manifest.modules.items():
        try:
            module = RLModule.from_checkpoint(str(path / rel))
        except Exception as exc:
            raise ModelError(f"{path / rel}: the {mid} module cannot be loaded ({type(exc).__name__}: {exc})") from None
        module.eval()
        modules[mid] = module
    digest = _weights_digest(modules, manifest.kind, inputs)
    if digest != manifest.hash:
        raise ModelError(f"{path}: the weights do not match the manifest's hash ({digest[:12]} != "
                         f"{manifest.hash[:12]}): the checkpoint was changed or damaged")
    if expected_hash is not None and digest != expected_hash:
        raise ModelError(f"{path}: holds model {manifest.version} ({digest[:12]}), not the {expected_hash[:12]} the log "
                         "names")
    return Model(path, manifest, modules)


def _check_inputs(path: Path, m: Manifest) -> dict[str, Any] | None:
    """A format-2 manifest's inputs, checked against this code's observation layouts (module docstring); None for
    format 1."""
    if m.format < 2:
        return None
    if m.format > FORMAT:
        raise ModelError(f"{path}: model format {m.format} is newer than this code reads ({FORMAT}): update tape")
    if m.regimes is not None:
        _check_regimes(path, m.regimes)
    for mid in m.modules:
        role = "exit" if m.kind == "single" else mid
        if role not in OBSERVATION_NAMES:
            raise ModelError(f"{path}: module {mid!r} is not a role this code knows ({', '.join(ROLES)})")
        ours = observation_layout(m.kind, mid, m.regimes)
        theirs = tuple(m.observations.get(mid, ()))
        what = f"{path}: the {mid} module's observation layout"
        if theirs != ours:
            raise ModelError(f"{what} does not match this code's: {_difference(theirs, ours)} (retrain it)")
        scaling = m.scaling.get(mid)
        if scaling is not None and scaling.names != ours:
            raise ModelError(f"{path}: the {mid} module's scaling is for another layout ({len(scaling.names)} features: "
                             f"{', '.join(scaling.names[:3])}…) than its observations ({len(ours)} features)")
    out = {"observations": m.observations, "scaling": m.scaling, "masked": m.masked}
    return out if m.regimes is None else {**out, "regimes": m.regimes}


def _difference(theirs: Sequence[str], ours: Sequence[str]) -> str:
    i = next((k for k, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b), min(len(theirs), len(ours)))
    got = theirs[i] if i < len(theirs) else "(end)"
    want = ours[i] if i < len(ours) else "(end)"
    return (f"{len(theirs)} features against {len(ours)}, first difference at position {i}: the model has {got!r}, "
            f"the code {want!r}")


def _check_regimes(path: Path, regimes: RegimeModel) -> None:
    """A regime model must read what this code's trackers sample (module docstring)."""
    if regimes.features != REGIME_FEATURES:
        raise ModelError(f"{path}: the regime model's features do not match this code's: "
                         f"{_difference(regimes.features, REGIME_FEATURES)} (retrain it)")
    spec = FeatureSpec()
    if (regimes.every_ns, regimes.samples) != (spec.regime_every_ns, spec.regime_samples):
        raise ModelError(f"{path}: the regime model filters samples every {regimes.every_ns / 1e9:g} s, "
                         f"{regimes.samples} of them; this code's trackers keep one every "
                         f"{spec.regime_every_ns / 1e9:g} s, {spec.regime_samples} of them (retrain it)")


def load_model(path: str | Path, expected_hash: str | None = None) -> Model:
    """The model at ``path`` (a version or a registry directory), its weights checked (module docstring)."""
    return _load(str(resolve(path)), expected_hash)


def load_policies(name: str | Path) -> dict[Role, Policy]:
    """Policies by name (module docstring)."""
    text = str(name)
    if text == "rule":
        from .rules import baselines

        return baselines()
    if text == "flow":
        from .flow import flow_policies

        return flow_policies()
    if text == "random" or text.startswith("random:"):
        seed = text.partition(":")[2] or "0"
        if not seed.isdigit():
            raise ModelError(f"policies {text!r}: random:SEED needs a whole number")
        return random_policies(int(seed))  # type: ignore[return-value]
    return load_model(text).policies()


def model_events(path: str | Path) -> list[ModelLoaded]:
    """The ``ModelLoaded`` inputs that put the model at ``path`` into a session, one per role it decides; a model
    whose untrained roles are another model's (``frozen`` a path) brings that model's events first."""
    model = load_model(path)
    m = model.manifest
    roles = ROLES if m.kind == "single" else m.roles
    before = [] if not m.frozen or is_named(m.frozen) else [e for e in model_events(m.frozen) if e.role not in roles]
    return before + [ModelLoaded(role=role, model_id=m.version, version_hash=m.hash, source=str(model.directory))
                     for role in roles]


def base_policy(path: str | Path) -> str:
    """The built-in policies a session using the model at ``path`` starts from (its roles' models are loaded over
    them): the innermost ``frozen`` name, or ``rule``."""
    m = load_model(path).manifest
    if not m.frozen:
        return "rule"
    return m.frozen if is_named(m.frozen) else base_policy(m.frozen)


class ModelSource:
    """A model path a live session follows (``tape paper --policies PATH``): the version it names now, and — a
    registry directory — each newer one saved there later."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.current: Path | None = None

    def poll(self) -> list[ModelLoaded]:
        """The ``ModelLoaded`` events of the version the path names, if it is not the one last returned."""
        directory = resolve(self.path)
        if directory == self.current:
            return []
        events = model_events(directory)
        self.current = directory
        return events


def loader(event: ModelLoaded) -> Policy:
    """The orchestrator's loader: the policy ``event`` names, from where it is now (:func:`locate`), checked against
    its hash."""
    return _load(str(locate(event)), event.version_hash).policies()[event.role]


def locate(event: ModelLoaded) -> Path:
    """The version directory holding the model ``event`` names: its recorded ``source`` if that still holds the
    version (its manifest's hash is the event's), else the first that does of, for each directory of
    :data:`MODELS_ENV` in order, the directory itself, its subdirectory named as the version, and that name one level
    further down (a directory of registries). So a log replays after its models moved, to another machine or an
    archive: ``tape replay verify LOG --models DIR``."""
    places = [Path(event.source)] if event.source else []
    roots = [Path(r) for r in os.environ.get(MODELS_ENV, "").split(os.pathsep) if r]
    for root in roots:
        places += [root, root / event.model_id, *sorted(root.glob(f"*/{glob.escape(event.model_id)}"))]
    for place in places:
        try:
            if (place / MODEL_FILE).is_file() and read_manifest(place).hash == event.version_hash:
                return place
        except (ModelError, OSError):
            continue
    where = os.pathsep.join(map(str, roots)) if roots else "not set"
    raise ModelError(f"model {event.model_id} (hash {event.version_hash[:12]}, the {event.role} role) is neither at "
                     f"{event.source or '(no path recorded)'}, where the session loaded it, nor under {MODELS_ENV} "
                     f"({where})")


PROVIDER = PolicyProvider(named=load_policies, load=loader, env_vars=(MODELS_ENV,))
"""the policies a session's topology is built with (:func:`runtime.topology.topology`)"""


# --- inference -------------------------------------------------------------------------------------------
def _act(module: Any, vector: np.ndarray, mask: np.ndarray | None = None) -> tuple[int, float]:
    """The module's most likely action for one observation (and its action mask, for a masked module), and its
    probability."""
    import torch

    obs: Any = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))[None]
    if mask is not None:
        obs = {"observations": obs, "action_mask": torch.from_numpy(mask)[None]}
    with torch.no_grad():
        out = module.forward_inference({"obs": obs})
        logits = out["action_dist_inputs"][0].double()
        probs = torch.softmax(logits, dim=0)
        action = int(torch.argmax(logits))
        return action, float(probs[action])


def network_input(obs: Any, scaling: Scaling | None, regimes: RegimeFilter | None) -> np.ndarray:
    """A role's observation as its network sees it: the regime probabilities appended, then the scaling."""
    vector = obs.vector()
    if regimes is not None:
        vector = regimes.extend(vector, obs.view.history)
    return vector if scaling is None else scaling.apply(vector)


class ModelPolicy:
    """A role decided by its trained module (module docstring)."""

    def __init__(self, role: Role, module: Any, version: str, scaling: Scaling | None = None,
                 masked: bool = False, regimes: RegimeFilter | None = None) -> None:
        self.role: Role = role
        self.module = module
        self.version = version
        self.scaling = scaling
        self.masked = masked
        self.regimes = regimes

    def decide(self, obs: Any) -> Any:
        vector = network_input(obs, self.scaling, self.regimes)
        action, probability = _act(self.module, vector, action_mask(self.role, obs) if self.masked else None)
        return decision(self.role, action, min(1.0, probability))


class SingleAgentPolicy:
    """One role of a single-agent model: the same module for every role, through the single agent's table."""

    def __init__(self, role: Role, module: Any, version: str, lot: int, scaling: Scaling | None = None,
                 regimes: RegimeFilter | None = None) -> None:
        self.role: Role = role
        self.module = module
        self.version = version
        self.lot = lot
        self.scaling = scaling
        self.regimes = regimes

    def decide(self, obs: Any) -> Any:
        from .env import agent_observation, decision_for

        if self.role == "sizing":
            return decision_for("sizing", 0, self.lot)
        seen_as: Role = "exit" if self.role == "exit" else "signal"  # entry sees what the signal step saw
        vector = agent_observation(seen_as, obs)
        if self.regimes is not None:
            vector = self.regimes.extend(vector, obs.view.history)
        action, _ = _act(self.module, vector if self.scaling is None else self.scaling.apply(vector))
        return decision_for(self.role, action, self.lot, obs)
