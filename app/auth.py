"""API keys: generation, hashing, and resolving a bearer token to its tenant (with a short-lived cache)."""

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Unauthorized
from app.orm import ApiKey, Tenant

KEY_PREFIX = "gnt_"


def hash_key(key: str) -> str:
    """SHA-256 of a key; keys are high-entropy so a plain hash is sufficient."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, tenant_name: str) -> str:
    """Create the tenant if needed and a new key for it; returns the key (shown once)."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        tenant = Tenant(name=tenant_name)
        session.add(tenant)
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:10]))
    session.flush()
    return key


@dataclass(frozen=True)
class Caller:
    """The tenant an API key belongs to."""

    tenant_id: str
    tenant_name: str


def bearer_key_hash(authorization: str | None) -> str:
    """The hash of the key in an `Authorization: Bearer <key>` header; 401 for a missing or other header."""
    if not authorization:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <api key>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <api key>'")
    return hash_key(token.strip())


def caller_for_key_hash(session: Session, key_hash: str) -> Caller:
    """The tenant of a key that exists and is not revoked (one query); 401 otherwise."""
    row = session.execute(
        select(ApiKey.tenant_id, Tenant.name)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).first()
    if row is None:
        raise Unauthorized("unknown or revoked API key")
    return Caller(tenant_id=row[0], tenant_name=row[1])


def tenant_for_authorization(session: Session, authorization: str | None) -> str:
    """The tenant id for an `Authorization: Bearer <key>` header, read from the database; 401 otherwise."""
    return caller_for_key_hash(session, bearer_key_hash(authorization)).tenant_id


class KeyCache:
    """Keys resolved in the last `ttl_s` seconds and their tenant, so most requests skip the key query.

    Only keys that were found valid are kept (an unknown or revoked key is looked up every time), and
    each for at most `ttl_s` seconds from the moment its lookup began: a key revoked in the database
    (`gauntlet keys revoke`, from any process) is refused by every API process at most `ttl_s` seconds
    later. `ttl_s` 0 turns the cache off. The table is bounded: when full, expired entries go, then all.
    """

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Caller | None:
        """The cached caller of a key hash, or None when it is not cached or has expired."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            with self._lock:
                self._entries.pop(key_hash, None)
            return None
        return entry[1]

    def resolve(self, session: Session, key_hash: str) -> Caller:
        """Look a key hash up in the database (401 when unknown or revoked) and cache what was found."""
        started = time.monotonic()  # the bound counts from before the query saw the key
        caller = caller_for_key_hash(session, key_hash)
        if self.ttl_s > 0:
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    now = time.monotonic()
                    self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                    if len(self._entries) >= self.max_entries:
                        self._entries.clear()
                self._entries[key_hash] = (started + self.ttl_s, caller)
        return caller
