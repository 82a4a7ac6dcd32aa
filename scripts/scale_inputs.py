"""Inputs and nightly bookkeeping at bucket scale: time and peak memory of planning a run from a manifest of N URIs,
of listing N objects from an S3 server (moto's, on loopback; needs the [dev] extra), and of a night's ledger work
(read, diff against the input, record a run, rewrite) with a ledger of N rows. One fresh process per measurement.

    python scripts/scale_inputs.py manifest 10000000
    python scripts/scale_inputs.py s3-listing 100000
    python scripts/scale_inputs.py ledger 10000000
"""

from __future__ import annotations

import json
import resource
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema as col
from pipeline.config.loading import load_config
from pipeline.config.sections import LabelConfig, StorageConfig


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def ids(n: int, prefix: str = "") -> list[str]:
    return [f"{prefix}shard-{i // 1000:05d}/img-{i:08d}.jpg" for i in range(n)]


def manifest(n: int, work: Path) -> dict:
    from pipeline.labeling.inputs import plan_inputs

    path = work / "manifest.parquet"
    pq.write_table(pa.table({"image_uri": [f"s3://bucket/{i}" for i in ids(n)]}), path)
    before = peak_rss_mb()
    start = time.perf_counter()
    plan = plan_inputs(load_config(LabelConfig, None, [f"input.uri={path}", "output.uri=o"]))
    seconds = round(time.perf_counter() - start, 1)
    return {"rows": plan.table.num_rows, "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before,
            "plan_table_mb": round(plan.table.nbytes / 2**20, 1)}  # fmt: skip


def s3_listing(n: int, work: Path) -> dict:
    import boto3
    from moto.server import ThreadedMotoServer

    from pipeline.io.listing import list_images

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")  # fmt: skip
        client.create_bucket(Bucket="bucket")
        for key in ids(n, "images/"):
            client.put_object(Bucket="bucket", Key=key, Body=b"x")
        storage = StorageConfig(s3_endpoint_url=endpoint)
        import os

        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        before = peak_rss_mb()
        start = time.perf_counter()
        table = list_images("s3://bucket/images", storage)
        return {"objects": table.num_rows, "seconds": round(time.perf_counter() - start, 1),
                "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before}  # fmt: skip
    finally:
        server.stop()


def ledger(n: int, work: Path) -> dict:
    from pipeline.labeling.inputs import remaining
    from pipeline.nightly.ledger import SCHEMA, Ledger, read_ledger, write_ledger

    root, storage, fp = str(work / "root"), StorageConfig(), "f" * 64
    known = pa.array(ids(n))
    entries = pa.table(
        {col.IMAGE_ID: known, "fingerprint": pa.repeat(pa.scalar(fp), n), col.RUN_ID: pa.repeat(pa.scalar("r0"), n),
         col.STATUS: pa.repeat(pa.scalar("labeled"), n)},
        schema=SCHEMA,
    )  # fmt: skip
    write_ledger(root, storage, Ledger(entries, ({"run_id": "r0", "fingerprint": fp},)))
    plan = pa.table({col.IMAGE_ID: pa.concat_arrays([known, pa.array(ids(100_000, "new/"))])})
    del entries, known
    before = peak_rss_mb()
    start = time.perf_counter()
    book = read_ledger(root, storage)
    read = time.perf_counter()
    todo = remaining(plan, book.labeled(fp))
    diffed = time.perf_counter()
    images = pa.table({col.IMAGE_ID: todo[col.IMAGE_ID], col.STATUS: pa.repeat(pa.scalar("labeled"), todo.num_rows)})
    write_ledger(root, storage, book.with_run(images, fp, {"run_id": "r1", "fingerprint": fp}))
    done = time.perf_counter()
    return {"ledger_rows": n, "new_images": todo.num_rows, "read_seconds": round(read - start, 1),
            "diff_seconds": round(diffed - read, 1), "record_and_rewrite_seconds": round(done - diffed, 1),
            "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before,
            "ledger_mb": round(Path(root, "ledger.parquet").stat().st_size / 2**20, 1)}  # fmt: skip


if __name__ == "__main__":
    what, n = sys.argv[1], int(sys.argv[2])
    work = Path(tempfile.mkdtemp(prefix="samlabel-scale-inputs-"))
    try:
        result = {"manifest": manifest, "s3-listing": s3_listing, "ledger": ledger}[what](n, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"what": what, **result}))
