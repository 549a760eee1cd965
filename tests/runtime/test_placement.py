"""Placement rules (runtime.placement): parsed with errors that name the rule, matched first-wins, and refused
before anything starts when the cluster cannot meet them. On a real cluster: tests/cluster."""

from __future__ import annotations

import pytest

from runtime.placement import PlacementError, Rule, check, parse, resources_for


def test_rules_parse_with_a_default_amount_and_the_first_match_wins():
    rules = parse(["book:*=tape_worker", "orchestrator=tape_decide:0.5", "*=tape_any:2"])
    assert rules == (Rule("book:*", "tape_worker", 0.01), Rule("orchestrator", "tape_decide", 0.5),
                     Rule("*", "tape_any", 2.0))
    assert resources_for(rules, "book:KXSIM-000") == {"tape_worker": 0.01}
    assert resources_for(rules, "orchestrator") == {"tape_decide": 0.5}
    assert resources_for(rules, "cash") == {"tape_any": 2.0}
    assert resources_for(rules[:2], "cash") is None


@pytest.mark.parametrize(("spec", "error"), [
    ("orchestrator", "expected PATTERN=RESOURCE[:AMOUNT]"),
    ("=tape_worker", "expected PATTERN=RESOURCE[:AMOUNT]"),
    ("book:*=", "expected PATTERN=RESOURCE[:AMOUNT]"),
    ("book:*=tape_worker:lots", "the amount 'lots' is not a number"),
    ("book:*=tape_worker:0", "the amount must be above 0"),
    ("book:*=GPU", "name a custom resource the nodes declare, not Ray's GPU"),
])
def test_a_malformed_rule_is_an_error_naming_it(spec, error):
    with pytest.raises(PlacementError) as caught:
        parse([spec])
    assert repr(spec) in str(caught.value) and error in str(caught.value)


def test_a_resource_no_node_offers_or_a_rule_matching_nothing_is_refused_at_once():
    offered = {"CPU": 6.0, "tape_worker": 200.0, "tape_head": 1.0, "node:10.0.0.10": 1.0}
    check(parse(["book:*=tape_worker"]), offered, ["book:A", "cash"])
    with pytest.raises(PlacementError, match=r"no node of this cluster offers 'tape_gpu' \(custom resources "
                                             r"offered: tape_head, tape_worker\)"):
        check(parse(["orchestrator=tape_gpu"]), offered)
    with pytest.raises(PlacementError, match="matches nothing to place"):
        check(parse(["orchestratr=tape_worker"]), offered, ["orchestrator", "cash"])


@pytest.mark.parametrize("command", ["paper --duration 1", "train --data data --iterations 1"])
def test_the_commands_refuse_a_malformed_rule_before_anything_runs(command, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    tape = str(Path(sys.executable).with_name("tape"))
    subprocess.run([tape, "synth", "--sessions", "1", "--markets", "1", "--duration", "60", "--log", "data"],
                   cwd=tmp_path, capture_output=True, timeout=120, check=True)
    done = subprocess.run([tape, *command.split(), "--place", "orchestrator"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 2 and "--place: placement 'orchestrator': expected PATTERN=RESOURCE" in done.stderr, \
        done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # nothing written
