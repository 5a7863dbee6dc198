"""How ``--replicas`` scales: Ray Serve deployment options, without importing KServe or Ray.

Kept apart from :mod:`.replicas` so the CLI and tests can build and check them
in a process that never loads KServe (whose protobuf package clashes with
tritonclient's gRPC stubs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ufd.runtime.serve.config import ServeConfig


@dataclass(frozen=True)
class ReplicaOptions:
    """How many replicas, where, and how they scale.

    Attributes:
        replicas: replicas to start with (and keep, without ``max_replicas``).
        max_replicas: autoscale between ``replicas`` and this many by the
            requests each replica holds (``target_requests``).
        ray_address: a running cluster (``ray start --head``'s address, or
            ``auto``); ``None`` starts a local one for this process.
        cpus_per_replica: CPUs Ray reserves for each replica; a replica runs
            onnxruntime on that many threads (rounded up) unless ``--threads``
            says otherwise, so replicas sharing a node do not fight for cores.
        target_requests: requests in flight per replica that autoscaling aims at.
    """

    replicas: int
    max_replicas: int | None = None
    ray_address: str | None = None
    cpus_per_replica: float = 1.0
    target_requests: float = 4.0

    def deployment_options(self, name: str) -> dict[str, Any]:
        """Keyword arguments of ``serve.deployment`` for these options."""
        options: dict[str, Any] = {
            "name": name,
            "ray_actor_options": {"num_cpus": self.cpus_per_replica},
            "max_ongoing_requests": 64,
        }
        if self.max_replicas is None:
            options["num_replicas"] = self.replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.replicas,
                "initial_replicas": self.replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_requests,
            }
        return options

    def replica_config(self, config: ServeConfig) -> ServeConfig:
        """``config`` as each replica runs it: threads = its reserved CPUs unless set."""
        if config.threads is not None:
            return config
        return replace(config, threads=max(1, math.ceil(self.cpus_per_replica)))
