"""The output root's lock: one holder at a time, expiry and takeover, lost locks detected, on local files and S3."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st
from pipeline.nightly.lock import LOCK_NAME, LockHeldError, LockLostError, OutputLock


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> tuple[str, StorageConfig]:
    if request.param == "local":
        return str(tmp_path / "root"), StorageConfig()
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/root", StorageConfig(s3_endpoint_url=endpoint)


def test_second_run_is_refused_while_the_first_holds_the_lock(root):
    uri, storage = root
    with OutputLock(uri, storage, ttl_s=60, owner="night-1"), pytest.raises(LockHeldError, match="held by night-1"):
        OutputLock(uri, storage, ttl_s=60, owner="night-2").acquire()
    with OutputLock(uri, storage, ttl_s=60, owner="night-2"):  # released at exit: free again
        pass
    assert not st.exists(st.join_uri(uri, LOCK_NAME), storage)


def test_expired_lock_is_taken_over_and_the_old_holder_finds_out(root):
    uri, storage = root
    stale = OutputLock(uri, storage, ttl_s=0.3, owner="crashed")
    stale.acquire()
    time.sleep(0.5)
    fresh = OutputLock(uri, storage, ttl_s=60, owner="next-night")
    fresh.acquire()
    with pytest.raises(LockLostError):
        stale.check()
    stale.release()  # must not delete the new holder's lock
    fresh.check()
    held = json.loads(st.read_bytes(st.join_uri(uri, LOCK_NAME), storage))
    assert held["owner"] == "next-night"


def test_of_two_runs_racing_for_a_stale_lock_one_wins(root):
    uri, storage = root
    OutputLock(uri, storage, ttl_s=0.1, owner="crashed").acquire()
    time.sleep(0.3)
    a, b = OutputLock(uri, storage, ttl_s=60, owner="a"), OutputLock(uri, storage, ttl_s=60, owner="b")
    a.acquire()
    with pytest.raises(LockHeldError):
        b.acquire()


def test_heartbeat_keeps_a_long_run_locked(root):
    uri, storage = root
    with OutputLock(uri, storage, ttl_s=1.5, owner="long-run") as lock:
        for _ in range(8):  # 4 s, more than twice the TTL: only renewals keep it; checks renew concurrently
            time.sleep(0.5)
            lock.check()
        with pytest.raises(LockHeldError):
            OutputLock(uri, storage, ttl_s=1.5, owner="other").acquire()


def test_lock_of_a_dead_process_on_this_machine_is_stale_at_once(tmp_path):
    uri, storage = str(tmp_path / "root"), StorageConfig()
    code = (
        "from pipeline.config.sections import StorageConfig; from pipeline.nightly.lock import OutputLock; "
        f"OutputLock({uri!r}, StorageConfig(), 3600).acquire()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # exits without releasing: a killed driver
    OutputLock(uri, storage, ttl_s=60).acquire()
