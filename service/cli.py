"""The ``heldout`` command: serve, keys create/list/revoke, migrate.

Heavy imports happen inside commands: ``serve`` must point prometheus-client at its multiprocess
folder before anything imports it.
"""

import argparse
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError
from pydantic_settings import SettingsError

from service.settings import Settings, describe_errors, settings_help

if TYPE_CHECKING:
    from service.db.session import Database


class ConfigError(Exception):
    """Settings that cannot work: reported as one line per variable, not a traceback."""


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError("\n".join(describe_errors(exc))) from None
    except SettingsError as exc:  # a value that is not even JSON, before validation
        named = re.sub(r'field "(\w+)"', lambda m: f"HELDOUT_{m[1].upper()}", str(exc))
        raise ConfigError(f"{named}: {exc.__cause__}" if exc.__cause__ else named) from None


def _open_database(settings: Settings) -> "Database":
    from service.db.migrate import migrate
    from service.db.session import Database

    db = Database(settings.resolved_database_url)
    migrate(db, settings.data_dir)
    return db


def cmd_serve(args: argparse.Namespace) -> int:
    if args.model:
        os.environ["HELDOUT_MODEL_PATH"] = str(args.model)
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    from monitors.multiproc import prepare_multiprocess_dir

    prepare_multiprocess_dir(settings.prometheus_dir)

    from service.inference.demo import served_model_path
    from service.inference.model_dir import ModelLoadError

    try:
        model_path = served_model_path(settings)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if model_path is not None:
        os.environ["HELDOUT_MODEL_PATH"] = str(model_path)

    from service.auth import parse_env_keys
    from service.key_admin import first_admin_key

    try:
        env_keys = parse_env_keys(settings.api_keys)
    except ValueError as exc:
        print(f"error: HELDOUT_API_KEYS: {exc}", file=sys.stderr)
        return 2
    db = _open_database(settings)
    key = None if env_keys else first_admin_key(db)
    if key is not None:
        print(f"No API key existed, so an admin key was created. It is shown only this once:\n  {key}", flush=True)
    db.dispose()

    import uvicorn

    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
    )
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from service.auth import create_key, parse_role

    try:
        role = parse_role(args.role)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    db = _open_database(_settings())
    print(create_key(db, role))
    db.dispose()
    return 0


def _when(moment: datetime | None) -> str:
    """UTC to the second; SQLite hands back naive UTC, PostgreSQL the session's zone."""
    if moment is None:
        return "-"
    return (moment.astimezone(UTC) if moment.tzinfo else moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_keys_list(_: argparse.Namespace) -> int:
    from service.key_admin import list_keys

    db = _open_database(_settings())
    rows = list_keys(db)
    db.dispose()
    print(f"{'id':>6}  {'role':<9}  {'created':<20}  {'hash':<12}  {'last used':<20}  revoked")
    for row in rows:
        print(
            f"{row.id:>6}  {row.role:<9}  {_when(row.created_at):<20}  {row.hash_prefix:<12}  "
            f"{_when(row.last_used_at):<20}  {_when(row.revoked_at)}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from service.auth import KeyStore
    from service.key_admin import active_admin_keys, revoke_key

    db = _open_database(_settings())
    revoked = revoke_key(db, args.id)
    admins = active_admin_keys(db)
    db.dispose()
    if revoked is None:
        print(f"error: no key with id {args.id} (heldout keys list shows them)", file=sys.stderr)
        return 1
    print(
        f"key {revoked.id} ({revoked.role}, {revoked.hash_prefix}) revoked at {_when(revoked.revoked_at)}; "
        f"every replica refuses it within {KeyStore.REFRESH_SECONDS:g} s"
    )
    if admins == 0:
        print("warning: no unrevoked admin key is left: heldout keys create --role admin", file=sys.stderr)
    return 0


def cmd_migrate(_: argparse.Namespace) -> int:
    _open_database(_settings()).dispose()
    print("database is at the latest schema")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heldout", description="Evaluation and model-monitoring service.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="start the HTTP service",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (metrics are aggregated)")
    serve.add_argument("--model", help="save_pretrained directory to serve (sets HELDOUT_MODEL_PATH)")
    serve.set_defaults(func=cmd_serve)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key, store its hash and print it once")
    create.add_argument("--role", required=True, help="admin, evaluator or reader")
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", help="list stored keys: id, role, dates and hash prefix (never the key)")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a stored key; every replica refuses it within seconds")
    revoke.add_argument("id", type=int, help="the key's id, from heldout keys list")
    revoke.set_defaults(func=cmd_keys_revoke)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: invalid settings, so heldout will not start:\n{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
