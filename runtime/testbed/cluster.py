"""``ray up`` on a testbed: the user's on-premise cluster file (``config/cluster-onprem.yaml``) with the testbed's
addresses and key, brought up, waited for, and taken down with ``ray down``.

The launcher (the machine's side, where ``ray up`` runs, as a user's laptop would) gets its own home (its
``~/.ray/auth_token``, the token every node is given) and its own temporary directory, so nothing of it lands in
the machine's ``/root`` or ``/tmp/ray``. Token authentication is on everywhere (``RAY_AUTH_MODE=token``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from .hosts import RESULT, Host, Testbed, TestbedError

ONPREM = Path(__file__).resolve().parents[2] / "config" / "cluster-onprem.yaml"
RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"
"""this Python's ``ray`` (a ``tape`` run by its path, outside its activated environment, has no ``ray`` on PATH)"""
GIB = 1024 ** 3


class RayCluster:
    """A Ray cluster over every host of ``bed``: ``h0`` the head, the others workers.

    ``cpus``, ``memory_bytes`` and ``object_store_bytes`` are each node's (hosts share one machine's cores and
    memory, and each would otherwise claim all of them).
    """

    def __init__(self, bed: Testbed, *, cpus: int = 1, memory_bytes: int = 2 * GIB,
                 object_store_bytes: int = 256 * 1024 ** 2, source: Path = ONPREM) -> None:
        self.bed = bed
        self.dir = bed.root / "launcher"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"tb{bed.tag}l", dir="/tmp"))  # short: ssh control socket paths
        self.file = self.dir / "cluster.yaml"
        self.head = bed.hosts[0]
        self.workers = bed.hosts[1:]
        self.env = {**os.environ, "HOME": str(self.dir), "TMPDIR": str(self.tmp), "RAY_AUTH_MODE": "token", "RAY_UP_enable_autoscaler_v2": "0"}
        """the launcher's environment: ``ray up``, ``ray down``, ``ray job submit`` from the machine"""
        self.config = self._config(source, cpus, memory_bytes, object_store_bytes)

    def _config(self, source: Path, cpus: int, memory: int, store: int) -> dict[str, Any]:
        config = yaml.safe_load(source.read_text())
        config["cluster_name"] = f"tape-tb{self.bed.tag}"
        config["provider"].update(head_ip=self.head.ip, worker_ips=[h.ip for h in self.workers])
        config["min_workers"] = config["max_workers"] = len(self.workers)
        config["auth"] = {"ssh_user": "root", "ssh_private_key": str(self.bed.key)}
        size = f" --num-cpus={cpus} --memory={memory} --object-store-memory={store}"
        for key in ("head_start_ray_commands", "worker_start_ray_commands"):
            config[key] = [c + size if "ray start" in c else c for c in config[key]]
        return config

    # --- up and down ------------------------------------------------------------------------------------------
    def up(self, timeout_s: float = 180.0) -> float:
        """``ray up``, then wait until every node is alive; the seconds it took."""
        start = time.monotonic()
        (self.dir / ".ray").mkdir(parents=True, exist_ok=True)
        self.file.write_text(yaml.safe_dump(self.config, sort_keys=False))
        if not (self.dir / ".ray" / "auth_token").exists():
            self.ray("get-auth-token", "--generate")
        self.ray("up", "--yes", "--no-config-cache", str(self.file), timeout=timeout_s, log="ray-up.log")
        self.wait_for_nodes(1 + len(self.workers), timeout_s - (time.monotonic() - start))
        return time.monotonic() - start

    def down(self) -> None:
        """``ray down`` (each host's ``ray stop`` stops only that host: PID namespaces). The launcher's files stay."""
        if self.file.exists():
            self.ray("down", "--yes", str(self.file), timeout=120, check=False, log="ray-down.log")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- using it ---------------------------------------------------------------------------------------------
    def ray(self, *args: str, timeout: float = 120, check: bool = True, log: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        """``ray ARGS`` on the launcher; its output appended to ``launcher/LOG`` when named."""
        done = subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=self.dir)
        if log:
            with (self.dir / log).open("a") as out:
                out.write(done.stdout + done.stderr)
        if check and done.returncode != 0:
            raise TestbedError(f"ray {' '.join(args)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
        return done

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes as the head sees them: ``{"ip", "alive", "resources"}`` each."""
        script = ("import json, ray; ray.init(address='auto', logging_level='ERROR'); "
                  f"print({RESULT!r} + json.dumps([{{'ip': n['NodeManagerAddress'], 'alive': n['Alive'], "
                  "'resources': n['Resources']} for n in ray.nodes()]))")
        try:
            return self.bed.python(self.head, script, timeout=60)
        except TestbedError:  # (not up yet)
            return []

    def wait_for_nodes(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + max(timeout_s, 1.0)
        while True:
            alive = [node for node in self.nodes() if node["alive"]]
            if len(alive) >= n:
                return
            if time.monotonic() > deadline:
                raise TestbedError(f"the cluster has {len(alive)} of {n} nodes alive after {timeout_s:.0f} s; "
                                   f"see {self.dir / 'ray-up.log'} and each host's /tmp/ray/session_latest/logs")
            time.sleep(1.0)

    def rejoin(self, host: Host, timeout_s: float = 180.0) -> float:
        """Bring a killed worker host back (its machine restarted) and wait until the cluster has every node again:
        the head's autoscaler (v1) finds the listed worker's Ray gone and starts it over SSH, as it would on real
        machines. The seconds it took."""
        start = time.monotonic()
        self.bed.revive(host)
        self.wait_for_nodes(1 + len(self.workers), timeout_s)
        return time.monotonic() - start

    @property
    def dashboard(self) -> str:
        return f"http://{self.head.ip}:8265"

