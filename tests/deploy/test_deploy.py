"""The scheduling examples in deploy/: the manifests parse and name a valid jobs.nightly command, the Airflow DAG
compiles (the cron line's command is run in tests/e2e/test_scheduling.py)."""

from __future__ import annotations

import py_compile
import re
import shlex
from pathlib import Path

import yaml

from jobs.nightly import parse_args
from pipeline.labeling.cli import config_from_args
from pipeline.labeling.rules import validate_label_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?))*$")


def _check_entrypoint(entrypoint: str) -> None:
    words = shlex.split(entrypoint)
    assert words[:3] == ["python", "-m", "jobs.nightly"]
    args = parse_args(words[3:])
    assert args.input.startswith("s3://") and args.output.startswith("s3://") and args.summary_json
    validate_label_config(config_from_args(args))  # every flag and --set key exists and is valid


def _check_ray_cluster(spec: dict) -> None:
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] and spec["workerGroupSpecs"]
    assert spec["authOptions"] == {"mode": "token"}  # the submitter and the driver need the cluster's token
    for group in spec["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_rayjob_manifest():
    doc = yaml.safe_load((DEPLOY / "rayjob.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    _check_entrypoint(spec["entrypoint"])
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] >= 1
    assert yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"]
    _check_ray_cluster(spec["rayClusterSpec"])


def test_raycronjob_manifest_wraps_the_same_rayjob():
    doc = yaml.safe_load((DEPLOY / "raycronjob.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCronJob"
    spec = doc["spec"]
    fields = spec["schedule"].split()
    assert len(fields) == 5 and all(CRON_FIELD.match(f) for f in fields)
    assert spec["concurrencyPolicy"] == "Forbid"
    rayjob = yaml.safe_load((DEPLOY / "rayjob.yaml").read_text())["spec"]
    assert spec["jobTemplate"] == rayjob
    _check_entrypoint(spec["jobTemplate"]["entrypoint"])


def test_airflow_dag_compiles_and_submits_the_nightly_job(tmp_path):
    dag = DEPLOY / "airflow" / "samlabel_nightly_dag.py"
    py_compile.compile(str(dag), cfile=str(tmp_path / "dag.pyc"), doraise=True)
    source = dag.read_text()
    assert "ray job submit" in source and "python -m jobs.nightly" in source and "skip_on_exit_code=3" in source
    assert "export RAY_AUTH_MODE=token" in source and "samlabel_ray_auth_token" in source
