"""``--replicas`` options as Ray Serve gets them (no Ray, no KServe imported here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ufd.runtime.oip.scaling import ReplicaOptions
from ufd.runtime.serve.config import ServeConfig


@pytest.mark.parametrize(("cpus", "threads"), [(1.0, 1), (0.5, 1), (1.5, 2), (4.0, 4)])
def test_a_replica_runs_as_many_threads_as_cpus_ray_reserves_for_it(
    cpus: float, threads: int
) -> None:
    options = ReplicaOptions(2, cpus_per_replica=cpus)
    config = options.replica_config(ServeConfig(bundle=Path("b")))
    assert config.threads == threads
    assert options.deployment_options("ufd")["ray_actor_options"] == {"num_cpus": cpus}


def test_threads_given_by_the_user_win() -> None:
    options = ReplicaOptions(2, cpus_per_replica=1.0)
    assert options.replica_config(ServeConfig(bundle=Path("b"), threads=3)).threads == 3


def test_fixed_or_autoscaled_replicas() -> None:
    fixed = ReplicaOptions(2).deployment_options("ufd")
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    scaled = ReplicaOptions(1, max_replicas=4).deployment_options("ufd")["autoscaling_config"]
    assert (scaled["min_replicas"], scaled["max_replicas"]) == (1, 4)
    assert "num_replicas" not in ReplicaOptions(1, max_replicas=4).deployment_options("ufd")
