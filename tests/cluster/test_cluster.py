"""A real three-node Ray cluster on this machine (``runtime.testbed``: hosts made of namespaces, each with sshd),
brought up by ``ray up`` of ``config/cluster-onprem.yaml`` and taken down by ``ray down``; on it, what a user does:
a paper session whose machines run on several nodes, a training job, a parallel replay, a tune, and the loss of a
node in the middle of a session.

Needs root, ``/usr/sbin/sshd`` and ``rsync`` (``.ci/run`` installs them): without them the tests skip, and in CI
(``CI=true``) they fail. The cluster's Ray is apart from the test session's own (other namespaces, its own
``/tmp/ray`` per host); its hosts share this machine's two cores, so it is slow, not big.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster.guard import testbed_or_skip

HERE = Path(__file__).parent
pytestmark = pytest.mark.timeout(1200)  # a cluster on two shared cores: minutes, not seconds
REPO = HERE.parent.parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    testbed_or_skip()
    from runtime.testbed import Testbed
    from runtime.testbed.cluster import GIB, RayCluster

    root = tmp_path_factory.mktemp("cluster")
    with Testbed(3, root / "bed", env={"RAY_AUTH_MODE": "token"}) as bed:
        ray_cluster = RayCluster(bed, cpus=2, memory_bytes=3 * GIB)
        try:
            ray_cluster.up_seconds = ray_cluster.up()
            yield ray_cluster
        finally:
            ray_cluster.down()


def on_head(cluster, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``command`` in a login shell on the head, from the repository (the same path on every node)."""
    done = cluster.bed.ssh(cluster.head, f"cd {REPO} && {command}", timeout=timeout, check=False)
    assert done.returncode == 0, f"{command} on the head exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def test_ray_up_brings_up_every_node_with_its_declared_resources_and_token_auth(cluster):
    nodes = {n["ip"]: n for n in cluster.nodes()}
    assert sorted(nodes) == sorted(h.ip for h in cluster.bed.hosts) and all(n["alive"] for n in nodes.values())
    assert nodes[cluster.head.ip]["resources"].get("tape_head") == 1
    assert all(nodes[w.ip]["resources"].get("tape_worker") == 100 for w in cluster.workers)
    # the launcher, with the cluster's token, submits; without it the dashboard's job API refuses
    assert cluster.ray("job", "list", "--address", cluster.dashboard).returncode == 0
    refused = subprocess.run(["ray", "job", "list", "--address", cluster.dashboard], capture_output=True, text=True,
                             env={**cluster.env, "RAY_AUTH_MODE": "token", "HOME": str(cluster.bed.root)},
                             timeout=60, check=False)
    assert refused.returncode != 0, refused.stdout


@pytest.fixture(scope="module")
def paper_run(cluster, tmp_path_factory) -> Path:
    """A paper session sequenced on the cluster by ``runtime/testbed/session.py`` on the head: its output directory."""
    out = tmp_path_factory.mktemp("paper")
    on_head(cluster, f"python -m runtime.testbed.session {out} policies.registry:PROVIDER")
    return out


def test_a_paper_session_on_several_nodes_logs_what_one_process_logs(cluster, paper_run):
    """Books and orchestrator on the workers (placement rules), the rest on the head: the channels cross hosts,
    the log is byte for byte an in-process run's, and it verifies."""
    result = json.loads((paper_run / "result.json").read_text())
    workers = {w.ip for w in cluster.workers}
    assert {result["placed"]["orchestrator"]} <= workers
    assert {ip for name, ip in result["placed"].items() if name.startswith("book:")} <= workers
    assert result["placed"]["execution"] == cluster.head.ip  # no rule: the driver's node
    assert result["identical"], result
    assert result["verified"] and result["fills"] > 0 and not result["recoveries"], result


def test_replay_verify_on_ray_runs_segments_on_every_node(cluster, paper_run):
    """``tape replay verify --ray`` of a file log on the shared filesystem: its segments spread over the nodes."""
    done = on_head(cluster, f"tape replay verify {paper_run / 'cluster'} --ray --jobs 3 --json",
                   ).stdout.strip().splitlines()[-1]
    report = json.loads(done)
    assert report["ok"] and report["segments"] > 1, report
    assert sorted(report["nodes"]) == sorted(h.ip for h in cluster.bed.hosts), report


def test_a_training_job_runs_on_the_workers_and_the_head_trades_its_model(cluster, tmp_path_factory):
    """``ray job submit -- tape train`` from the launcher, its env runners placed on the workers (``--place``): the
    model version it saves on the shared filesystem is what ``tape eval`` and ``tape paper`` on the head load."""
    shared = tmp_path_factory.mktemp("train")
    on_head(cluster, f"tape synth --sessions 2 --markets 2 --duration 300 --seed 1 --log {shared / 'data'}")
    job = cluster.ray("job", "submit", "--address", cluster.dashboard, "--",
                      "tape", "train", "--data", str(shared / "data"), "--iterations", "2", "--train-batch", "400",
                      "--minibatch", "200", "--epochs", "1", "--num-env-runners", "2", "--envs-per-runner", "1",
                      "--place", "env_runner=tape_worker", "--out", str(shared / "models"), timeout=900, check=False)
    assert job.returncode == 0 and "saved" in job.stdout, job.stdout[-4000:] + job.stderr[-4000:]
    runners = env_runner_nodes(cluster, "DEAD")  # (the job has ended: its actors are gone)
    assert runners and set(runners) <= {w.ip for w in cluster.workers}, runners
    evaluated = on_head(cluster, f"tape eval --data {shared / 'data'} --policies rule,{shared / 'models'} --json")
    assert json.loads(evaluated.stdout.strip().splitlines()[-1]), evaluated.stdout
    paper = on_head(cluster, f"tape paper --policies {shared / 'models'} --duration 5 --log {shared / 'runs'} "
                             f"--place 'book:*=tape_worker'")
    assert "policies: model ppo@" in paper.stdout, paper.stdout
    placed = next(line for line in paper.stdout.splitlines() if line.startswith("machines placed: "))
    by_node = dict(part.split(": ", 1) for part in placed[len("machines placed: "):].split("; "))
    assert set(by_node) - {cluster.head.ip} and all("book:" in by_node[ip] for ip in set(by_node) - {cluster.head.ip})
    assert "book:" not in by_node.get(cluster.head.ip, ""), placed


def test_tune_runs_a_trial_on_every_node(cluster, tmp_path_factory):
    """``tape tune`` on the head: three trials, each reserving two CPUs (itself and one env runner) on nodes of two,
    so one runs on each node; the search record says where each ran, and the best is saved for the head to use."""
    shared = tmp_path_factory.mktemp("tune")
    on_head(cluster, f"tape synth --sessions 2 --markets 2 --duration 300 --seed 3 --log {shared / 'data'} && "
                     f"tape synth --sessions 1 --markets 2 --duration 300 --seed 4 --log {shared / 'heldout'}")
    (shared / "space.toml").write_text(
        "[base]\niterations = 2\ntrain_batch = 400\nminibatch = 200\nepochs = 1\nnum_env_runners = 1\n"
        "envs_per_runner = 1\nschedule = \"joint\"\n\n[space]\nlr = {choice = [1e-4, 3e-4, 1e-3]}\n")
    on_head(cluster, f"tape tune --data {shared / 'data'} --heldout {shared / 'heldout'} --space {shared / 'space.toml'} "
                     f"--trials 3 --max-concurrent 3 --storage {shared / 'runs'} --out {shared / 'models'}", timeout=900)
    models = shared / "models"
    record = json.loads((models / (models / "latest").read_text().strip() / "search.json").read_text())
    trials = record["trials"]
    assert [t["status"] for t in trials] == ["finished"] * 3, trials
    assert sorted(t["node"] for t in trials) == sorted(h.ip for h in cluster.bed.hosts), trials


def env_runner_nodes(cluster, state: str = "ALIVE") -> list[str]:
    """The addresses of the nodes of the RLlib env runners in ``state``, as the head sees them."""
    script = ("import json, ray; from ray.util.state import list_actors; ray.init(address='auto', logging_level='ERROR');"
              "ips = {n['NodeID']: n['NodeManagerAddress'] for n in ray.nodes()};"
              f"print('RESULT=' + json.dumps(sorted(ips[a.node_id] for a in list_actors(detail=True, limit=10000) "
              f"if 'EnvRunner' in a.class_name and a.state == '{state}')))")
    return cluster.bed.python(cluster.head, script, timeout=120)


def job_status(cluster, job_id: str) -> str:
    done = cluster.ray("job", "status", "--address", cluster.dashboard, job_id, check=False)
    return (done.stdout + done.stderr).lower()


def test_losing_a_worker_during_training_restarts_its_env_runners_and_training_completes(cluster, tmp_path_factory):
    """Kill the worker host of an env runner after the second iteration: RLlib restarts the env runner on the other
    worker, the job completes and saves its model. Then the host comes back and rejoins (for the next test)."""
    shared = tmp_path_factory.mktemp("train-loss")
    on_head(cluster, f"tape synth --sessions 2 --markets 2 --duration 300 --seed 2 --log {shared / 'data'}")
    job_id = f"train-loss-{cluster.bed.tag}"
    cluster.ray("job", "submit", "--address", cluster.dashboard, "--no-wait", "--submission-id", job_id, "--",
                "tape", "train", "--data", str(shared / "data"), "--iterations", "20", "--train-batch", "1000",
                "--minibatch", "500", "--epochs", "1", "--num-env-runners", "2", "--envs-per-runner", "1",
                "--place", "env_runner=tape_worker", "--schedule", "joint", "--out", str(shared / "models"))
    deadline = time.monotonic() + 600
    while "iteration 2/20" not in (logs := cluster.ray("job", "logs", "--address", cluster.dashboard, job_id).stdout):
        assert time.monotonic() < deadline, logs[-3000:]
        time.sleep(2)
    victim = next(h for h in cluster.workers if h.ip in env_runner_nodes(cluster))
    cluster.bed.kill(victim)
    killed = time.monotonic()
    while not any(s in (status := job_status(cluster, job_id)) for s in ("succeeded", "failed", "stopped")):
        assert time.monotonic() < killed + 420, status + cluster.ray(
            "job", "logs", "--address", cluster.dashboard, job_id).stdout[-6000:]
        time.sleep(3)
    logs = cluster.ray("job", "logs", "--address", cluster.dashboard, job_id).stdout
    assert "succeeded" in status and "iteration 20/20" in logs and "saved" in logs, status + logs[-4000:]
    survivor = next(h for h in cluster.workers if h is not victim)
    assert survivor.ip in env_runner_nodes(cluster, "DEAD")  # (every env runner of the job, ended with it)
    print(f"\ntraining through a lost worker: finished {time.monotonic() - killed:.1f} s after the kill")
    print(f"the lost worker, restarted, was back in the cluster (the autoscaler over SSH) in {cluster.rejoin(victim):.1f} s")


def test_losing_the_orchestrators_node_in_a_session_loses_nothing(cluster, tmp_path_factory):
    """Kill the worker host running the orchestrator (every process of it, sshd too) halfway through: its machines
    are rebuilt on the other worker from the last checkpoint and the log's tail, the session goes on, and the log
    is byte for byte an in-process run's (no fill lost or doubled), and verifies. Last: the cluster stays a node
    short."""
    out = tmp_path_factory.mktemp("loss")
    log = out / "driver.log"
    driver = cluster.bed.popen(
        cluster.head, f"cd {REPO} && python -m runtime.testbed.session {out} policies.registry:PROVIDER --kill", log)
    deadline = time.monotonic() + 600
    while not (out / "placed.json").exists():
        assert driver.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, "the driver never reached half way"
        time.sleep(0.1)
    placed = json.loads((out / "placed.json").read_text())
    victim = next(h for h in cluster.workers if h.ip == placed["orchestrator"])
    survivor = next(h for h in cluster.workers if h is not victim)
    cluster.bed.kill(victim)
    (out / "killed").write_text("")
    assert driver.wait(timeout=900) == 0, log.read_text()[-4000:]
    result = json.loads((out / "result.json").read_text())
    lost = {name for name, ip in placed.items() if ip == victim.ip}
    assert {r["node"] for r in result["recoveries"]} == lost, result
    assert {result["after"][name] for name in lost} == {survivor.ip}
    assert result["identical"] and result["verified"], result
    print(f"\nnode loss: {len(lost)} machines rebuilt ({', '.join(sorted(lost))}); "
          f"recovery {max(r['seconds'] for r in result['recoveries']):.1f} s, records replayed "
          f"{sum(r['replayed'] for r in result['recoveries'])}; the rest of the session {result['seconds_after_kill']:.1f} s")
