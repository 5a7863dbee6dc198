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
from typing import Any

from ufd.runtime.errors import UsageError
from ufd.runtime.oip.model import UfdModel
from ufd.runtime.oip.scaling import ReplicaOptions
from ufd.runtime.serve.config import ServeConfig

logger = logging.getLogger(__name__)
RAY_HINT = "pip install 'ufd[kserve-ray]' (KServe with Ray Serve)"


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
    replica = options.replica_config(config)
    handle = serve.run(deployment.bind(name, replica), name=name, route_prefix=None)
    model = RayModel(name, handle)
    model.load()
    return model


def shutdown() -> None:
    """Stop the replicas (and the local Ray this process started)."""
    import ray
    from ray import serve

    serve.shutdown()  # type: ignore[no-untyped-call]  # Ray Serve's own annotation
    ray.shutdown()
