"""Driver for the node-removal test (run as ``python -m tests.e2e.node_removal_driver IN OUT``, in a process of
its own, because it starts its own multi-node cluster with ``ray.cluster_utils.Cluster``).

Head: 2 CPUs, no GPU. Worker: 2 CPUs and the logical GPU, so the segment actor lives there. Once the job has
written its first part, the worker node is removed (its raylet and every process on it die) and a replacement
node with a GPU joins; the job must still finish. Prints one JSON line: the job's exit status and what was seen.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ray.cluster_utils import Cluster

from tests.e2e.conftest import SMALL_RUN as SETTINGS

REPO = Path(__file__).resolve().parents[2]


def main(folder: str, out: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    worker = cluster.add_node(num_cpus=2, num_gpus=1)
    cluster.wait_for_nodes()
    args = ["--input", folder, "--output", out, *SETTINGS, "--set", "segment.batch_size=1"]
    job = subprocess.Popen(
        [sys.executable, "-m", "jobs.label", *args, "--set", f"ray.address={cluster.address}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    parts_at_removal = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline and job.poll() is None:
            parts = list((Path(out) / "images").glob("*.parquet"))
            if parts:
                parts_at_removal = len(parts)
                cluster.remove_node(worker)
                cluster.add_node(num_cpus=2, num_gpus=1)
                break
            time.sleep(0.05)
        _, err = job.communicate(timeout=400)
    finally:
        if job.poll() is None:
            job.kill()
        cluster.shutdown()
    print(json.dumps({"returncode": job.returncode, "parts_at_removal": parts_at_removal, "stderr": err[-2000:]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
