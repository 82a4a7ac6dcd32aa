"""Secrets never reach logs, error lines, ``run.json`` or summaries: every text we emit goes through ``redact``.

What is hidden: the password of ``scheme://user:password@host`` URLs (the user name stays, so a reader can tell which
account), AWS pre-signed URL credentials (``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``) and
the values of the secret environment variables below wherever they appear verbatim.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

MASK = "***"
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "HF_TOKEN")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")
_PRESIGNED = re.compile(r"(?P<key>X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+", re.IGNORECASE)
_MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words


def redact(text: str) -> str:
    """``text`` with URL passwords, pre-signed URL credentials and secret environment values replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _PRESIGNED.sub(lambda m: f"{m['key']}{MASK}", text)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name, "")
        if len(value) >= _MIN_SECRET_CHARS:
            text = text.replace(value, MASK)
    return text


def redact_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` (dicts, lists, strings) with every string redacted."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {key: redact_data(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(value) for value in data]
    return data


class RedactingFilter(logging.Filter):
    """A logging filter that formats each record's message once and redacts it (tracebacks included).

    With ``one_line_errors``, ERROR records keep only their first line and lose their traceback: for console
    handlers of libraries (Ray Data) whose file logs keep the details, so that a failed run ends in one clear line.
    """

    def __init__(self, one_line_errors: bool = False) -> None:
        super().__init__()
        self.one_line_errors = one_line_errors

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        record.args = None
        if self.one_line_errors and record.levelno >= logging.ERROR:
            record.msg = (message.strip().splitlines() or [""])[0]
            record.exc_info, record.exc_text = None, None
            return True
        record.msg = message
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_redaction(one_line_loggers: tuple[str, ...] = ("ray.data",)) -> None:
    """Adds :class:`RedactingFilter` to the root logger's handlers and, one-line, to the console handlers of
    ``one_line_loggers`` (call after ``logging.basicConfig`` and after importing those libraries)."""
    targets = [(h, False) for h in logging.getLogger().handlers]
    for name in one_line_loggers:
        handlers = logging.getLogger(name).handlers
        targets += [(h, True) for h in handlers if not isinstance(h, logging.FileHandler) and _is_console(h)]
    for handler, one_line in targets:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(one_line_errors=one_line))


def _is_console(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return stream is None or stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
