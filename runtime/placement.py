"""Where work runs on a Ray cluster: declared, never assumed.

A rule ``PATTERN=RESOURCE[:AMOUNT]`` asks, for everything whose name matches the shell-style ``PATTERN``, an
``AMOUNT`` (default 0.01) of the custom Ray ``RESOURCE`` — one that the nodes meant for it declare at start
(``ray start --resources='{"tape_worker": 100}'``; ``config/cluster-onprem.yaml`` gives the head ``tape_head`` and
each worker ``tape_worker``). Ray then places it only on such a node, and places it there again when its node is
lost and it is rebuilt. The first matching rule wins; a paper session's machine that no rule matches runs on the
driver's node (:class:`actors.shell.RayRunner`: the lowest latency).

The names are a paper session's state machines (``book:KXSIM-000``, ``orchestrator``, ``execution``, ``cash``,
``fills``, …: :mod:`runtime.topology`), its policy actors (``policy:signal``, …: :mod:`actors.policy_actor`, placed
by ``tape paper --policy-actors RESOURCE[:AMOUNT]``, :func:`parse_resource`), and ``env_runner`` and ``learner`` for
training. Placement changes where
machines run, never what they derive: a session's log is the same bytes wherever its machines ran.

A rule naming a resource no node of the cluster offers is refused before anything starts (Ray would otherwise
leave the actor pending forever), with the resources the cluster does offer.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_AMOUNT = 0.01


class PlacementError(ValueError):
    """A placement rule that cannot be parsed or met; the message names the rule and what to do."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    resource: str
    amount: float = DEFAULT_AMOUNT

    def __str__(self) -> str:
        return f"{self.pattern}={self.resource}:{self.amount:g}"


def parse(specs: Sequence[str]) -> tuple[Rule, ...]:
    """Rules from ``PATTERN=RESOURCE[:AMOUNT]`` strings (module docstring), in order."""
    rules = []
    for spec in specs:
        pattern, eq, target = spec.partition("=")
        resource, colon, amount = target.partition(":")
        if not eq or not pattern.strip() or not resource.strip():
            raise PlacementError(f"placement {spec!r}: expected PATTERN=RESOURCE[:AMOUNT], "
                                 "e.g. 'book:*=tape_worker' or 'orchestrator=tape_worker:0.5'")
        try:
            value = float(amount) if colon else DEFAULT_AMOUNT
        except ValueError:
            raise PlacementError(f"placement {spec!r}: the amount {amount!r} is not a number") from None
        if not 0 < value <= 1_000_000:
            raise PlacementError(f"placement {spec!r}: the amount must be above 0, not {amount}")
        if resource.strip() in ("CPU", "GPU", "memory", "object_store_memory"):
            raise PlacementError(f"placement {spec!r}: name a custom resource the nodes declare, not Ray's "
                                 f"{resource.strip()} (ask for CPUs and GPUs with the command's own options)")
        rules.append(Rule(pattern.strip(), resource.strip(), value))
    return tuple(rules)


def parse_resource(pattern: str, target: str) -> Rule:
    """The rule ``PATTERN=target`` for an option that places one kind of thing and so takes ``RESOURCE[:AMOUNT]``
    alone (``tape paper --policy-actors``: ``policy:*``), checked as :func:`parse` checks a rule."""
    if "=" in target:
        raise PlacementError(f"{target!r}: expected RESOURCE[:AMOUNT] (the names are given: {pattern}), "
                             "e.g. 'tape_gpu' or 'tape_gpu:0.5'")
    (rule,) = parse([f"{pattern}={target}"])
    return rule


def resources_for(rules: Sequence[Rule], name: str) -> dict[str, float] | None:
    """The Ray resources the first rule matching ``name`` asks for; None when none matches."""
    for rule in rules:
        if fnmatch.fnmatchcase(name, rule.pattern):
            return {rule.resource: rule.amount}
    return None


def check(rules: Sequence[Rule], offered: Mapping[str, float], names: Sequence[str] = ()) -> None:
    """Refuse rules the cluster cannot meet: a resource no node offers (``offered``: the cluster's total
    resources, ``ray.cluster_resources()``), or, given the ``names`` to be placed, a rule that matches none of them
    (a typo would otherwise place nothing, silently)."""
    custom = sorted(k for k in offered if k not in ("CPU", "GPU", "memory", "object_store_memory")
                    and not k.startswith("node:") and not k.startswith("accelerator_type:"))
    for rule in rules:
        if offered.get(rule.resource, 0) < rule.amount:
            raise PlacementError(
                f"placement {rule}: no node of this cluster offers {rule.resource!r} "
                f"(custom resources offered: {', '.join(custom) or 'none'}); start the nodes meant for it with "
                f"ray start --resources='{{\"{rule.resource}\": 100}}'")
        if names and not any(fnmatch.fnmatchcase(n, rule.pattern) for n in names):
            raise PlacementError(f"placement {rule}: {rule.pattern!r} matches nothing to place "
                                 f"(names: {', '.join(sorted(names)[:8])}{', …' if len(names) > 8 else ''})")


def ray_options(rules: Sequence[Rule], name: str, *, soft: bool = False) -> dict[str, Any]:
    """Ray options placing the actor ``name``: the resources the first matching rule asks for, else a node affinity
    to this process's node (``soft``: elsewhere when that node cannot take it, or is gone)."""
    resources = resources_for(rules, name)
    if resources is not None:
        return {"resources": resources}
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=here, soft=soft)}
