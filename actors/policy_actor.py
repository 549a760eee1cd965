"""Policy actors: each role's policy in a Ray actor of its own, asked once per decision round for every market.

By default the orchestrator calls its policies in its own process: the lowest latency, and what a rule or a small
network needs. A large network may want a node of its own (more memory, more cores than the orchestrator's node
spares): ``tape paper --policy-actors [RESOURCE[:AMOUNT]]`` hosts each role's policy in a :class:`PolicyHost` actor,
placed on the nodes declaring ``RESOURCE`` (:mod:`runtime.placement`, the names ``policy:signal`` …), and gives the
orchestrator a :class:`PolicyProxy` per role instead. The orchestrator asks a role once per step of a decision round
for all the markets at that step (``decide_many``: :meth:`actors.orchestrator.Orchestrator._round`), so a round
costs each role one Ray call (one per wave, when orders go out in several markets of it), whatever the number of
markets.

**The same answers.** A host builds its policy with the very provider the orchestrator would use in-process
(:class:`~runtime.topology.PolicyProvider`: the session's named policies, a ``ModelLoaded``'s model), and answers
each observation with that policy's ``decide_many``: the same code on the same floats, so a session's log is the
same bytes with policy actors or without, and ``tape replay verify`` replays it in-process. (A host runs the model
as the loader gives it, on the CPU: moving inference onto a GPU would change the floats a replay must repeat.) A
model's ``decide_many`` is its ``decide`` of each observation in turn: one batched forward pass could round
differently from one row's, making an answer depend on the markets beside it in the round; so the batching saves
Ray round trips, not inference time.

**Nothing in a snapshot.** A proxy is configuration, as an in-process policy is: the orchestrator's snapshot holds
the ``ModelLoaded`` events, never a handle. A host is a named actor (``tape-policy:<session>:<role>``, in the
session's namespace) found or created by name (``get_if_exists``), and it keeps each policy it was asked for under
what names it — the policy name, or the ``ModelLoaded`` itself — built on first use. So a restored orchestrator
finds the hosts again, a hot reload (a ``ModelLoaded`` folded) reaches them through the loader, a host Ray restarts
after its node was lost rebuilds what it is asked for, and two orchestrators sharing a host never disturb each
other. The session's driver starts the hosts (:func:`start`) and keeps their handles, so they live as long as the
session does (else the orchestrator's shell makes them, and they live as long as it does); a host found dead is
found or created again and asked again (a policy keeps no state: asking twice gives the same answer).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from policies.base import ROLES, Policy, decide_many
from runtime.events import ModelLoaded, Role
from runtime.placement import Rule, ray_options
from runtime.topology import PolicyProvider

__all__ = ["PolicyActors", "PolicyHost", "PolicyProxy", "calls", "start", "stop", "where"]

Source = str | ModelLoaded
"""what a host builds a policy from: a policy name (``rule``, ``flow``, …) or the ``ModelLoaded`` of a model"""
_TRIES = 5


@dataclass(frozen=True)
class PolicyActors:
    """A session's policy actors: the provider their policies come from, the session they serve (part of their
    names) and where they run (placement rules matched against ``policy:<role>``). Picklable: it is part of the
    orchestrator node's ``build``."""

    base: PolicyProvider
    session: str
    placement: tuple[Rule, ...] = ()

    def name(self, role: Role) -> str:
        return f"tape-policy:{self.session}:{role}"

    def provider(self) -> PolicyProvider:
        """A provider whose policies are proxies of these actors, hosting ``base`` 's: what the topology of a session
        with policy actors is built with (``topology(spec, PolicyActors(PROVIDER, spec.prefix).provider())``)."""
        return PolicyProvider(named=partial(_named, self), load=partial(_load, self), env_vars=self.base.env_vars)


def _named(actors: PolicyActors, name: str) -> dict[Role, Policy]:
    return {role: PolicyProxy(actors, role, name) for role in ROLES}


def _load(actors: PolicyActors, event: ModelLoaded) -> Policy:
    return PolicyProxy(actors, event.role, event)


class PolicyHost:
    """The actor: one role's policies, each under its source, built by the provider on first use."""

    def __init__(self, base: PolicyProvider, role: Role) -> None:
        self.base, self.role = base, role
        self._policies: dict[Source, Policy] = {}
        self._calls: Counter[int] = Counter()  # observations per call -> calls (bounded: a session's length does not grow it)

    def prepare(self, source: Source) -> tuple[Role, str]:
        """Build the policy ``source`` names (if not built yet): its ``(role, version)``."""
        policy = self._policy(source)
        return policy.role, policy.version

    def decide_many(self, source: Source, observations: list[Any]) -> list[Any]:
        """The decisions of ``source`` 's policy for ``observations``, in order."""
        self._calls[len(observations)] += 1
        return decide_many(self._policy(source), observations)

    def calls(self) -> Counter[int]:
        """How many ``decide_many`` calls brought how many observations: ``{observations: calls}``."""
        return Counter(self._calls)

    def node_ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def _policy(self, source: Source) -> Policy:
        policy = self._policies.get(source)
        if policy is None:
            policy = self.base.named(source)[self.role] if isinstance(source, str) else self.base.load(source)
            self._policies[source] = policy
        return policy


_ACTOR: Any = None


def _actor_class() -> Any:
    global _ACTOR  # the Ray actor class, made once (importing ray is slow; a replay never needs it)
    if _ACTOR is None:
        import ray

        _ACTOR = ray.remote(PolicyHost)
    return _ACTOR


def _host(actors: PolicyActors, role: Role) -> Any:
    """The role's host: found by name, or created where the placement says (else on this node, softly: a host Ray
    restarts after its node was lost may go elsewhere). ``num_cpus=0`` as the shells: they wait far more than they
    run."""
    return _actor_class().options(
        name=actors.name(role), get_if_exists=True, num_cpus=0, max_restarts=-1, max_task_retries=-1,
        **ray_options(actors.placement, f"policy:{role}", soft=True)).remote(actors.base, role)


class PolicyProxy:
    """A role's policy as the orchestrator holds it: every ``decide_many`` is one call to the role's host."""

    def __init__(self, actors: PolicyActors, role: Role, source: Source) -> None:
        self.actors, self.source = actors, source
        self._handle = _host(actors, role)
        self.role, self.version = self._call(role, "prepare", source)

    def decide(self, obs: Any) -> Any:
        return self.decide_many([obs])[0]

    def decide_many(self, observations: Sequence[Any]) -> list[Any]:
        return self._call(self.role, "decide_many", self.source, list(observations))

    def _call(self, role: Role, method: str, *args: Any) -> Any:
        """``ray.get`` of one call to the host; a host found dead (its owner gone, say, before Ray restarted or
        removed it) is found or created again and asked again, a few times."""
        import ray
        from ray.exceptions import RayActorError

        for attempt in range(1, _TRIES + 1):
            try:
                return ray.get(getattr(self._handle, method).remote(*args))
            except RayActorError:
                if attempt == _TRIES:
                    raise
                time.sleep(0.2 * attempt)
                self._handle = _host(self.actors, role)
        raise AssertionError("unreachable")


def start(actors: PolicyActors) -> list[Any]:
    """Start every role's host from here (the session's driver) and wait until they are up: their handles, in role
    order, to keep while the session runs (a host lives as long as a handle to it, and its owner, does)."""
    import ray

    handles = [_host(actors, role) for role in ROLES]
    ray.get([h.node_ip.remote() for h in handles])
    return handles


def where(actors: PolicyActors) -> dict[Role, str]:
    """The address of the node each role's host runs on."""
    import ray

    return dict(zip(ROLES, ray.get([ray.get_actor(actors.name(r)).node_ip.remote() for r in ROLES]), strict=True))


def calls(actors: PolicyActors) -> dict[Role, Counter[int]]:
    """Per role, how many of its host's calls brought how many observations (:meth:`PolicyHost.calls`)."""
    import ray

    return dict(zip(ROLES, ray.get([ray.get_actor(actors.name(r)).calls.remote() for r in ROLES]), strict=True))


def stop(actors: PolicyActors) -> None:
    """End the session's hosts (those still running)."""
    import ray

    for role in ROLES:
        with contextlib.suppress(ValueError):  # (not running)
            ray.kill(ray.get_actor(actors.name(role)))
