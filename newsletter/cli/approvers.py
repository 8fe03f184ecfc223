"""`newsletter approvers`: approvers' passkeys (editorial/passkeys.py, docs/approval.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import Session

from newsletter.cli.output import out, print_json
from newsletter.cli.state import state
from newsletter.db import session_scope
from newsletter.delivery.signoff_mail import passkey_link_message
from newsletter.editorial import passkeys, signoff

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Approvers: their passkeys, so an approval proves who approved.",
)
Approver = Annotated[
    str, typer.Argument(metavar="APPROVER", help="One of [newsletter] approvers (or its address).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="approvers")


@app.command("list")
def list_command(ctx: typer.Context, *, as_json: AsJson = False) -> None:
    """Each approver and their passkeys (when made, when last used).

    Example: newsletter approvers list
    """
    st = state(ctx)
    config = st.config()
    with Session(st.engine()) as session:
        people = passkeys.listing(session, config)
    if as_json:
        print_json({"approval_proof": config.approval_proof, "approvers": people})
        return
    if not people:
        out.print('No approvers: set [newsletter] approvers = ["Name <address>"]')
    for person in people:
        keys = person["passkeys"]
        used = [k["last_used_at"] for k in keys if k["last_used_at"]]
        words = (
            f"{len(keys)} passkey(s)" + (f", last used {max(used)[:16]}" if used else "")
            if keys
            else "no passkey"
        )
        out.print(f"{person['approver']}: {words}")


@app.command("passkey")
def passkey_command(
    ctx: typer.Context,
    approver: Approver,
    *,
    print_link: Annotated[
        bool,
        typer.Option(
            "--print-link",
            help="Print the link (to hand over in person) instead of mailing it.",
        ),
    ] = False,
    who: Annotated[
        str | None, typer.Option("--as", metavar="WHO", help="Who is asking, for the record.")
    ] = None,
) -> None:
    """Mail an approver a one-time link (valid a day) to make a passkey on their phone or
    computer; their approval links then ask for it, and with [newsletter] approval_proof =
    "passkey" only such approvals count.

    Example: newsletter approvers passkey "Olha Koval <olha@example.org>"
    """
    st = state(ctx)
    config = st.config()
    key = st.key()
    by = signoff.identity(who, config)
    with session_scope(st.engine()) as session:
        row = passkeys.enrol(config, session, approver, by)
        url = passkeys.enrol_url(config, key, row)
        expires = row.expires_at
        address = row.approver
    if print_link:
        out.print(url)
        return
    message = passkey_link_message(config, address, url, expires)
    with st.transports()() as transport:
        transport.send(config.from_address.addr_spec, address, message)
    local = expires.astimezone(config.timezone)
    out.print(
        f"Mailed {address} a link to make their passkey; it works once, until "
        f"{local:%Y-%m-%d %H:%M %Z}.",
    )


@app.command("remove-passkeys")
def remove_command(ctx: typer.Context, approver: Approver) -> None:
    """Forget an approver's passkeys and unused passkey links (a lost or replaced phone).

    Example: newsletter approvers remove-passkeys olha@example.org
    """
    st = state(ctx)
    config = st.config()
    with session_scope(st.engine()) as session:
        removed = passkeys.remove(session, config, approver)
    out.print(f"Removed {removed} passkey(s) of {signoff.address_of(approver)}")
