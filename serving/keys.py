"""API keys: created once, stored hashed, checked in constant time.

A key reads ``sml_<id>_<secret>``: the id finds the record, the secret is compared through its
SHA-256 (secrets are 256 random bits, so a plain digest is as strong as a slow hash and costs
microseconds per request). Keys live in ``$SALESML_HOME/keys.json`` (mode 0600, written to a
temporary file and renamed into place); the server re-reads the file when it changes, so a
revoked key stops working without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from salesml import jsonio
from salesml.errors import ConfigError

SCOPES = ("scores:read", "scores:write", "forecast:read", "events:write", "admin")
KEY_PREFIX = "sml"
KEYS_FILE = "keys.json"
_KEY = re.compile(r"^sml_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
_TEAM = re.compile(r"^[^\x00-\x1f]{1,128}$")


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never the secret itself)."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    team: str | None
    digest: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def public(self) -> dict[str, object]:
        """What ``keys list`` shows: everything but the digest."""
        out = asdict(self)
        out.pop("digest")
        out["scopes"] = list(self.scopes)
        return out


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class KeyStore:
    """The keys of a workspace, in one JSON file."""

    path: Path
    _cache: dict[str, ApiKey] = field(default_factory=dict, repr=False)
    _stamp: tuple[int, int] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def for_home(cls, home: Path) -> KeyStore:
        return cls(home / KEYS_FILE)

    # -- reading -----------------------------------------------------------------------------
    def load(self) -> dict[str, ApiKey]:
        """Every key by id, re-read only when the file changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            with self._lock:
                self._cache, self._stamp = {}, None
            return {}
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp == self._stamp:
                return self._cache
        doc = json.loads(self.path.read_text(encoding="utf-8"))
        keys = {}
        for item in doc.get("keys", []):
            key = ApiKey(
                key_id=item["key_id"],
                name=item["name"],
                scopes=tuple(item["scopes"]),
                team=item.get("team"),
                digest=item["digest"],
                created_at=item["created_at"],
                revoked_at=item.get("revoked_at"),
            )
            keys[key.key_id] = key
        with self._lock:
            self._cache, self._stamp = keys, stamp
        return keys

    def verify(self, presented: str) -> ApiKey | None:
        """The active key ``presented`` stands for, or ``None``."""
        match = _KEY.match(presented)
        if match is None:
            return None
        key = self.load().get(match.group(1))
        if key is None or not key.active:
            return None
        if not hmac.compare_digest(key.digest, _digest(match.group(2))):
            return None
        return key

    # -- writing -----------------------------------------------------------------------------
    def add(self, name: str, scopes: list[str], team: str | None = None) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the full key (shown once, never stored)."""
        if not _NAME.match(name):
            raise ConfigError(
                f"invalid key name {name!r}: 1-64 letters, digits, spaces or ._@- "
                "starting with a letter or digit"
            )
        wanted = sorted({s.strip() for scope in scopes for s in scope.split(",") if s.strip()})
        unknown = [s for s in wanted if s not in SCOPES]
        if unknown or not wanted:
            raise ConfigError(
                f"unknown scope(s) {', '.join(unknown) or '(none given)'}; "
                f"use one or more of {', '.join(SCOPES)}"
            )
        if team is not None and not _TEAM.match(team):
            raise ConfigError("--team must be 1-128 printable characters")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            key_id=key_id,
            name=name,
            scopes=tuple(wanted),
            team=team,
            digest=_digest(secret),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        keys = dict(self.load())
        keys[key_id] = key
        self._save(keys)
        return key, f"{KEY_PREFIX}_{key_id}_{secret}"

    def revoke(self, key_id_or_name: str) -> list[ApiKey]:
        """Revoke the key with this id (or every active key with this name)."""
        keys = dict(self.load())
        hits = [k for k in keys.values() if k.active and key_id_or_name in (k.key_id, k.name)]
        if not hits:
            raise ConfigError(f"no active key with id or name {key_id_or_name!r}; see: keys list")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for k in hits:
            keys[k.key_id] = ApiKey(**{**asdict(k), "scopes": k.scopes, "revoked_at": now})
        self._save(keys)
        return [keys[k.key_id] for k in hits]

    def _save(self, keys: dict[str, ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"keys": [{**asdict(k), "scopes": list(k.scopes)} for k in keys.values()]}
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(jsonio.dumps(doc, indent=2))
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp).chmod(0o600)
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._stamp = None
