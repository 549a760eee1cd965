"""``tape bench cluster``: a real Ray cluster on a testbed (package docstring), measured.

* ``sampling_sps_1_worker`` / ``sampling_sps_2_workers``: RLlib sampling env steps per second with two env runners
  per worker (each worker declares 2 CPUs), placed on the workers (``--place env_runner=tape_worker``), on a
  cluster of the head and one worker, then of the head and two; ``sampling_scaling`` is their ratio. The hosts
  share this machine's cores, so the same ratio in processes on one node (``local_scaling``: 2 then 4 env runners
  on a local Ray) is printed beside it: what the cluster adds or costs is the difference.
* ``latency_p50_ms`` / ``latency_p99_ms``: tick-to-order latency of a paper session (the seeded random baselines
  on 10 markets, as ``tape bench runtime``) driven from the head with the books and the orchestrator on the
  workers, every book update crossing hosts; ``…_one_node`` the same session with every machine on the head.
* ``node_loss_*``: a paper session from the head (:mod:`runtime.testbed.session`) whose orchestrator's worker is
  killed partway: how many machines were rebuilt, the longest rebuild (from its start until its channel was open:
  Ray's 10-30 s to declare the node dead come before), the log records replayed into them, the rest of the session's
  seconds, and whether its log is the in-process run's byte for byte and verifies.
* ``cluster_up_s`` / ``cluster_down_s``: ``ray up`` until every node is alive, and ``ray down``.

Each measurement runs on the head as a Python process of its own (``python -c``), as a user's driver would; the
figures are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cluster import GIB, RayCluster
from .hosts import Testbed, result_of

_SAMPLING = """
import json, ray
ray.init(address={address!r}, logging_level="ERROR", log_to_driver=False{cpus})
from policies.bench import measure_sampling
from runtime.placement import parse
print("RESULT=" + json.dumps(measure_sampling({runners}, {steps}, placement=parse({place!r}))))
"""

_LATENCY = """
import asyncio, json, ray
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
from {module} import {name} as PROVIDER
from runtime.bench import measure_latency
from runtime.placement import parse
print("RESULT=" + json.dumps(asyncio.run(measure_latency(10, {seconds}, policies=PROVIDER,
                                                         placement=parse({place!r})))))
"""


def _on_head(cluster: RayCluster, script: str, timeout: float) -> dict[str, Any]:
    return cluster.bed.python(cluster.head, script, cwd=os.getcwd(), timeout=timeout)


def _local(script: str, timeout: float) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, check=False)
    return result_of(done, "the local measurement")


def _node_loss(cluster: RayCluster, out: Path, provider: str) -> dict[str, Any]:
    """:mod:`runtime.testbed.session` with ``--kill`` on the head: the worker running the orchestrator is killed
    once the session is partway through; what the recovery took."""
    out.mkdir(parents=True)
    driver = cluster.bed.popen(cluster.head, f"cd {shlex.quote(os.getcwd())} && python -m runtime.testbed.session "
                                             f"{shlex.quote(str(out))} {provider} --kill", out / "driver.log")
    deadline = time.monotonic() + 600
    while not (out / "placed.json").exists():
        if driver.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the node-loss session ended early:\n{(out / 'driver.log').read_text()[-3000:]}")
        time.sleep(0.1)
    placed = json.loads((out / "placed.json").read_text())
    cluster.bed.kill(next(h for h in cluster.workers if h.ip == placed["orchestrator"]))
    (out / "killed").write_text("")
    if driver.wait(timeout=900) != 0:
        raise RuntimeError(f"the node-loss session failed:\n{(out / 'driver.log').read_text()[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    recoveries = result["recoveries"]
    return {"node_loss_machines_rebuilt": len(recoveries),
            "node_loss_recovery_s": round(max((r["seconds"] for r in recoveries), default=0.0), 1),
            "node_loss_records_replayed": sum(r["replayed"] for r in recoveries),
            "node_loss_rest_of_session_s": round(result["seconds_after_kill"], 1),
            "node_loss_log_identical": bool(result["identical"] and result["verified"])}


def run_cluster_bench(*, provider: str, steps: int = 2_000, latency_s: float = 20.0,
                      say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every figure of ``tape bench cluster`` (module docstring); ``provider`` names the policy provider the
    sessions on the head use, as ``module:attribute`` (the kernel imports no policies)."""
    out: dict[str, Any] = {"cores": os.cpu_count()}
    root = Path(tempfile.mkdtemp(prefix="tape-bench-cluster-"))
    for workers in (1, 2):
        with Testbed(1 + workers, root / f"bed{workers}", env={"RAY_AUTH_MODE": "token"}) as bed:
            cluster = RayCluster(bed, cpus=2, memory_bytes=3 * GIB)
            say(f"ray up: the head and {workers} worker(s) …")
            try:
                up = cluster.up()
                if workers == 2:
                    out["cluster_up_s"] = round(up, 1)
                say(f"RLlib sampling, {2 * workers} env runners on the worker(s) …")
                sampled = _on_head(cluster, _SAMPLING.format(address="auto", cpus="", runners=2 * workers,
                                                             steps=steps, place=["env_runner=tape_worker"]), 900)
                out[f"sampling_sps_{workers}_worker{'s' if workers > 1 else ''}"] = sampled["sps"]
                out[f"sampling_nodes_{workers}"] = len(set(sampled["nodes"]))
                if workers == 2:
                    for name, place in (("", ["book:*=tape_worker", "orchestrator=tape_worker"]), ("_one_node", [])):
                        say(f"tick-to-order latency, {'machines on the workers' if place else 'all on the head'} …")
                        module, _, name = provider.partition(":")
                        lat = _on_head(cluster, _LATENCY.format(module=module, name=name, seconds=latency_s,
                                                                place=place), 600)
                        out[f"latency_p50_ms{name}"] = round(lat.get("order_p50", float("nan")), 2)
                        out[f"latency_p99_ms{name}"] = round(lat.get("order_p99", float("nan")), 2)
                        out[f"decision_p50_ms{name}"] = round(lat.get("decision_p50", float("nan")), 2)
                        out[f"decision_p99_ms{name}"] = round(lat.get("decision_p99", float("nan")), 2)
                    say("node loss: a paper session from the head, the orchestrator's worker killed partway …")
                    out.update(_node_loss(cluster, root / "loss", provider))
            finally:
                started = time.monotonic()
                cluster.down()
                if workers == 2:
                    out["cluster_down_s"] = round(time.monotonic() - started, 1)
    out["sampling_scaling"] = round(out["sampling_sps_2_workers"] / max(out["sampling_sps_1_worker"], 1), 2)
    for runners in (2, 4):
        say(f"the same sampling in processes on one node: {runners} env runners …")
        local = _local(_SAMPLING.format(address="local", cpus=", num_cpus=4, include_dashboard=False",
                                        runners=runners, steps=steps, place=[]), 900)
        out[f"local_sps_{runners}_runners"] = local["sps"]
    out["local_scaling"] = round(out["local_sps_4_runners"] / max(out["local_sps_2_runners"], 1), 2)
    return out
