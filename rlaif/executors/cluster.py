"""Ray for the executors: a cluster joined or a local Ray started, quietly."""

from __future__ import annotations

import logging
import os
from typing import Any

from rlaif.errors import RlaifError
from rlaif.executors.config import RayConfig

log = logging.getLogger(__name__)


def start_ray(cfg: RayConfig) -> Any:
    """Ray, connected to ``cfg.address`` or started here; quiet unless something fails."""
    try:
        import ray
    except ImportError as exc:
        raise RlaifError(
            'executor: ray needs Ray Data: pip install -e ".[ray]" (ray[data])'
        ) from exc
    if not ray.is_initialized():
        if cfg.address is None:  # here: actors import judge modules as this process does
            path = os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH")] if p)
            ray.init(
                num_cpus=cfg.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": {"PYTHONPATH": path}},
            )
        else:  # a cluster: the job's runtime environment (ray job submit --working-dir)
            ray.init(address=cfg.address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        log.info("ray: %s", ray.cluster_resources())
    return ray
