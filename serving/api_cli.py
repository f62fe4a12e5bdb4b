"""``salesml serve`` and ``salesml keys``, registered through the ``salesml.commands`` entry
point."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from salesml.cli import console, err, handle_errors, print_json, shown
from salesml.settings import Settings

if TYPE_CHECKING:
    import uvicorn

keys_app = typer.Typer(
    help="API keys: add (printed once), list, revoke.", no_args_is_help=True, add_completion=False
)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``keys`` to the salesml CLI."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")


@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (each loads the model and data).")
    ] = 1,
    alias: Annotated[
        str | None, typer.Option(help="Registry alias to serve (default: champion).")
    ] = None,
    poll_seconds: Annotated[
        float | None,
        typer.Option(help="Seconds between registry / score-run checks (default: 30)."),
    ] = None,
) -> None:
    """Serve the scoring API (FastAPI on uvicorn); see docs/api.md."""
    import uvicorn  # imported here: other salesml commands need none of the server

    from serving.api.factory import AppFactory
    from serving.api.settings import ApiSettings

    Settings()  # fail early, with a one-line reason, on bad settings
    given: dict[str, Any] = {"alias": alias, "poll_seconds": poll_seconds}
    settings = ApiSettings(**{k: v for k, v in given.items() if v is not None})
    config = uvicorn.Config(
        AppFactory(settings),
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=_http_protocol(),
        loop="auto",  # uvloop (a dependency) when the platform has it
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    run_server(config)


def run_server(config: uvicorn.Config) -> None:
    """``uvicorn.run`` for an app factory object: one server, or ``config.workers`` processes
    sharing one socket (each builds its app from the same settings)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    if config.workers == 1 and not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE


def _http_protocol() -> str:
    """httptools, writing each response in one send (serving.api.server), when installed."""
    try:
        import serving.api.server  # noqa: F401  (needs httptools)
    except ImportError:
        return "auto"
    return "serving.api.server:HttpProtocol"


def _warehouse_teams(settings: Settings) -> list[str] | None:
    """The deals' teams in the workspace's warehouse (None when there is none to read)."""
    from salesml.warehouse import connect

    if not settings.warehouse_path.exists():
        return None
    try:
        con = connect(settings.warehouse_path, read_only=True)
    except Exception:  # held by a writer: nothing to compare with, no warning
        return None
    try:
        rows = con.execute("SELECT DISTINCT team FROM deals WHERE team IS NOT NULL").fetchall()
    finally:
        con.close()
    return sorted(str(r[0]) for r in rows)


@keys_app.command("add")
@handle_errors
def keys_add(
    name: Annotated[str, typer.Argument(help="Who the key is for (e.g. crm-plugin).")],
    scopes: Annotated[
        list[str],
        typer.Option(
            "--scopes",
            help="scores:read, scores:write, forecast:read, admin (repeat or comma-separate).",
        ),
    ],
    team: Annotated[
        str | None, typer.Option(help="Bind the key to one team: other teams' data is hidden.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (key last).")] = False,
) -> None:
    """Create an API key. The key is printed once, on the last line; only its hash is stored."""
    from serving.keys import KeyStore

    settings = Settings()
    key, secret = KeyStore.for_home(settings.home).add(name, scopes, team)
    teams = _warehouse_teams(settings)
    if team is not None and teams is not None and team not in teams:
        err.print(
            "[yellow]warning:[/] "
            + shown(
                f"the warehouse has no deals of team {team!r} (teams: {', '.join(teams) or 'none'})"
                "; the key sees nothing until such deals are imported (teams match exactly)"
            ),
            highlight=False,
        )
    if as_json:
        print_json({**key.public(), "key": secret})
        return
    scope_text = ", ".join(key.scopes)
    team_text = f", team {key.team}" if key.team else ", all teams"
    console.print(
        f"created key {key.key_id} for {key.name} ({scope_text}{team_text}); "
        "store it now, it is not shown again:",
        highlight=False,
    )
    print(secret)


@keys_app.command("list")
@handle_errors
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List API keys (never the keys themselves)."""
    from rich.table import Table

    from serving.keys import KeyStore

    keys = list(KeyStore.for_home(Settings().home).load().values())
    if as_json:
        print_json([k.public() for k in keys])
        return
    table = Table(title="API keys")
    # the id is what `keys revoke` takes: always whole, whatever the terminal's width
    table.add_column("id", no_wrap=True, min_width=max((len(k.key_id) for k in keys), default=2))
    for column in ("name", "scopes", "team", "created", "revoked"):
        table.add_column(column, overflow="fold")
    for k in keys:
        table.add_row(
            k.key_id,
            k.name,
            ", ".join(k.scopes),
            k.team or "(all)",
            k.created_at,
            k.revoked_at or "",
        )
    console.print(table)


@keys_app.command("revoke")
@handle_errors
def keys_revoke(
    key: Annotated[str, typer.Argument(help="Key id (or name: revokes every key of that name).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Revoke an API key; a running server refuses it from its next request."""
    from serving.keys import KeyStore

    revoked = KeyStore.for_home(Settings().home).revoke(key)
    if as_json:
        print_json([k.public() for k in revoked])
        return
    for k in revoked:
        console.print(f"revoked key {k.key_id} ({k.name})", highlight=False)
