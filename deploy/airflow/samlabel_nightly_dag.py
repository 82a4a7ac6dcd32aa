"""Airflow DAG: the samlabel nightly run, submitted to a running Ray cluster with ``ray job submit``.

Set the Airflow Variables ``samlabel_ray_dashboard`` (e.g. ``http://ray-head:8265``), ``samlabel_input`` and
``samlabel_output_root``, and for a cluster with token authentication (the default of ``ray start --head`` since Ray
2.52) ``samlabel_ray_auth_token`` (Airflow masks variables whose name holds "token"); the worker needs
``ray[default]`` and this repository at ``/opt/samlabel``. ``ray job
submit`` itself exits 0 or 1, so the command reads the job's JSON summary line (the last line it prints) and exits
with the job's own status: 0 complete or nothing new, 1 failed after work started (Airflow retries, which
resumes the night), 2 bad configuration or input, 3 another run holds the output root's lock (the task is
skipped). ``max_active_runs=1`` keeps Airflow from overlapping nights; the root's lock guards everything else.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

SUBMIT = r"""
set -o pipefail
# The Ray client sends the token only with RAY_AUTH_MODE=token (a cluster without authentication accepts it too).
if [ -n "${RAY_AUTH_TOKEN:-}" ]; then export RAY_AUTH_MODE=token; else unset RAY_AUTH_TOKEN; fi
LOG="$(mktemp)"
ray job submit --address "{{ var.value.samlabel_ray_dashboard }}" \
    --submission-id "samlabel-nightly-{{ ts_nodash }}-try{{ ti.try_number }}" \
    --working-dir /opt/samlabel -- \
    python -m jobs.nightly --input "{{ var.value.samlabel_input }}" \
    --output-root "{{ var.value.samlabel_output_root }}" \
    --model efficientvit-sam-l0 --weights "{{ var.value.samlabel_output_root }}/weights/efficientvit_sam_l0.pt" \
    --summary-json "{{ var.value.samlabel_output_root }}/summaries/{{ ds }}.json" --set ray.progress=false \
    | tee "$LOG" || true
CODE="$(grep '^{"' "$LOG" | tail -n 1 | sed -n 's/.*"exit_code": \([0-9]*\).*/\1/p')"
rm -f "$LOG"
exit "${CODE:-1}"
"""

with DAG(
    dag_id="samlabel_nightly",
    schedule="30 1 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["samlabel", "ray"],
) as dag:
    BashOperator(
        task_id="label_new_images",
        bash_command=SUBMIT,
        env={"RAY_AUTH_TOKEN": "{{ var.value.get('samlabel_ray_auth_token', '') }}"},
        append_env=True,
        skip_on_exit_code=3,
        execution_timeout=timedelta(hours=6),
    )
