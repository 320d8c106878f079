"""``python -m runtime keys``: create, list and revoke API keys from the command line, straight in the
engine's PostgreSQL (``OEE_DATABASE_URL``, or the local/embedded one the engine would use). It makes the
first keys of a new deployment, before anyone holds an admin key but the operator.

    python -m runtime keys create alice --scope trade      # prints the key once; store it now
    python -m runtime keys list [--account alice]
    python -m runtime keys revoke <keyId>

A revocation is also announced on Redis when ``OEE_REDIS_URL`` is set (running replicas drop the key
at once); without it, replicas stop trusting their cached copy within ``OEE_KEY_CACHE_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from engine.accounts import Scope, new_key, valid_account, valid_key_id
from engine.adapters.accounts_store import KeyStore
from engine.adapters.postgres import create_pool, prepare_database
from engine.settings import Settings, get_settings, reveal

CLI_ACTOR = "cli"
"""Who the audit columns name for keys made or revoked here."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m runtime keys", description="Manage the engine's API keys")
    commands = top.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key for an account (the secret is printed once)")
    create.add_argument("account")
    create.add_argument("--scope", action="append", choices=[s.value for s in Scope], help="read, trade or admin (repeatable)")
    listing = commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--account")
    revoke = commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    return top


def database_url(settings: Settings) -> str:
    configured = reveal(settings.database_url)
    if configured:
        return configured
    from runtime.embedded import resolve_dependencies  # the same PostgreSQL the engine resolves

    deps = resolve_dependencies(settings)
    return deps.database_url


async def run(args: argparse.Namespace, settings: Settings) -> int:
    dsn = database_url(settings)
    await prepare_database(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    keys = KeyStore(pool)
    try:
        if args.command == "create":
            if not valid_account(args.account):
                print("an account is 1-64 of a-z 0-9 _ . -, starting with a letter or digit", file=sys.stderr)
                return 2
            record, plaintext = new_key(args.account, frozenset(Scope(s) for s in (args.scope or ["trade"])), time.time() * 1000, CLI_ACTOR)
            await keys.create(record)
            print(json.dumps({**record.public(), "key": plaintext}))
            print("the key is shown only now: store it", file=sys.stderr)
        elif args.command == "list":
            for key in await keys.list(args.account):
                print(json.dumps(key.public()))
        else:
            if not valid_key_id(args.key_id) or (revoked := await keys.revoke(args.key_id, CLI_ACTOR)) is None:
                print(f"no key {args.key_id}", file=sys.stderr)
                return 1
            await announce(settings, args.key_id)
            print(json.dumps(revoked.public()))
    finally:
        await pool.close()
    return 0


async def announce(settings: Settings, key_id: str) -> None:
    """Tell running replicas (and the admission script) at once, if Redis is configured."""
    url = reveal(settings.redis_url)
    if not url:
        return
    import redis.asyncio as aioredis

    from engine.adapters.admission_store import AdmissionStore
    from engine.adapters.control import KEY_REVOKED, ControlChannel

    client = aioredis.Redis.from_url(url)
    try:
        await AdmissionStore(client, settings.redis_prefix).revoke(key_id)
        await ControlChannel(client, settings.redis_prefix).publish(KEY_REVOKED, key_id)
    finally:
        await client.aclose()


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return asyncio.run(run(args, get_settings()))
