"""``tape cluster check``: before ``ray up``, a bad on-premise cluster is refused in seconds, each failure naming the
node and what to fix there.

The checks run against real hosts (``runtime.testbed``: namespaces on this machine, each with sshd; no Ray is
started): they need root, ``/usr/sbin/sshd`` and ``rsync``, skip without them, and fail in CI (``CI=true``). The
cluster file's own mistakes are checked without hosts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml

from runtime.cluster_check import ClusterFile, ClusterFileError, Done, Result, SshRunner, check, read_cluster_file
from tests.cluster.guard import testbed_or_skip

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
VERSION = re.compile(r"tape (?P<tape>[^+\s]+)\+g\w+ \(Python (?P<python>[^,]+), Ray [^)]+\)")


@pytest.fixture(scope="module")
def bed(tmp_path_factory) -> Iterator:
    testbed_or_skip()
    from runtime.testbed import Testbed

    with Testbed(3, tmp_path_factory.mktemp("check") / "bed") as testbed:
        yield testbed


def cluster_file(path: Path, bed, *, key: Path | None = None, extra: Sequence[str] = ()) -> Path:
    """The shipped on-premise cluster file with the testbed's hosts (and ``extra`` workers), its root and key."""
    config = yaml.safe_load((Path(__file__).parents[2] / "config" / "cluster-onprem.yaml").read_text())
    config["provider"].update(head_ip=bed.hosts[0].ip, worker_ips=[h.ip for h in bed.hosts[1:]] + list(extra))
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(key or bed.key)}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def here() -> str:
    """``tape --version`` on this machine, read now (a commit made meanwhile changes it)."""
    return subprocess.run([TAPE, "--version"], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def run_check(path: Path, **options) -> dict[tuple[str, str], tuple[str, str]]:
    cluster = read_cluster_file(path)
    report = check(cluster, SshRunner(cluster.ssh_user, cluster.ssh_private_key), here(), **options)
    return {(r.node, r.check): (r.status, r.detail) for r in report.results}


# --- on real hosts ------------------------------------------------------------------------------------------------
def test_a_good_cluster_passes_every_check_on_every_node(bed, tmp_path):
    """tape cluster check, run as a user runs it: every node answers, takes the key, runs this tape and reads the
    shared path; exit 0, and --json says the same."""
    path = cluster_file(tmp_path / "cluster.yaml", bed)
    done = subprocess.run([TAPE, "cluster", "check", str(path), "--path", str(bed.root)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    version = here()
    lines = done.stdout.splitlines()
    head, width = f"{bed.hosts[0].ip} (head)", len(f"path {bed.root}")  # the widest node and check
    assert lines[1:5] == [f"{head}  {'ssh':<{width}}  ok       port 22 answers",
                          f"{head}  {'key':<{width}}  ok       accepted for root",
                          f"{head}  {'tape':<{width}}  ok       {version}",
                          f"{head}  path {bed.root}  ok       readable"]
    assert lines[-1] == "all 12 checks passed on 3 nodes: ready for ray up"
    as_json = json.loads(subprocess.run([TAPE, "cluster", "check", str(path), "--json"], capture_output=True,
                                        text=True, timeout=60).stdout)
    assert as_json["ok"] is True and as_json["local_version"] == version
    assert {(r["node"], r["check"], r["status"]) for r in as_json["results"]} == {
        (h.ip, c, "ok") for h in bed.hosts for c in ("ssh", "key", "tape")}


def test_a_node_with_no_host_is_refused_in_seconds_naming_it(bed, tmp_path):
    missing = f"{bed.subnet}.99"
    start = time.monotonic()
    results = run_check(cluster_file(tmp_path / "cluster.yaml", bed, extra=[missing]))
    assert time.monotonic() - start < 15
    status, detail = results[missing, "ssh"]
    assert status == "failed"
    assert re.fullmatch(rf"node {re.escape(missing)}: unreachable on port 22 \([^)]+\): check the address and that "
                        "sshd runs there", detail), detail
    assert results[missing, "tape"] == ("skipped", "not checked: unreachable")
    assert all(results[h.ip, "tape"][0] == "ok" for h in bed.hosts)


def test_a_key_the_nodes_do_not_accept_is_refused_naming_each_node(bed, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    results = run_check(cluster_file(tmp_path / "cluster.yaml", bed, key=other))
    for host in bed.hosts:
        assert results[host.ip, "ssh"][0] == "ok"
        assert results[host.ip, "key"] == ("failed", f"node {host.ip}: the SSH key {other} was refused for user "
                                           f"root: add its public key ({other}.pub) to ~root/.ssh/authorized_keys "
                                           "there")
        assert results[host.ip, "tape"] == ("skipped", "not checked: the key was refused")


def test_a_node_with_another_tape_or_none_is_refused_naming_both_versions(bed, tmp_path):
    """h1's login shell finds a tape of another commit and Ray first on its PATH; h2's finds no tape at all."""
    version = here()
    match = VERSION.fullmatch(version)
    assert match, version
    other = f"tape {match['tape']}+g000000000000 (Python {match['python']}, Ray 0.0.1)"
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "tape").write_text(f"#!/bin/sh\necho '{other}'\n")
    (fake / "tape").chmod(0o755)
    bashrcs = {h.name: h.dir / "home" / ".bashrc" for h in bed.hosts[1:]}
    saved = {name: rc.read_text() for name, rc in bashrcs.items()}
    try:
        bashrcs["h1"].write_text(saved["h1"] + f"export PATH={fake}:$PATH\n")
        bashrcs["h2"].write_text(saved["h2"] + "export PATH=/usr/bin:/bin\n")
        results = run_check(cluster_file(tmp_path / "cluster.yaml", bed))
    finally:
        for name, rc in bashrcs.items():
            rc.write_text(saved[name])
    h0, h1, h2 = (h.ip for h in bed.hosts)
    assert results[h0, "tape"] == ("ok", version)
    assert results[h1, "tape"] == ("failed", f"node {h1} runs {other}, this machine runs {version}: check out the same "
                                   "commit there (or share this checkout) and pip install -c constraints.txt -e .; "
                                   "install the same Ray there (pip install -c constraints.txt -e . pins it)")
    status, detail = results[h2, "tape"]
    assert status == "failed"
    assert re.fullmatch(rf"node {re.escape(h2)}: tape is not on the login shell's PATH \(.*tape: command not found\); "
                        rf"this machine runs {re.escape(version)}: install tape there from the same commit, with the "
                        r"same Python and Ray \(pip install -c constraints.txt -e . in the same checkout\), on the PATH "
                        "of the login shell", detail), detail


def test_a_path_one_node_cannot_read_is_refused_naming_that_node(bed, tmp_path):
    """Each host has its own /tmp/ray: a directory made in h0's and h1's is missing on h2, as an unmounted share."""
    shared = "/tmp/ray/tape-check-shared"
    for host in bed.hosts[:2]:
        (host.dir / "ray" / "tape-check-shared").mkdir(exist_ok=True)
    results = run_check(cluster_file(tmp_path / "cluster.yaml", bed), paths=[shared, str(bed.root)])
    h0, h1, h2 = (h.ip for h in bed.hosts)
    assert results[h0, f"path {shared}"] == results[h1, f"path {shared}"] == ("ok", "readable")
    assert results[h2, f"path {shared}"] == ("failed", f"node {h2} cannot read {shared} (it does not exist there): "
                                             "mount the shared filesystem there at the same path")
    assert all(results[h.ip, f"path {bed.root}"] == ("ok", "readable") for h in bed.hosts)


def test_more_gpus_than_the_nodes_offer_is_refused_naming_the_gpus_of_each(bed, tmp_path):
    """The hosts share this machine's GPUs (none, usually): one more than they list together is refused."""
    listed = subprocess.run("nvidia-smi -L", shell=True, capture_output=True, text=True, check=False).stdout
    each = len(re.findall(r"(?m)^GPU \d+:", listed))
    wanted = each * len(bed.hosts) + 1
    path = cluster_file(tmp_path / "cluster.yaml", bed)
    done = subprocess.run([TAPE, "cluster", "check", str(path), "--gpus", str(wanted), "--json"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    (total,) = [r for r in json.loads(done.stdout)["results"] if r["node"] == "cluster"]
    found = ", ".join(f"{h.ip} {each}" for h in bed.hosts)
    assert total == {"node": "cluster", "check": "gpus", "status": "failed",
                     "detail": f"the nodes offer {each * len(bed.hosts)} GPUs, {wanted} needed ({found}): add GPU "
                     "nodes to provider.worker_ips, or install the NVIDIA driver (nvidia-smi) where a GPU is not seen"}


# --- without hosts ------------------------------------------------------------------------------------------------
class FakeNodes:
    """Nodes that answer from a table: every node takes the key and runs ``version``; ``gpus`` by node."""

    def __init__(self, version: str, gpus: dict[str, int]) -> None:
        self.version, self.gpus = version, gpus

    def reach(self, ip: str) -> str | None:
        return None

    def run(self, ip: str, command: str) -> Done:
        if command == "tape --version":
            return Done(0, self.version + "\n", "")
        if "nvidia-smi" in command:
            return Done(0, "".join(f"GPU {i}: NVIDIA H100 (UUID: GPU-{i})\n" for i in range(self.gpus[ip])), "")
        return Done(0, "", "")


def test_the_gpus_of_every_node_add_up():
    cluster = ClusterFile("c.yaml", "10.0.0.10", ("10.0.0.11", "10.0.0.12"), "ubuntu", None)
    nodes = FakeNodes("tape 1", {"10.0.0.10": 0, "10.0.0.11": 2, "10.0.0.12": 1})
    enough = check(cluster, nodes, "tape 1", gpus=3)
    assert enough.ok and enough.results[-1] == Result("cluster", "gpus", "ok", "3 GPUs, 3 needed (10.0.0.10 0, "
                                                      "10.0.0.11 2, 10.0.0.12 1)")
    assert [r.detail for r in enough.results if r.check == "gpus"][:3] == ["0 GPUs", "2 GPUs", "1 GPU"]
    assert not check(cluster, nodes, "tape 1", gpus=4).ok


@pytest.mark.parametrize(("text", "error"), [
    ("provider: [unclosed\n", "not YAML (line 2, column 1): expected ',' or ']', but got '<stream end>'"),
    ("just a string\n", "not a cluster file (a YAML mapping with provider: and auth:)"),
    ("provider:\n  type: aws\n  region: us-west-2\nauth:\n  ssh_user: ubuntu\n",
     "provider.type is 'aws', not 'local': tape cluster check checks an on-premise cluster file (Ray's local "
     "provider, as config/cluster-onprem.yaml)"),
    ("provider:\n  type: local\n  worker_ips: [10.0.0.11]\nauth:\n  ssh_user: ubuntu\n",
     "provider.head_ip is missing: name the head node's address"),
    ("provider:\n  type: local\n  head_ip: 10.0.0.10\n  worker_ips: [10.0.0.11, 10.0.0.10]\nauth:\n  ssh_user: u\n",
     "10.0.0.10 is listed twice in provider.head_ip and provider.worker_ips"),
    ("provider:\n  type: local\n  head_ip: 10.0.0.10\nauth: {}\n", "auth.ssh_user is missing: name the user ray up "
     "logs in as"),
    ("provider:\n  type: local\n  head_ip: 10.0.0.10\nauth:\n  ssh_user: u\n  ssh_private_key: /nonexistent/key\n",
     "auth.ssh_private_key /nonexistent/key: no such file on this machine (the key ray up logs in with, read here)"),
])
def test_a_cluster_file_that_cannot_be_checked_is_refused_naming_the_field(tmp_path, text, error):
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(ClusterFileError) as raised:
        read_cluster_file(path)
    assert str(raised.value) == f"{path}: {error}"


def test_the_command_refuses_a_file_it_cannot_check_with_exit_status_2(tmp_path):
    (tmp_path / "bad.yaml").write_text("provider: [unclosed\n")
    for path, error in ((tmp_path / "bad.yaml", "not YAML (line 2, column 1)"), (tmp_path / "none.yaml", "no such file")):
        done = subprocess.run([TAPE, "cluster", "check", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.startswith(f"tape cluster: {path}: {error}"), done.stderr
