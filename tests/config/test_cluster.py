"""config/cluster.yaml: the `ray up` cluster is one Ray's own schema accepts, and it installs this project."""

from __future__ import annotations

from pathlib import Path

import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "config" / "cluster.yaml"


def test_the_cluster_config_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(CLUSTER.read_text())
    validate_config(prepare_config(config))  # as `ray up` does: raises on a field Ray does not know or a wrong type
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert any(t["resources"].get("GPU") for t in types.values()), "a GPU worker type for the learners"


def test_every_node_gets_this_repository_and_the_cpu_torch_pin_before_it():
    config = yaml.safe_load(CLUSTER.read_text())
    assert config["file_mounts"] == {"~/tape": "."}
    setup = config["setup_commands"]
    torch = next(i for i, c in enumerate(setup) if "torch==" in c)
    project = next(i for i, c in enumerate(setup) if "-e ~/tape" in c)
    assert torch < project
