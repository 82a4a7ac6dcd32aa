"""A lock with expiry in the output root (``_lock.json``), so that two overlapping nightly runs never work at once.

The lock object holds ``{owner, token, acquired_at, expires_at}``. Taking it is one conditional create
(:func:`pipeline.io.conditional.create_if_absent`); a lock past ``expires_at`` may be taken over by a conditional
replace of exactly the version that was read, so of two runs racing for a stale lock one wins. While held, a
heartbeat thread extends ``expires_at`` every ``ttl / 3`` with the same compare-and-swap; if that fails (the run
stalled for longer than the TTL and another run took over), the lock is marked lost and :meth:`OutputLock.check`
raises, which the night calls before every write that must be exclusive.

Guarantee, honestly: mutual exclusion holds while holders renew within the TTL and clocks agree to well under it
(expiry compares the writer's wall clock with the reader's). A lock whose holder ran on the same machine and whose
process no longer exists (a killed driver) is stale at once, so an immediate rerun resumes. A holder frozen for
longer than the TTL loses the lock and finds out at its next check; between that check and its next write there is
a window, which the night keeps small (checks right before the view, pointer and ledger writes) and closes for the
ledger itself, which is written with a compare-and-swap.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from pipeline.config.sections import StorageConfig
from pipeline.io import conditional as cas
from pipeline.io import storage as st

LOCK_NAME = "_lock.json"
log = logging.getLogger(__name__)


class LockHeldError(RuntimeError):
    """Another run holds an unexpired lock on the output root."""


class LockLostError(RuntimeError):
    """This run's lock expired and was taken over, or was removed; it must not write shared state."""


@dataclass(frozen=True)
class LockInfo:
    owner: str
    token: str
    acquired_at: float
    expires_at: float

    @staticmethod
    def parse(data: bytes) -> LockInfo | None:
        try:
            raw = json.loads(data)
            return LockInfo(str(raw["owner"]), str(raw["token"]), float(raw["acquired_at"]), float(raw["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable lock is treated as stale

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()


class OutputLock:
    """``with OutputLock(root, storage, ttl_s):`` holds the lock, renews it in the background, releases it at exit."""

    def __init__(self, root_uri: str, storage: StorageConfig, ttl_s: float, owner: str | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError(f"lock TTL must be positive, got {ttl_s}")
        self.uri = st.join_uri(root_uri, LOCK_NAME)
        self.storage = storage
        self.ttl_s = ttl_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.token = uuid.uuid4().hex
        self._lost = threading.Event()
        self._renewing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Takes the lock (a fresh one or an expired one); LockHeldError naming the holder otherwise."""
        now = time.time()
        info = LockInfo(self.owner, self.token, now, now + self.ttl_s)
        if cas.create_if_absent(self.uri, info.to_bytes(), self.storage) or self._is_mine():
            return
        current = cas.read_versioned(self.uri, self.storage)
        if current is None:  # released between our two calls: try once more
            if cas.create_if_absent(self.uri, info.to_bytes(), self.storage) or self._is_mine():
                return
            raise LockHeldError(f"{self.uri}: another run took the lock just now")
        held = LockInfo.parse(current.data)
        if held is not None and held.expires_at > now and not _holder_died(held.owner):
            raise LockHeldError(
                f"{self.uri} is held by {held.owner} until {_utc(held.expires_at)} "
                f"(another run is working on this output root)"
            )
        taken = cas.replace_if_version(self.uri, info.to_bytes(), current.version, self.storage)
        if not taken and not self._is_mine():
            raise LockHeldError(f"{self.uri}: another run took over the expired lock first")

    def renew(self) -> None:
        """Extends the expiry; LockLostError if the lock is no longer this run's."""
        # The heartbeat and check() both renew: one at a time, or each would see the other's write as a takeover.
        with self._renewing:
            self._renew()

    def _renew(self) -> None:
        current = cas.read_versioned(self.uri, self.storage)
        held = LockInfo.parse(current.data) if current else None
        if current is None or held is None or held.token != self.token:
            self._lost.set()
            raise LockLostError(f"{self.uri}: this run's lock was taken over or removed")
        now = time.time()
        info = LockInfo(self.owner, self.token, held.acquired_at, now + self.ttl_s)
        if not cas.replace_if_version(self.uri, info.to_bytes(), current.version, self.storage):
            self._lost.set()
            raise LockLostError(f"{self.uri}: this run's lock was taken over while renewing it")

    def check(self) -> None:
        """Raises LockLostError unless this run still holds the lock (reads the lock object)."""
        if self._lost.is_set():
            raise LockLostError(f"{self.uri}: this run's lock expired and was taken over")
        self.renew()

    def release(self) -> None:
        """Deletes the lock if it is still this run's (a taken-over lock is left to its new holder).

        Best effort: if the store refuses (an outage, no conditional delete), the lock simply expires after the TTL,
        and the run's own outcome is not turned into a failure.
        """
        try:
            current = cas.read_versioned(self.uri, self.storage)
            held = LockInfo.parse(current.data) if current else None
            if current is not None and held is not None and held.token == self.token:
                cas.delete_if_version(self.uri, current.version, self.storage)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("could not release %s (%s); it expires at its TTL", self.uri, type(exc).__name__)

    def __enter__(self) -> OutputLock:
        self.acquire()
        self._thread = threading.Thread(target=self._heartbeat, name="samlabel-lock", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.release()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew()
            except LockLostError:
                return
            except Exception:  # a storage hiccup: try again at the next beat; expiry is ttl away
                continue

    def _is_mine(self) -> bool:
        """Whether the stored lock carries our token (a create whose response was lost, then retried, did succeed)."""
        current = cas.read_versioned(self.uri, self.storage)
        held = LockInfo.parse(current.data) if current else None
        return held is not None and held.token == self.token


def _holder_died(owner: str) -> bool:
    """True when the holder ran on this machine and its process is gone (a killed driver): no need to wait."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
