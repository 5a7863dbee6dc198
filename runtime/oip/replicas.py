"""``ufd-serve --protocol v2 --replicas N``: the v2 model as Ray Serve replicas.

KServe's ingress (REST and gRPC, in this process) hands each request to a Ray
Serve deployment of :class:`Replica` through KServe's own ``RayModel``; Ray
Serve spreads requests over the replicas, anywhere on the Ray cluster, and
restarts a replica that dies. Each replica opens the bundle on its own node, so
``auto`` takes the graph that node's parity allows (as ``ufd-scan``'s workers
do), and every answer says which replica and graph scored it (response
parameters ``ufd_replica``, ``ufd_precision``). Ray Serve runs no HTTP proxy of
its own: KServe's is the only ingress.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ufd.runtime.errors import UsageError
from ufd.runtime.oip.model import UfdModel
from ufd.runtime.serve.config import ServeConfig

logger = logging.getLogger(__name__)
RAY_HINT = "pip install 'ufd[kserve-ray]' (KServe with Ray Serve)"


@dataclass(frozen=True)
class ReplicaOptions:
    """How many replicas, where, and how they scale.

    Attributes:
        replicas: replicas to start with (and keep, without ``max_replicas``).
        max_replicas: autoscale between ``replicas`` and this many by the
            requests each replica holds (``target_requests``).
        ray_address: a running cluster (``ray start --head``'s address, or
            ``auto``); ``None`` starts a local one for this process.
        cpus_per_replica: CPUs Ray reserves for each replica.
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


class Replica(UfdModel):
    """One Ray Serve replica: the bundle opened, warmed and measured on its node."""

    def __init__(self, name: str, config: ServeConfig) -> None:
        super().__init__(name, config)
        self.load()


def deploy(config: ServeConfig, name: str, options: ReplicaOptions) -> Any:
    """Start the replicas and return KServe's ``RayModel`` over them (loaded).

    Raises:
        UsageError: Ray Serve is not installed, or the cluster cannot be reached.
    """
    try:
        import ray
        from kserve.ray import RayModel
        from ray import serve
    except ImportError as e:
        raise UsageError(f"--replicas needs Ray Serve: {RAY_HINT}") from e
    try:
        ray.init(
            address=options.ray_address,
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UsageError(f"cannot reach the Ray cluster at {options.ray_address}: {e}") from e
    serve.start(proxy_location="Disabled")
    deployment = serve.deployment(**options.deployment_options(name))(Replica)
    handle = serve.run(deployment.bind(name, config), name=name, route_prefix=None)
    model = RayModel(name, handle)
    model.load()
    return model


def shutdown() -> None:
    """Stop the replicas (and the local Ray this process started)."""
    import ray
    from ray import serve

    serve.shutdown()  # type: ignore[no-untyped-call]  # Ray Serve's own annotation
    ray.shutdown()
