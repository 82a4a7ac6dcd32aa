"""A real cluster as the README starts it: ``ray start --head`` on a machine with a Ray token (``ray get-auth-token
--generate`` writes ~/.ray/auth_token; with it, the head turns token authentication on), then the README's ``ray job
submit`` command and ``deploy/nightly.sh`` with ``SAMLABEL_SUBMIT=1``, through the CLI.

The head runs with its own HOME (its token file) and temp dir, in its own process group, so the session's cluster
and the user's ``~/.ray`` are left alone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import DATA, REPO, SMALL_RUN

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def token_cluster() -> Iterator[dict[str, str]]:
    """A head started with ``ray start --head --block``; yields the client environment without RAY_AUTH_MODE."""
    home = Path(tempfile.mkdtemp(prefix="rayhome"))
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # The job's `python` is the one on the head's PATH, as for a user with the project's environment activated.
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    generate = [str(BIN / "ray"), "get-auth-token", "--generate"]
    subprocess.run(generate, env=env, capture_output=True, check=True, timeout=60)
    port, dashboard = _free_port(), _free_port()
    # Every port of its own: the session's cluster (when a test before this one started it) holds the defaults,
    # and a head whose job agent cannot bind never accepts a job.
    agent_ports = [
        f"--{name}={_free_port()}"
        for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                     "metrics-export-port", "ray-client-server-port")
    ]  # fmt: skip
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dashboard}",
         "--dashboard-host=127.0.0.1", "--num-cpus=2", "--num-gpus=0", f"--temp-dir={temp}",
         "--include-dashboard=true", *agent_ports],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not _listening(dashboard):
            assert head.poll() is None and time.time() < deadline, "ray start --head did not come up"
            time.sleep(1)
        yield {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dashboard}"}
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _submit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The README's command; retried while the new head's job agent is still starting."""
    command = [str(BIN / "ray"), "job", "submit", "--working-dir", ".", "--", "python", "-m", "jobs.label", *args]
    deadline = time.time() + 120
    while True:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        if "No available agent" not in done.stdout + done.stderr or time.time() > deadline:
            return done
        time.sleep(3)


@pytest.mark.slow  # a real head and two submitted jobs: in the slow set that .ci/run runs after the default one
def test_readme_submit_needs_the_token_mode_and_nightly_sh_sets_it(token_cluster, tmp_path):
    args = ["--input", str(DATA), "--output", str(tmp_path / "out"), *SMALL_RUN, "--set", "input.limit=2"]
    refused = _submit(token_cluster, *args)
    assert "Missing authentication token" in refused.stdout + refused.stderr
    assert not (tmp_path / "out").exists()

    done = _submit({**token_cluster, "RAY_AUTH_MODE": "token"}, *args)  # the README's command, as written
    assert (tmp_path / "out" / "_SUCCESS").exists(), (done.stdout + done.stderr)[-3000:]

    nightly_env = {
        **token_cluster,
        "SAMLABEL_SUBMIT": "1",
        "SAMLABEL_INPUT": str(DATA),
        "SAMLABEL_OUTPUT_ROOT": str(tmp_path / "nightly"),
        "SAMLABEL_ARGS": " ".join([*SMALL_RUN, "--set", "input.limit=2"]),
        "SAMLABEL_PYTHON": sys.executable,
    }
    night = subprocess.run(
        ["sh", "deploy/nightly.sh"], cwd=REPO, env=nightly_env, capture_output=True, text=True, timeout=400
    )
    assert night.returncode == 0, (night.stdout + night.stderr)[-3000:]
    summary = json.loads([line for line in night.stdout.splitlines() if line.startswith('{"')][-1])
    assert summary["status"] == "complete" and summary["new_images"] == 2
