"""Fault tolerance on the local Ray cluster: a segment actor killed mid-run, S3 answering every 5th request with
503 SlowDown, an output that cannot be written and a disk that fills up. Each run either completes with every
image exactly once, or stops with exit status 1/2 and one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from jobs.label import main as label_main
from jobs.nightly import main as nightly_main
from tests.e2e.conftest import SMALL_RUN as SETTINGS
from tests.e2e.conftest import read_dataset
from tests.faulty_proxy import FaultyProxy
from tests.images import write_good_images

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55word"


def _label(ray_cluster: str, *args: str) -> int:
    return label_main([*args, *SETTINGS, "--set", f"ray.address={ray_cluster}"])


def _assert_each_image_once(out: Path, expected: list[str]) -> None:
    images = read_dataset(out / "images", ["image_id"])
    assert [r["image_id"] for r in images] == sorted(expected)
    annotations = read_dataset(out / "annotations", ["image_id", "annotation_id"])
    assert (
        len({r["annotation_id"] for r in annotations}) == len(annotations) == sum(r["num_annotations"] for r in images)
    )
    assert (out / "_SUCCESS").exists()


def _kill_segment_actor_after_first_part(out: Path, killed: list) -> None:
    from ray.util.state import list_actors

    deadline = time.time() + 240
    while time.time() < deadline:
        parts = list((out / "images").glob("*.parquet")) if (out / "images").exists() else []
        if parts:
            for actor in list_actors(filters=[("state", "=", "ALIVE")]):
                if "Segment" in actor.class_name and actor.pid:
                    os.kill(actor.pid, signal.SIGKILL)
                    killed.append((actor.actor_id, len(parts)))
                    return
        time.sleep(0.05)


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_killed_segment_actor_is_restarted_and_the_output_is_complete(ray_cluster, tmp_path):
    from ray.util.state import get_actor

    folder, out = tmp_path / "in", tmp_path / "out"
    write_good_images(folder, 10, seed=21)
    killed: list = []
    killer = threading.Thread(target=_kill_segment_actor_after_first_part, args=(out, killed))
    killer.start()
    try:
        code = _label(ray_cluster, "--input", str(folder), "--output", str(out), "--set", "segment.batch_size=1")
    finally:
        killer.join()
    assert killed, "the segment actor was never seen alive after the first part"
    actor_id, parts_at_kill = killed[0]
    assert code == 0 and parts_at_kill < 5  # killed mid-run (5 parts of 2 images in all), then finished
    assert get_actor(actor_id).num_restarts >= 1  # Ray restarted the same actor
    _assert_each_image_once(out, [p.name for p in folder.iterdir()])


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_transient_s3_errors_are_retried_without_loss(ray_cluster, s3_endpoint, s3_bucket, tmp_path, capsys):
    """Also: credentials in the endpoint URL (MinIO style) are used, and appear in no output and no log line."""
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    folder = tmp_path / "in"
    for path in write_good_images(folder, 6, seed=31):
        client.upload_file(str(path), s3_bucket, f"photos/{path.name}")
    # Every 10th request (~30 of the run's ~330) gets 503 SlowDown; each retry waits ~1 s (the AWS SDK's standard
    # backoff), so more failures only make the test longer.
    with FaultyProxy(s3_endpoint, every=10) as proxy:
        args = ["--input", f"s3://{s3_bucket}/photos", "--output-root", f"s3://{s3_bucket}/labels", *SETTINGS]
        endpoint = proxy.url.replace("http://", f"http://testing:{SECRET}@")
        code = nightly_main(
            [*args, "--set", f"storage.s3_endpoint_url={endpoint}", "--set", f"ray.address={ray_cluster}"]
        )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert proxy.failed >= 10  # many requests were refused, and retried
    assert SECRET not in printed.out + printed.err
    summary = json.loads(printed.out.strip().splitlines()[-1])
    assert summary["new_images"] == 6 and summary["status"] == "complete"
    local = tmp_path / "copy"
    for obj in client.list_objects_v2(Bucket=s3_bucket, Prefix="labels/")["Contents"]:
        if obj["Key"].endswith("/"):
            continue  # a folder marker
        target = local / obj["Key"].removeprefix("labels/")
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(s3_bucket, obj["Key"], str(target))
        assert SECRET.encode() not in target.read_bytes(), obj["Key"]
    run = local / "runs" / summary["latest_run"]
    assert ":***@127.0.0.1" in (run / "run.json").read_text()
    _assert_each_image_once(run, [p.name for p in folder.iterdir()])
    view = local / "view" / Path(summary["view"]).name
    assert len(read_dataset(view / "annotations", ["annotation_id"])) == len(
        read_dataset(run / "annotations", ["annotation_id"])
    )


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_output_under_a_file_is_refused_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder's parent should be")
    data = Path(__file__).resolve().parents[1] / "data" / "images"
    assert label_main(["--input", str(data), "--output", str(blocker / "out"), *SETTINGS]) == 2
    assert "not-a-folder" in _one_line_error(capsys)
    assert nightly_main(["--input", str(data), "--output-root", str(blocker / "root"), *SETTINGS]) == 2
    assert "not-a-folder" in _one_line_error(capsys)


@pytest.fixture()
def mount_point(tmp_path) -> Iterator[Path]:
    """An empty folder to mount on; skips the test where this machine refuses mounts (not root, no CAP_SYS_ADMIN)."""
    point = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
    point.mkdir()
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _mount(*args: str) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")


def test_read_only_output_is_refused_in_one_line(tmp_path, mount_point, capsys):
    _mount("-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount_point))
    data = Path(__file__).resolve().parents[1] / "data" / "images"
    assert nightly_main(["--input", str(data), "--output-root", str(mount_point / "root"), *SETTINGS]) == 2
    assert "Read-only file system" in _one_line_error(capsys)


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_full_disk_stops_the_run_with_one_line_and_exit_1(ray_cluster, tmp_path, mount_point):
    _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point))
    folder = tmp_path / "in"
    write_good_images(folder, 6, seed=41)
    (mount_point / "ballast").write_bytes(b"\0" * 44 * 1024)  # leaves 20 KiB: enough to start, not to finish
    out = mount_point / "out"
    # A separate process, as a scheduler runs it: what reaches its stderr is what a user sees.
    args = ["--input", str(folder), "--output", str(out), *SETTINGS, "--set", f"ray.address={ray_cluster}"]
    job = subprocess.run([sys.executable, "-m", "jobs.label", *args], cwd=REPO, capture_output=True, text=True)
    assert job.returncode == 1, job.stderr[-3000:]
    assert "Traceback" not in job.stderr, job.stderr[-3000:]
    last = job.stderr.strip().splitlines()[-1]
    assert last.startswith("samlabel: error: the run failed (no space left on device (OSError: No space left on")
    assert str(out) in last and last.endswith("rerun the same command to resume")
    assert json.loads(job.stdout.strip().splitlines()[-1])["status"] == "failed"
    assert (out / "_started.json").exists() and not (out / "_SUCCESS").exists()
