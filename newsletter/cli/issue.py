"""`newsletter issue ...`: create, edit, render, check and preview issue files."""

from __future__ import annotations

import webbrowser
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlmodel import Session

from newsletter.cli.output import err, out, plural, print_json, styled
from newsletter.cli.state import state
from newsletter.dates import parse_datetime
from newsletter.db import session_scope
from newsletter.delivery import signoff_mail
from newsletter.editorial import issue_file, signoff
from newsletter.editorial.approval import approve, approved, is_stale
from newsletter.editorial.checks import Finding, check_rendered, findings_report, has_errors
from newsletter.editorial.issue_file import IssueFile, issue_path, read_issue, write_issue
from newsletter.editorial.link_check import check_rendered_links
from newsletter.editorial.preview import screenshot, write_preview
from newsletter.editorial.render import build_folder, render_file, write_rendered
from newsletter.errors import DONE, FAILED, IssueFileError, NewsletterError, UsageError

app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Issue files: create, edit, render, check."
)

Slug = Annotated[str, typer.Argument(metavar="SLUG", help="The issue's slug or its file's path.")]
Url = Annotated[str, typer.Argument(help="An article's URL (any form of it).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
SendAt = Annotated[
    str | None,
    typer.Option("--send-at", metavar="TIME", help="When to send (ISO 8601; zone optional)."),
]
As = Annotated[
    str | None,
    typer.Option(
        "--as",
        metavar="WHO",
        help="Who is acting, for the issue's history [default: [newsletter] editor, else the "
        "system user].",
    ),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="issue")


@app.command("new")
def new(
    ctx: typer.Context,
    *,
    week: Annotated[
        str,
        typer.Option(
            help="An ISO week (2022-W51), or last (the last complete week), this, or -N "
            "(N weeks ago), in the newsletter's time zone.",
        ),
    ] = "last",
    author: Annotated[
        list[str] | None,
        typer.Option(
            "--author",
            metavar="NAME",
            help="This author's articles; repeat for several (an article by two of them "
            "appears once) [default: [newsletter] authors in newsletter.toml, else everyone's].",
        ),
    ] = None,
    newsletter: Annotated[
        str | None, typer.Option(help="The newsletter (must match the config's name).")
    ] = None,
    slug: Annotated[str | None, typer.Option(help="The file's name [default: the week].")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing issue file.")] = False,
    as_json: AsJson = False,
) -> None:
    """Write issues/<week>.md with the week's articles, ready for an introduction.

    Example: newsletter issue new --week 2022-W51 --author "Asami Terajima"
    Example: newsletter issue new    (last week, by the config's authors: for cron)
    """
    st = state(ctx)
    with Session(st.engine()) as session:
        issue = issue_file.new_issue(
            st.config(),
            session,
            week=week,
            authors=author or (),
            newsletter=newsletter,
            slug=slug,
            force=force,
        )
    if as_json:
        print_json({"slug": issue.slug, "path": str(issue.path), "articles": issue.article_urls()})
        return
    out.print(str(issue.path))
    err.print(
        f"{plural(len(issue.articles), 'article')}; write the introduction below the second '---'.",
    )


@app.command("list")
def list_command(ctx: typer.Context, *, as_json: AsJson = False) -> None:
    """List the issue files, newest first.

    Example: newsletter issue list --json
    """
    st = state(ctx)
    config = st.config()
    listing = issue_file.list_issues(config)
    # Files in name order, newest first, a broken one in its place as its error.
    entries: list[tuple[Path, IssueFile | IssueFileError]] = [
        (issue.path, issue) for issue in listing.issues
    ]
    entries += listing.broken.items()
    found = [item for _, item in sorted(entries, key=lambda e: str(e[0]), reverse=True)]
    with Session(st.engine()) as session:
        status = {
            row.slug: "edited since approval" if is_stale(config, row) else "approved"
            for row in approved(session, config.newsletter_id)
        }
    if as_json:
        print_json([_summary(item) | _status(item, status) for item in found])
        return
    if not found:
        err.print("No issue files yet: run 'newsletter issue new --week YYYY-Www'.")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("slug", "week", "articles", "status", "subject", "path"):
        table.add_column(column, overflow="fold")
    for item in found:
        if isinstance(item, IssueFile):
            table.add_row(
                item.slug,
                item.week or "",
                str(len(item.articles)),
                status.get(item.slug, "draft"),
                item.subject,
                str(item.path),
            )
        else:
            table.add_row(styled("error", "red"), "", "", "", str(item), "")
    out.print(table)


def _status(item: IssueFile | NewsletterError, status: dict[str, str]) -> dict[str, object]:
    if isinstance(item, IssueFile):
        return {"status": status.get(item.slug, "draft")}
    return {}


def _summary(item: IssueFile | NewsletterError) -> dict[str, object]:
    return item.summary() if isinstance(item, IssueFile) else {"error": str(item)}


@app.command("show")
def show(ctx: typer.Context, slug: Slug, *, as_json: AsJson = False) -> None:
    """Show an issue: subject, preheader and its articles in order.

    Example: newsletter issue show 2022-W51
    """
    st = state(ctx)
    issue = read_issue(issue_path(st.config(), slug))
    with Session(st.engine()) as session:
        rows = issue_file.issue_articles(issue, session)
        items = [
            {
                "position": n,
                "url": a.url,
                "title": a.title,
                "authors": a.author_names,
                "note": item.note,
                "section": item.section,
            }
            for n, (item, a) in enumerate(zip(issue.articles, rows, strict=True), 1)
        ]
    if as_json:
        print_json(
            _summary(issue)
            | {
                "preheader": issue.preheader,
                "author": issue.author,
                "intro": issue.intro,
                "items": items,
            }
        )
        return
    out.print(styled(issue.subject, "bold"), f" ({issue.path})")
    out.print(issue.preheader)
    for item in items:
        section = f"[{item['section']}] " if item["section"] else ""
        out.print(f"{item['position']:>2}. {section}{item['title']}")
        out.print(f"    {item['url']}")
        if item["note"]:
            out.print(f"    note: {item['note']}")
    if not issue.intro.strip():
        err.print("The introduction is still empty.")


@app.command("add")
def add(
    ctx: typer.Context,
    slug: Slug,
    url: Url,
    *,
    note: Annotated[str | None, typer.Option(help="The editor's note under the card.")] = None,
    section: Annotated[str | None, typer.Option(help="A section heading.")] = None,
    at: Annotated[
        int | None, typer.Option(metavar="N", help="Position, 1 = first [default: last].")
    ] = None,
) -> None:
    """Add a stored article to an issue, keeping the file's hand-written parts.

    Example: newsletter issue add 2022-W51 https://kyivindependent.com/story/ --at 1
    """
    st = state(ctx)
    issue = read_issue(issue_path(st.config(), slug))
    with Session(st.engine()) as session:
        article = issue_file.add_article(
            issue, session, url, note=note, section=section, position=at
        )
    write_issue(issue)
    out.print(f"Added {article.title} to {issue.path}")


@app.command("remove")
def remove(ctx: typer.Context, slug: Slug, url: Url) -> None:
    """Remove an article from an issue.

    Example: newsletter issue remove 2022-W51 https://kyivindependent.com/story/
    """
    issue = read_issue(issue_path(state(ctx).config(), slug))
    issue_file.remove_article(issue, url)
    write_issue(issue)
    out.print(f"Removed {url} from {issue.path}")


@app.command("move")
def move(
    ctx: typer.Context,
    slug: Slug,
    url: Url,
    *,
    to: Annotated[int, typer.Option(metavar="N", help="The new position, 1 = first.")],
) -> None:
    """Move an article to another position.

    Example: newsletter issue move 2022-W51 https://kyivindependent.com/story/ --to 1
    """
    issue = read_issue(issue_path(state(ctx).config(), slug))
    issue_file.move_article(issue, url, to)
    write_issue(issue)
    out.print(f"Moved {url} to position {to} in {issue.path}")


@app.command("render")
def render(
    ctx: typer.Context,
    slug: Slug,
    *,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", metavar="FOLDER", help="Folder [default: build/<slug>/]."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Render email.html, email.txt and web.html, then check them (errors exit 1).

    Example: newsletter issue render 2022-W51 --out /tmp/w51
    """
    st = state(ctx)
    config = st.config()
    with Session(st.engine()) as session:
        issue, rendered = render_file(config, session, slug)
    written = write_rendered(rendered, out_dir or build_folder(config, rendered.slug))
    findings = check_rendered(config, issue, rendered)
    if as_json:
        print_json(
            findings_report(rendered.slug, findings)
            | {"folder": str(written.folder), "files": written.files}
        )
    else:
        for name, size in written.files.items():
            out.print(f"{written.folder / name}  {size / 1024:.1f} KB")
        _print_findings(findings)
    raise typer.Exit(FAILED if has_errors(findings) else DONE)


@app.command("check")
def check(
    ctx: typer.Context,
    slug: Slug,
    *,
    links: Annotated[
        bool,
        typer.Option(
            "--links",
            help="Also fetch every link and image (broken, redirected elsewhere, oversized).",
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Check an issue as subscribers would get it: size, doctype, lang, alt text, links,
    unsubscribe, scripts, remote CSS, the text part. Errors exit 1; warnings are printed.
    With --links, every link and image is fetched too (offline, it says it could not).

    Example: newsletter issue check 2022-W51 --links
    """
    st = state(ctx)
    config = st.config()
    with Session(st.engine()) as session:
        issue, rendered = render_file(config, session, slug)
    findings = check_rendered(config, issue, rendered)
    if links:
        findings += check_rendered_links(config, rendered)
    if as_json:
        print_json(findings_report(rendered.slug, findings))
    else:
        _print_findings(findings)
        if not has_errors(findings):
            out.print(f"{rendered.slug}: ready to send")
    raise typer.Exit(FAILED if has_errors(findings) else DONE)


def _print_findings(findings: list[Finding]) -> None:
    for finding in findings:
        err.print(f"{finding.level}: {finding.message}")


@app.command("preview")
def preview(
    ctx: typer.Context,
    slug: Slug,
    *,
    open_browser: Annotated[bool, typer.Option("--open", help="Open it in your browser.")] = False,
    screenshot_file: Annotated[
        Path | None,
        typer.Option("--screenshot", metavar="FILE", help="Also save a PNG (headless Chromium)."),
    ] = None,
    width: Annotated[int, typer.Option(metavar="PX", help="Screenshot width in pixels.")] = 600,
) -> None:
    """Write build/<slug>/preview.html as a sample subscriber sees it; optionally screenshot it.

    Example: newsletter issue preview 2022-W51 --screenshot phone.png --width 375
    """
    st = state(ctx)
    config = st.config()
    with Session(st.engine()) as session:
        _, rendered = render_file(config, session, slug)
    page = write_preview(config, rendered, build_folder(config, rendered.slug))
    out.print(str(page))
    if screenshot_file is not None:
        shot = screenshot(page, screenshot_file, width)
        out.print(str(shot.path))
        if shot.placeholders:
            err.print(
                f"{plural(shot.placeholders, 'image')} could not be fetched (offline, or not "
                "published yet): drawn as grey placeholders of the same size",
            )
    if open_browser:
        webbrowser.open(page.resolve().as_uri())


@app.command("approve")
def approve_command(
    ctx: typer.Context,
    slug: Slug,
    *,
    send_at: SendAt = None,
    who: As = None,
    as_json: AsJson = False,
) -> None:
    """Freeze the rendered issue (subject, HTML, text, hash) for sending and the archive.
    Refused while a check fails; editing the file afterwards needs a new approval. Recorded
    in the issue's history with who ran it.

    Example: newsletter issue approve 2022-W51 --send-at 2022-12-26T08:00
    """
    st = state(ctx)
    config = st.config()
    when = _when(send_at, config.timezone)
    by = signoff.identity(who, config)
    with session_scope(st.engine()) as session:
        result = approve(config, session, slug, send_at=when, by=by)
        signoff.record_cli(session, config, result.issue, by)
    row = result.issue
    if as_json:
        print_json(result.as_dict())
        return
    _print_findings(result.findings)
    again = " again" if result.replaced else ""
    when_text = (
        f", to be sent {row.send_at.astimezone(config.timezone):%Y-%m-%d %H:%M %Z}"
        if row.send_at
        else ""
    )
    out.print(f"Approved {row.slug}{again} ({row.content_hash[:12]}){when_text}")
    if config.require_approval:
        err.print(
            "[newsletter] require_approval: send also needs an approver's sign-off by link "
            f"('newsletter issue request-approval {row.slug}')",
        )


def _when(send_at: str | None, zone: tzinfo) -> datetime | None:
    if not send_at:
        return None
    when = parse_datetime(send_at, zone)
    if when is None:
        raise UsageError(f"bad --send-at {send_at!r}: use ISO 8601, e.g. 2022-12-26T08:00")
    return when


@app.command("request-approval")
def request_approval(
    ctx: typer.Context,
    slug: Slug,
    *,
    send_at: SendAt = None,
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to",
            metavar="APPROVER",
            help="Ask this approver only (one of [newsletter] approvers); repeat for several.",
        ),
    ] = None,
    who: As = None,
    as_json: AsJson = False,
) -> None:
    """Mail each approver a test copy with a link to approve it (or ask for changes) from a
    phone; the link works for [newsletter] approval_hours, once, and only while the issue
    renders exactly as it does now (docs/approval.md).

    Example: newsletter issue request-approval 2022-W51 --send-at 2022-12-26T08:00
    """
    st = state(ctx)
    config = st.config()
    when = _when(send_at, config.timezone)
    by = signoff.identity(who, config)
    asked = signoff_mail.request_approval(
        config, st.engine(), st.key(), st.transports(), slug, requested_by=by, send_at=when, to=to
    )
    if as_json:
        print_json(asked.as_dict())
        return
    out.print(
        f"Asked {plural(asked.mailed, 'approver')} to approve {asked.slug} "
        f"({asked.content_hash[:12]}): {', '.join(asked.approvers)}",
    )
    if asked.expires_at:
        local = asked.expires_at.astimezone(config.timezone)
        out.print(
            f"The links work until {local:%Y-%m-%d %H:%M %Z}, "
            "once, and only while the issue stays as it is.",
        )


@app.command("history")
def history_command(ctx: typer.Context, slug: Slug, *, as_json: AsJson = False) -> None:
    """Who asked for approval and when, each approver's decision (with their comment and
    address), the content hash each was about, and the send that followed.

    Example: newsletter issue history 2022-W51 --json
    """
    st = state(ctx)
    config = st.config()
    with Session(st.engine()) as session:
        trail = signoff.history(session, config, slug)
    if as_json:
        print_json(trail)
        return
    zone = config.timezone

    def local(moment: object) -> str:
        """An ISO time of the trail, in the newsletter's zone."""
        if not isinstance(moment, str):
            return ""
        return f"{datetime.fromisoformat(moment).astimezone(zone):%Y-%m-%d %H:%M %Z}"

    for event in trail["events"]:
        if event["channel"] == "cli":
            out.print(
                f"{local(event['decided_at'])}  approved from the CLI by {event['approver']} "
                f"({event['content_hash'][:12]})",
            )
            continue
        out.print(
            f"{local(event['requested_at'])}  {event['requested_by']} asked {event['approver']} "
            f"({event['content_hash'][:12]})",
        )
        if event["decision"]:
            said = f": {event['comment']}" if event["comment"] else ""
            out.print(
                f"{local(event['decided_at'])}  {event['approver']} "
                f"{'approved' if event['decision'] == 'approved' else 'asked for changes'}"
                f" from {event['client_address'] or 'an unknown address'}{said}",
            )
    frozen = trail["approved"]
    if frozen:
        by = frozen["approved_by"] or "someone unrecorded"
        when = local(frozen["send_at"]) or "when due"
        out.print(
            f"approved {local(frozen['approved_at'])} by {by} ({frozen['content_hash'][:12]}), "
            f"to be sent {when}",
        )
        if frozen["enqueued_at"]:
            runner = frozen["sent_by"] or "someone unrecorded"
            done = f", finished {local(frozen['finished_at'])}" if frozen["finished_at"] else ""
            out.print(f"sent from {local(frozen['enqueued_at'])} by {runner}{done}")
