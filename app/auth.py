"""API keys: generation, hashing, and resolving a bearer token to its tenant."""

import hashlib
import secrets

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


def tenant_for_authorization(session: Session, authorization: str | None) -> str:
    """The tenant id for an `Authorization: Bearer <key>` header; 401 otherwise."""
    if not authorization:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <api key>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <api key>'")
    row = session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(token.strip()), ApiKey.revoked_at.is_(None))
    )
    if row is None:
        raise Unauthorized("unknown or revoked API key")
    return row.tenant_id
