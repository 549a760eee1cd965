"""``tape cluster check``: before ``ray up``, every node of an on-premise cluster file checked over SSH."""

from __future__ import annotations

import argparse
import sys

import msgspec

from config import Settings

from ..cluster_check import CONNECT_TIMEOUT_S, ClusterFileError, SshRunner, check, read_cluster_file, report_lines


def register(commands: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    cluster = commands.add_parser("cluster", help="check a ray up cluster's nodes before ray up", formatter_class=fmt,
                                  description="Check a Ray cluster file's nodes before ray up.")
    sub = cluster.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "check", help="refuse a bad on-premise cluster at once: each node's SSH, key, tape version, paths, GPUs",
        formatter_class=fmt,
        description="Check every node of an on-premise cluster file (Ray's local provider: provider.head_ip,\n"
        "provider.worker_ips, auth.ssh_user, auth.ssh_private_key) before ray up, all nodes at once, each\n"
        f"connection given {CONNECT_TIMEOUT_S:g} s, so that a bad cluster is refused in seconds, each failure naming\n"
        "the node and what to fix there, instead of ray up hanging on it. On every node, in order:\n\n"
        "  ssh       port 22 answers (else: check the address and that sshd runs there)\n"
        "  key       the file's key is accepted for its user, without a prompt (else: add its public key to\n"
        "            ~USER/.ssh/authorized_keys there)\n"
        "  tape      tape --version in the user's login shell, run as ray up runs its commands, prints what it\n"
        "            prints here: the same tape commit, Python and Ray (else: install the same there)\n"
        "  path DIR  each --path is readable there (else: mount the shared filesystem there at the same path)\n"
        "  gpus      with --gpus N: the GPUs nvidia-smi -L lists on each node (0 without it); one more line,\n"
        "            for the cluster, fails when they add up to fewer than N\n\n"
        "A node that does not answer, or refuses the key, has its other checks skipped. One line per node\n"
        "per check (ok, failed or skipped, and what was found or what to do), then the verdict. SSH runs\n"
        "with BatchMode=yes, StrictHostKeyChecking=no and UserKnownHostsFile=/dev/null, as ray up's does.",
        epilog="examples:\n"
        "  tape cluster check config/cluster-onprem.yaml\n"
        "  tape cluster check config/cluster-onprem.yaml --path /shared/data --path /shared/models --gpus 2\n"
        "  tape cluster check config/cluster-onprem.yaml --json | jq '.results[] | select(.status == \"failed\")'\n\n"
        "exit status: 0 every check passed, 1 a check failed, 2 used wrongly (no such file, not YAML, not an\n"
        "on-premise cluster file: the message names the field)")
    p.add_argument("cluster_file", metavar="CLUSTER_YAML",
                   help="a ray up cluster file with provider.type: local (as config/cluster-onprem.yaml)")
    p.add_argument("--path", dest="paths", action="append", default=[], metavar="DIR",
                   help="an absolute path every node must be able to read (data, models, runs on a shared "
                   "filesystem); repeatable")
    p.add_argument("--gpus", type=int, default=None, metavar="N",
                   help="the GPUs the nodes must offer together (nvidia-smi -L on each)")
    p.add_argument("--json", action="store_true",
                   help="print the report as one JSON object: cluster, local_version, ok, results (node, check, "
                   "status, detail)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from . import UsageError, _versions

    bad = [p for p in args.paths if not p.startswith("/")]
    if bad:
        raise UsageError(f"--path {bad[0]}: give an absolute path, the same on every node")
    if args.gpus is not None and args.gpus < 0:
        raise UsageError(f"--gpus {args.gpus}: give a number of GPUs, 0 or more")
    try:
        cluster = read_cluster_file(args.cluster_file)
    except ClusterFileError as exc:
        raise UsageError(str(exc)) from None
    report = check(cluster, SshRunner(cluster.ssh_user, cluster.ssh_private_key), _versions(), paths=args.paths,
                   gpus=args.gpus)
    if args.json:
        document = {"cluster": report.cluster, "local_version": report.local_version, "ok": report.ok,
                    "results": report.results}
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document)) + b"\n")
    else:
        print(f"{cluster.path}: {len(cluster.nodes)} nodes, head {cluster.head_ip}, user {cluster.ssh_user}, "
              f"key {cluster.ssh_private_key or '(ssh default keys)'}; here: {report.local_version}")
        print("\n".join(report_lines(report, cluster)))
    sys.stdout.flush()
    return 0 if report.ok else 1
