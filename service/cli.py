"""The ``heldout`` command: serve, keys create, migrate.

Heavy imports happen inside commands: ``serve`` must point prometheus-client at its multiprocess
folder before anything imports it.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from service.settings import Settings, settings_help

if TYPE_CHECKING:
    from service.db.session import Database


def _open_database(settings: Settings) -> "Database":
    from service.db.migrate import migrate
    from service.db.session import Database

    db = Database(settings.resolved_database_url)
    migrate(db, settings.data_dir)
    return db


def cmd_serve(args: argparse.Namespace) -> int:
    if args.model:
        os.environ["HELDOUT_MODEL_PATH"] = str(args.model)
    settings = Settings()
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

    from service.auth import KeyStore, Role, create_key, parse_env_keys

    db = _open_database(settings)
    if not KeyStore(db, parse_env_keys(settings.api_keys)).has_any():
        key = create_key(db, Role.admin)
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
    db = _open_database(Settings())
    print(create_key(db, role))
    db.dispose()
    return 0


def cmd_migrate(_: argparse.Namespace) -> int:
    _open_database(Settings()).dispose()
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

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
