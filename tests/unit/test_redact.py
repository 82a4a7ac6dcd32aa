"""Secrets are redacted from every text we emit: URL passwords, pre-signed URL credentials, secret env values."""

from __future__ import annotations

import logging

from pipeline.redact import RedactingFilter, redact, redact_data


def test_url_passwords_and_presigned_credentials_are_hidden(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    text = (
        "cannot reach http://minio:s3cr3t-pw@10.0.0.5:9000/bucket (key wJalrXUtnFEMI/K7MDENG) "
        "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F20240101&X-Amz-Signature=abcdef0123&x=1"
    )
    out = redact(text)
    for secret in ("s3cr3t-pw", "wJalrXUtnFEMI/K7MDENG", "AKIA%2F20240101", "abcdef0123"):
        assert secret not in out
    assert "http://minio:***@10.0.0.5:9000/bucket" in out and "&x=1" in out


def test_nested_data_is_redacted_and_other_values_kept():
    data = {"storage": {"s3_endpoint_url": "http://u:p4ss@host:9000", "max_attempts": 10}, "list": ["s3://b/k"]}
    assert redact_data(data) == {
        "storage": {"s3_endpoint_url": "http://u:***@host:9000", "max_attempts": 10},
        "list": ["s3://b/k"],
    }


def test_log_records_and_their_tracebacks_are_redacted(caplog):
    logger = logging.getLogger("samlabel.test-redact")
    caplog.handler.addFilter(RedactingFilter())
    try:
        raise OSError("connect to http://user:hunter22@host failed")
    except OSError:
        logger.exception("endpoint %s", "http://user:hunter22@host")
    assert "hunter22" not in caplog.text and "http://user:***@host" in caplog.text
