"""Farm-wide commands that need the admin password: purge, passwd."""

from __future__ import annotations

import typer

from .client_commands import checked
from .main import Api, app, console, friendly

PASSWORD_OPTION = typer.Option(
    None,
    "--password",
    envvar="BLENDFARM_PASSWORD",
    help="The admin password (also BLENDFARM_PASSWORD; asked for when missing).",
)


def admin_password(given: str | None) -> str:
    return given or typer.prompt("Admin password", hide_input=True)


@app.command()
@friendly
def purge(
    ctx: typer.Context,
    password: str = PASSWORD_OPTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
) -> None:
    """Delete EVERYTHING on the server: every project, render, chunk and node."""
    api: Api = ctx.obj
    if not yes and not typer.confirm(
        "Purge the database? Every project, render and all progress is deleted.", default=False
    ):
        raise typer.Exit(1)
    secret = admin_password(password)
    checked(api.client.post("/api/purge", headers={"X-Blendfarm-Password": secret}))
    console.print("the server's database was purged")


@app.command()
@friendly
def passwd(
    ctx: typer.Context,
    password: str = PASSWORD_OPTION,
    new_password: str = typer.Option(
        None, "--new-password", help="The new password (asked for twice when missing)."
    ),
) -> None:
    """Change the admin password."""
    api: Api = ctx.obj
    secret = admin_password(password)
    new = new_password or typer.prompt(
        "New admin password", hide_input=True, confirmation_prompt=True
    )
    checked(
        api.client.post(
            "/api/password", headers={"X-Blendfarm-Password": secret}, json={"password": new}
        )
    )
    console.print("the admin password was changed")
