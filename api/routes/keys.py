"""API keys (admin): create one (its secret is shown once), list them, revoke one at once, cluster-wide."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.account_schemas import AccountName, KeyCreate, KeyCreated, KeyList, KeyView, responses
from api.auth import Admin
from api.deps import ReadyEdge
from api.errors import not_found
from engine.accounts import valid_key_id

router = APIRouter(prefix="/api/keys", tags=["keys"])


@router.post(
    "",
    status_code=201,
    response_model=KeyCreated,
    responses=responses(400, 401, 403, 503),
    summary="Create a key for an account; the secret is in this answer only",
)
async def create_key(body: KeyCreate, here: ReadyEdge, who: Admin) -> JSONResponse:
    record, plaintext = await here.guard.create_key(body.account, frozenset(body.scopes), who.key_id)
    created = {
        "keyId": record.key_id,
        "key": plaintext,
        "account": record.account,
        "scopes": sorted(s.value for s in record.scopes),
        "createdAt": round(record.created_at),
    }
    return JSONResponse(created, status_code=201, headers={"Cache-Control": "no-store"})


@router.get("", response_model=KeyList, responses=responses(400, 401, 403, 503), summary="List keys (never their secrets)")
async def list_keys(
    here: ReadyEdge,
    who: Admin,
    account: Annotated[AccountName | None, Query(description="Only this account's keys")] = None,
) -> JSONResponse:
    return JSONResponse({"keys": [key.public() for key in await here.guard.keys.list(account)]})


@router.delete(
    "/{key_id}", response_model=KeyView, responses=responses(401, 403, 404, 503), summary="Revoke a key at once, on every replica"
)
async def revoke_key(key_id: str, here: ReadyEdge, who: Admin) -> JSONResponse:
    revoked = await here.guard.revoke_key(key_id, who.key_id) if valid_key_id(key_id) else None
    if revoked is None:
        return not_found("key")
    return JSONResponse(revoked.public())
