#!/usr/bin/env sh
# One nightly labeling run, for cron or any scheduler that runs a command and reads its exit status.
#
#   SAMLABEL_INPUT        images to label (folder, s3:// prefix or manifest)            required
#   SAMLABEL_OUTPUT_ROOT  nightly output root (runs/, view/, latest.json, ledger)       required
#   SAMLABEL_ARGS         more flags for jobs.nightly (--model, --weights, --set ...)   optional
#   SAMLABEL_PYTHON       the Python of the samlabel install (default: .venv/bin/python, else python3)
#   SAMLABEL_SUBMIT=1     go through `ray job submit` (RAY_ADDRESS = the dashboard, e.g. http://head:8265)
#                         instead of running the driver here (RAY_ADDRESS = the cluster, or a local Ray)
#   RAY_AUTH_TOKEN        the cluster's token, when it has token authentication (the default of `ray start --head`
#                         since Ray 2.52) and ~/.ray/auth_token here does not hold it; RAY_AUTH_MODE=token is then
#                         set for the Ray client, unless RAY_AUTH_MODE is set already
#
# Exit status (driver here): 0 complete or nothing new, 1 failed after work started (the next run resumes it),
# 2 bad configuration or input (fix it; nothing was labeled), 3 another run holds the output root's lock.
# `ray job submit` reports only 0/1; the JSON summary (last line of the log, and --summary-json) keeps the exact
# status and exit code.
set -eu
cd "$(dirname "$0")/.."
: "${SAMLABEL_INPUT:?set SAMLABEL_INPUT}" "${SAMLABEL_OUTPUT_ROOT:?set SAMLABEL_OUTPUT_ROOT}"
PYTHON="${SAMLABEL_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
# SAMLABEL_ARGS is split on spaces on purpose: it holds several flags.
# shellcheck disable=SC2086
set -- --input "$SAMLABEL_INPUT" --output-root "$SAMLABEL_OUTPUT_ROOT" ${SAMLABEL_ARGS:-}
# A token here (variable, file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token) means the cluster wants it: the Ray
# client sends it only with RAY_AUTH_MODE=token, which a cluster without authentication accepts too.
if [ -z "${RAY_AUTH_MODE:-}" ] && { [ -n "${RAY_AUTH_TOKEN:-}" ] || [ -n "${RAY_AUTH_TOKEN_PATH:-}" ] ||
    [ -f "${HOME:-/nonexistent}/.ray/auth_token" ]; }; then
    export RAY_AUTH_MODE=token
fi
if [ "${SAMLABEL_SUBMIT:-0}" = 1 ]; then
    # `ray job submit` exits 0/1 only: take the job's own exit code from its JSON summary, its last line.
    LOG="$(mktemp)"
    RAY="$(dirname "$PYTHON")/ray"
    [ -x "$RAY" ] || RAY=ray
    "$RAY" job submit --working-dir . \
        --submission-id "samlabel-nightly-$(date -u +%Y%m%dT%H%M%SZ)" -- python -m jobs.nightly "$@" | tee "$LOG" || true
    CODE="$(grep '^{"' "$LOG" | tail -n 1 | sed -n 's/.*"exit_code": \([0-9]*\).*/\1/p')"
    rm -f "$LOG"
    exit "${CODE:-1}"
fi
exec "$PYTHON" -m jobs.nightly "$@"
