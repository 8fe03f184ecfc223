"""Benchmarks: each figure beside a baseline measured in the same run, printed, not asserted.

    .venv/bin/python bench/bench.py [all|render|throughput|latency|distance|memory|import|
        parallel|doubt|bounces|corpus|redirects|dkim] [--quick] [--postgresql]

throughput, latency and parallel send to Postfix's smtp-sink on 127.0.0.1 (started and
stopped here); throughput also times Postfix's smtp-source, the physical reference, and a
DKIM-signed send; distance puts a proxy that delays every byte between them (a relay
20 ms away); doubt kills senders at random moments against a slow relay (aiosmtpd).
parallel and doubt need PostgreSQL (NEWSLETTER_BENCH_POSTGRES, by default the test server
on 127.0.0.1:5432, which bench/run starts). Every benchmark uses the issue's sizes: memory
sends to 10,000 and to 1,000,000 subscribers (about 15 minutes of the whole run's 20),
import reads 1,000,000 rows. `--quick` sends to 100,000 instead of 1,000,000 for memory,
and says so (and 10,000 returned messages instead of 100,000 for bounces); bounces times
`bounces process` over a Maildir of returned mail, redirects loads the counted-link
redirect with wrk (Debian package wrk), corpus prints the classification figures
of tests/bounces/; `--postgresql` puts the database of throughput, latency, memory and import on
PostgreSQL instead of SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import json
import os
import random
import re
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.config import load_config  # noqa: E402
from newsletter.db import open_database  # noqa: E402
from newsletter.models import new_token_id  # noqa: E402
from newsletter.project import init_project  # noqa: E402

SAMPLES = ROOT / "samples"
SOURCES = f"""
[[sources]]
name = "feed"
kind = "feed"
location = "{SAMPLES}/feeds/kyiv-independent.rss"
[[sources]]
name = "atom"
kind = "feed"
location = "{SAMPLES}/feeds/war-notes.atom"
[[sources]]
name = "pages"
kind = "page"
location = "{SAMPLES}/pages/*.html"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_sink(*flags: str) -> Iterator[int]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink).exists():
        sys.exit("smtp-sink not found: install Debian's postfix package (bench/run does)")
    port = free_port()
    process = subprocess.Popen(
        [sink, "-u", "nobody", *flags, f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield port
    finally:
        process.terminate()
        process.wait()


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args], env=env, capture_output=True, text=True
    )


def project(folder: Path, subscribers: int, database_url: str | None = None) -> dict[str, str]:
    """A newsletter with the sample week approved and `subscribers` active readers."""
    config_file = folder / "newsletter.toml"
    init_project(
        config_file,
        name="War Notes",
        timezone="Europe/Kyiv",
        sender="War Notes <notes@example.org>",
        base_url="https://news.example.org",
    )
    with config_file.open("a") as handle:
        handle.write(SOURCES)
    env = os.environ | {"NEWSLETTER_CONFIG": str(config_file)}
    if database_url:
        env["NEWSLETTER_DATABASE_URL"] = database_url
    for args in (["collect"], ["issue", "new", "--week", "2022-W51"]):
        done = run(*args, env=env)
        assert done.returncode == 0, done.stderr
    issue = folder / "issues" / "2022-W51.md"
    issue.write_text(issue.read_text() + "Dear readers, this is the benchmark issue.\n")
    assert run("issue", "approve", "2022-W51", env=env).returncode == 0
    engine = open_database(load_config(config_file, env).database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as connection:
        for start in range(0, subscribers, 10_000):
            rows = range(start, min(start + 10_000, subscribers))
            connection.execute(
                sa.text(
                    "INSERT INTO subscribers (id, email, email_key, name, source, attributes,"
                    " created_at, token_id) VALUES (:id, :e, :e, :n, 'bench', '{}', :t, :k)"
                ),
                [
                    {
                        "id": i + 1,
                        "e": f"reader{i}@example.org",
                        "n": f"Reader {i}",
                        "t": now,
                        "k": new_token_id(),
                    }
                    for i in rows
                ],  # fmt: skip
            )
            connection.execute(
                sa.text(
                    "INSERT INTO subscriptions (subscriber_id, newsletter, status, created_at,"
                    " confirmed_at) VALUES (:id, 'war-notes', 'active', :t, :t)"
                ),
                [{"id": i + 1, "t": now} for i in rows],
            )
    engine.dispose()
    return env


def sample_message(env: dict[str, str]) -> bytes:
    """One recipient's message, built as `newsletter send` builds it: the baseline's."""
    from sqlmodel import Session

    from newsletter.delivery.mailing import approved_template
    from newsletter.delivery.send import find_approved

    config = load_config(Path(env["NEWSLETTER_CONFIG"]), env)
    with Session(open_database(config.database_url)) as session:
        template = approved_template(config, find_approved(session, config, "2022-W51"))
    return template.render(
        email="reader0@example.org",
        email_key="reader0@example.org",
        name="Reader 0",
        unsubscribe_url="https://news.example.org/u/1.0.x",
        view_url="https://news.example.org/archive/2022-W51/",
    )


def baseline(port: int, message: bytes, count: int, connections: int) -> float:
    """Pre-built messages over plain smtplib, one thread per connection: messages a second."""
    per = [count // connections + (1 if n < count % connections else 0) for n in range(connections)]

    def worker(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for i in range(n):
                smtp.sendmail("notes@example.org", [f"reader{i}@example.org"], message)

    threads = [threading.Thread(target=worker, args=(n,)) for n in per]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count / (time.perf_counter() - start)


def ours(env: dict[str, str], port: int, connections: int) -> float:
    """`newsletter send` in a child process: messages a second."""
    start = time.perf_counter()
    done = run(
        "send",
        "2022-W51",
        "--json",
        "--connections",
        str(connections),
        "--transport",
        f"smtp://127.0.0.1:{port}",
        env=env,
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    return float(json.loads(done.stdout)["sent"]) / elapsed


def bench_render() -> None:
    from sqlmodel import Session

    from newsletter.delivery.message import build_message
    from newsletter.editorial.render import render_file

    with tempfile.TemporaryDirectory() as folder:
        env = project(Path(folder), 1)
        config = load_config(Path(env["NEWSLETTER_CONFIG"]), env)
        with Session(open_database(config.database_url)) as session:
            times = []
            for _ in range(20):
                start = time.perf_counter()
                _, rendered = render_file(config, session, "2022-W51")
                times.append(time.perf_counter() - start)
        render_ms = statistics.median(times) * 1000
        from newsletter.delivery.message import issue_template

        template = issue_template(
            config,
            slug="b",
            subject=rendered.subject,
            html=rendered.html.source,
            text=rendered.text.source,
            date=datetime.now(UTC),
        )
        n = 5000
        start = time.perf_counter()
        for i in range(n):
            template.render(
                email=f"r{i}@example.org",
                email_key=f"r{i}@example.org",
                name="Olena",
                unsubscribe_url="https://news.example.org/u/1.0.x",
                view_url="https://news.example.org/archive/b/",
            )
        fill_us = (time.perf_counter() - start) / n * 1e6
        # Baseline: what filling replaces, an EmailMessage built per recipient.
        m = 300
        start = time.perf_counter()
        for i in range(m):
            build_message(
                config,
                to=f"r{i}@example.org",
                to_name="Olena",
                subject=rendered.subject,
                text=rendered.text.source,
                html=rendered.html.source,
                message_id_parts=("b", str(i)),
            )
        email_us = (time.perf_counter() - start) / m * 1e6
        # As a send with a bounce address and per-subscriber click tracking fills it: the
        # links rewritten, and five signed tokens a recipient (VERP sender, mailto,
        # Message-ID, unsubscribe mark, reader).
        from newsletter.delivery.row_tokens import ReturnAddresses
        from newsletter.delivery.tracking import extract, rewrite

        links = extract(rendered.html.source, config.base_url)
        target = {link.url: f"{config.base_url}/c/1-{link.index}-x" for link in links}
        html, text = rewrite(rendered.html.source, rendered.text.source, target, True)
        tracked = issue_template(
            config, slug="b", subject=rendered.subject, html=html, text=text,
            date=datetime.now(UTC),
        )  # fmt: skip
        returns = ReturnAddresses(
            b"k" * 32, "war-notes", 1, "example.org", "notes@example.org", "bounces@example.org"
        )
        start = time.perf_counter()
        for i in range(n):
            returns.envelope_from(i)
            mark = returns.unsubscribe_mark(i)
            tracked.render(
                email=f"r{i}@example.org",
                email_key=f"r{i}@example.org",
                name="Olena",
                unsubscribe_url="https://news.example.org/u/1.0.x?m=" + mark,
                view_url="https://news.example.org/archive/b/",
                message_id=returns.message_id(i),
                unsubscribe_mailto=returns.mailto(mark),
                reader=returns.reader(i),
            )
        tracked_us = (time.perf_counter() - start) / n * 1e6
    print(f"render: full issue render {render_ms:.1f} ms (target < 50 ms)")
    print(
        f"render: fill one recipient with {len(links)} counted links and every per-recipient "
        f"token {tracked_us:.0f} us (target < 100 us)"
    )
    print(
        f"render: fill one recipient {fill_us:.0f} us (target < 100 us); "
        f"baseline EmailMessage per recipient {email_us:.0f} us; ratio {email_us / fill_us:.1f}x"
    )


def smtp_source(port: int, message: bytes, count: int, connections: int) -> float:
    """Postfix's smtp-source, a C client, sending the same message over the same number of
    connections kept open: the physical reference, messages a second."""
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    with tempfile.NamedTemporaryFile(suffix=".eml") as file:
        file.write(message)
        file.flush()
        start = time.perf_counter()
        subprocess.run(
            [source, "-d", "-N", "-s", str(connections), "-m", str(count), "-F", file.name,
             "-f", "notes@example.org", "-t", "reader@example.org", f"127.0.0.1:{port}"],
            check=True, capture_output=True,
        )  # fmt: skip
        return count / (time.perf_counter() - start)


def with_dkim(env: dict[str, str], folder: Path) -> None:
    """Sign the project's messages with an RSA-2048 key (the usual DKIM key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = folder / "dkim.pem"
    key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    config_file = Path(env["NEWSLETTER_CONFIG"])
    config_file.write_text(
        config_file.read_text()
        .replace('# dkim_selector = "news2022"', 'dkim_selector = "news2022"')
        .replace('# dkim_key_file = "/etc/newsletter/dkim.pem"', f'dkim_key_file = "{key}"')
    )


def openssl_rsa2048_sign() -> float | None:
    """OpenSSL's own RSA-2048 signature time on this machine, in µs (`openssl speed`)."""
    if not shutil.which("openssl"):
        return None
    done = subprocess.run(
        ["openssl", "speed", "-seconds", "2", "rsa2048"], capture_output=True, text=True
    )
    found = re.search(r"^rsa\s+2048 bits\s+([\d.]+)s", done.stdout, re.MULTILINE)
    return float(found.group(1)) * 1e6 if found else None


def bench_dkim(count: int) -> None:
    """The CPU a DKIM signature (RSA-2048) adds to each message, as the send builds them
    (one issue's template, each recipient's message filled and signed), beside OpenSSL's
    own RSA-2048 signature time measured in the same run."""
    from sqlmodel import Session

    from newsletter.delivery.mailing import approved_template
    from newsletter.delivery.message import dkim_signer
    from newsletter.delivery.send import find_approved

    with tempfile.TemporaryDirectory() as folder:
        env = project(Path(folder), 10)
        plain_config = load_config(Path(env["NEWSLETTER_CONFIG"]), env)
        with_dkim(env, Path(folder))
        config = load_config(Path(env["NEWSLETTER_CONFIG"]), env)
        with Session(open_database(config.database_url)) as session:
            issue = find_approved(session, config, "2022-W51")
            signed = approved_template(config, issue)
            plain = approved_template(plain_config, issue)
        assert dkim_signer(config) is not None

        def build(template: Any) -> float:
            started = time.process_time()
            for n in range(count):
                template.render(
                    email=f"reader{n}@example.org",
                    email_key=f"reader{n}@example.org",
                    name=f"Reader {n}",
                    unsubscribe_url=f"https://news.example.org/unsubscribe/t{n}.0.x",
                    view_url="https://news.example.org/archive/2022-W51/",
                    message_id=f"<m-1-{n}-x@example.org>",
                )
            return (time.process_time() - started) / count * 1e6

        build(signed), build(plain)  # warm
        added = min(build(signed) for _ in range(3)) - min(build(plain) for _ in range(3))
    reference = openssl_rsa2048_sign()
    ratio = f"{added / reference:.2f} x" if reference else "n/a (no openssl)"
    print(
        f"DKIM (RSA-2048): {added:.0f} µs of CPU added to each message over {count} "
        f"messages; OpenSSL's own RSA-2048 signature (openssl speed) "
        f"{reference or 0:.0f} µs; ratio {ratio} (target <= 1.5)"
    )


def bench_throughput(count: int, postgresql: bool) -> None:
    connections = 4
    with (
        tempfile.TemporaryDirectory() as folder,
        smtp_sink() as port,
        ledger(postgresql) as url,
    ):
        env = project(Path(folder), count, url)
        message = sample_message(env)
        physical = smtp_source(port, message, count, connections)
        base = baseline(port, message, count, connections)
        mine = ours(env, port, connections)
    with (
        tempfile.TemporaryDirectory() as signed_folder,
        smtp_sink() as port,
        ledger(postgresql) as url,
    ):
        signed_env = project(Path(signed_folder), count, url)
        with_dkim(signed_env, Path(signed_folder))
        signed = ours(signed_env, port, connections)
    print(
        f"throughput ({_name(postgresql)}): {count} messages of {len(message) // 1024} KB, "
        f"{connections} connections to smtp-sink: smtp-source (C, the physical reference) "
        f"{physical:.0f}/s; newsletter send {mine:.0f}/s = {mine / physical:.2f} of it; "
        f"baseline smtplib {base:.0f}/s = {base / physical:.2f}; newsletter / smtplib "
        f"{mine / base:.2f} (targets: >= 0.8 and >= 1000/s)"
    )
    print(
        f"throughput with DKIM (RSA-2048): {signed:.0f}/s = {signed / mine:.2f} of unsigned "
        f"in the same run, {signed / physical:.2f} of smtp-source (target: >= 0.8 of unsigned)"
    )


def bench_latency(count: int, postgresql: bool) -> None:
    connections = 64
    with (
        tempfile.TemporaryDirectory() as folder,
        smtp_sink("-w", "1") as port,
        ledger(postgresql) as url,
    ):
        env = project(Path(folder), count, url)
        mine = ours(env, port, connections)
    print(
        f"latency ({_name(postgresql)}): smtp-sink -w 1, {connections} connections, "
        f"{count} messages: "
        f"{mine:.1f}/s = {mine / connections:.2f} x connections (target >= 0.9)"
    )


@contextmanager
def distant(port: int, delay: float) -> Iterator[int]:
    """A relay `2 x delay` away: a TCP proxy to 127.0.0.1:port that holds every byte `delay`
    seconds in each direction (loopback's own round trip is some 50 us)."""
    loop = asyncio.new_event_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, data = await held.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        releasing = loop.create_task(release())
        try:
            while data := await reader.read(65536):
                held.put_nowait((loop.time() + delay, data))
        finally:
            held.put_nowait((loop.time() + delay, b""))
            await releasing

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        far_reader, far_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(
            pipe(reader, far_writer), pipe(far_reader, writer), return_exceptions=True
        )

    server = loop.run_until_complete(asyncio.start_server(connect, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()


def bench_distance(count: int, postgresql: bool) -> None:
    """A relay 20 ms away (a provider's, over the internet): a client that waits for each
    message's reply needs at least one round trip a message, so `connections / round trip`
    is the physical bound; smtplib.sendmail takes four (MAIL, RCPT, DATA, the dot)."""
    connections, delay = 8, 0.010
    with (
        tempfile.TemporaryDirectory() as folder,
        smtp_sink() as near,
        distant(near, delay) as port,
        ledger(postgresql) as url,
    ):
        env = project(Path(folder), count, url)
        message = sample_message(env)
        base = baseline(port, message, count // 4, connections)  # the rate, in less time
        mine = ours(env, port, connections)
    bound = connections / (2 * delay)
    print(
        f"distance ({_name(postgresql)}): a relay {2 * delay * 1000:.0f} ms away (round trip), "
        f"{connections} connections, {count} messages: newsletter send {mine:.0f}/s = "
        f"{mine / bound:.2f} of one round trip a message ({bound:.0f}/s); smtplib {base:.0f}/s "
        f"= {base / bound:.2f}; newsletter / smtplib {mine / base:.2f}"
    )


def bench_memory(small: int, large: int, postgresql: bool) -> None:
    peaks = {}
    for count in (small, large):
        with (
            tempfile.TemporaryDirectory() as folder,
            smtp_sink() as port,
            ledger(postgresql) as url,
        ):
            env = project(Path(folder), count, url)
            script = (
                "import resource, subprocess, sys; "
                "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
            )
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    script,
                    sys.executable,
                    "-m",
                    "newsletter",
                    "send",
                    "2022-W51",
                    "--transport",
                    f"smtp://127.0.0.1:{port}",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            peaks[count] = int(done.stdout.strip()) / 1024
    print(
        f"memory ({_name(postgresql)}): peak RSS sending to {small}: {peaks[small]:.0f} MB, "
        f"to {large}: {peaks[large]:.0f} MB, ratio {peaks[large] / peaks[small]:.2f} "
        f"(targets: <= 1.2 and < 150 MB)"
    )


PROVIDERS = ["gmail.com", "ukr.net", "outlook.com", "i.ua", "yahoo.com", "icloud.com", "meta.ua"]


def bench_import(count: int, postgresql: bool) -> None:
    with tempfile.TemporaryDirectory() as folder, ledger(postgresql) as url:
        path = Path(folder) / "list.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "name", "city"])
            for i in range(count):
                # Like a real list: seven in ten at a few big providers, the rest spread
                # over 50,000 domains (each validated in full once).
                domain = PROVIDERS[i % 7] if i % 10 < 7 else f"org{i % 50_000}.example.net"
                name = f"Олена {i}" if i % 3 == 0 else f"Reader {i}"
                writer.writerow([f"reader.{i}@{domain}", name, "Kyiv"])
        config_file = Path(folder) / "newsletter.toml"
        init_project(
            config_file,
            name="War Notes",
            timezone="UTC",
            sender="n@example.org",
            base_url="https://e.org",
        )
        env = os.environ | {"NEWSLETTER_CONFIG": str(config_file)}
        if url:
            env["NEWSLETTER_DATABASE_URL"] = url
        start = time.perf_counter()
        done = run("subscribers", "import", str(path), "--json", env=env)
        elapsed = time.perf_counter() - start
        assert done.returncode == 0, done.stderr
        # Baseline: reading and validating the same rows, without the database.
        from newsletter.audience.csv_files import read_csv
        from newsletter.audience.subscribers import parse_address

        start = time.perf_counter()
        header, rows = read_csv(path)
        for _, row in rows:
            parse_address(row[0])
        validate = time.perf_counter() - start
    print(
        f"import ({_name(postgresql)}): {count} rows in {elapsed:.1f} s = "
        f"{count / elapsed:.0f} rows/s (target >= 20000/s); "
        f"parse+validate alone {count / validate:.0f} rows/s"
    )


POSTGRES_URL = os.environ.get(
    "NEWSLETTER_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL on a fresh PostgreSQL schema, dropped afterwards."""
    schema = f"bench_{os.getpid()}_{time.time_ns() % 10**6}"
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as error:
        sys.exit(f"PostgreSQL at {POSTGRES_URL} is unreachable ({error.orig}): scripts/postgres")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def workers(env: dict[str, str], port: int, count: int, connections: int) -> tuple[float, int]:
    """`count` `send --due --worker` processes started together: the messages a second
    they delivered between them, and how many they sent in all."""
    args = [sys.executable, "-m", "newsletter", "send", "--due", "--worker", "--json"]
    args += ["--connections", str(connections), "--transport", f"smtp://127.0.0.1:{port}"]
    start = time.perf_counter()
    processes = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    outputs = [process.communicate() for process in processes]
    elapsed = time.perf_counter() - start
    sent = 0
    for process, (out, errors) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, out + errors
        sent += sum(issue["sent"] for issue in json.loads(out)["issues"])
    return sent / elapsed, sent


def exactly_once(env: dict[str, str], expected: int) -> bool:
    """Every ledger row sent, each in one attempt, by one of the workers."""
    config = load_config(Path(env["NEWSLETTER_CONFIG"]), env)
    engine = open_database(config.database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT state, attempts, count(*) FROM deliveries GROUP BY state, attempts")
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows] == [("sent", 1, expected)]


@contextmanager
def ledger(postgresql: bool) -> Iterator[str | None]:
    """The database for a send benchmark: the project's SQLite file (None), or a schema on
    PostgreSQL."""
    if not postgresql:
        yield None
        return
    with postgres_schema() as url:
        yield url


def _name(postgresql: bool) -> str:
    return "PostgreSQL" if postgresql else "SQLite"


def bench_parallel(per_sender: int) -> None:
    connections = 32
    figures = {}
    for senders in (1, 2):
        count = per_sender * senders
        with (
            tempfile.TemporaryDirectory() as folder,
            postgres_schema() as url,
            smtp_sink("-w", "1") as port,
        ):
            env = project(Path(folder), count, url)
            # Due now: `send --due` picks it up in every worker.
            done = run("issue", "approve", "2022-W51", "--send-at", "2022-12-26T08:00", env=env)
            assert done.returncode == 0, done.stderr
            rate, sent = workers(env, port, senders, connections)
            assert sent == count and exactly_once(env, count), f"{senders} sender(s): {sent}"
            figures[senders] = rate
    print(
        f"parallel senders on PostgreSQL, smtp-sink -w 1, {connections} connections each: one "
        f"{figures[1]:.1f}/s, two {figures[2]:.1f}/s, ratio {figures[2] / figures[1]:.2f} "
        f"(target >= 1.8); every row sent exactly once"
    )


@contextmanager
def slow_relay(delay: float) -> Iterator[tuple[int, collections.Counter[str]]]:
    """An SMTP server (aiosmtpd) that takes `delay` seconds over each message, as a remote
    relay does, and counts what it accepted per recipient."""
    import asyncio

    from aiosmtpd.controller import Controller

    received: collections.Counter[str] = collections.Counter()

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
            await asyncio.sleep(delay)
            received.update(envelope.rcpt_tos)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, received
    finally:
        controller.stop()


def ledger_states(env: dict[str, str], pid: int | None = None) -> dict[str, int]:
    """Rows per state; with `pid`, only that worker's (its name holds its pid)."""
    engine = open_database(load_config(Path(env["NEWSLETTER_CONFIG"]), env).database_url)
    where = f" WHERE claimed_by LIKE '%:{pid}:%'" if pid else ""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(f"SELECT state, count(*) FROM deliveries{where} GROUP BY state")
        ).all()
    engine.dispose()
    return {state: int(n) for state, n in rows}


def bench_doubt(count: int, kills: int) -> None:
    """kill -9 at random moments (seeded), as the issue measured it: how many rows each kill
    leaves in doubt, and whether everyone else got exactly one message."""
    connections, delay = 4, 0.05
    rng = random.Random(13)
    args = ["send", "2022-W51", "--json", "--connections", str(connections)]
    with tempfile.TemporaryDirectory() as folder, slow_relay(delay) as (port, received):
        env = project(Path(folder), count)
        command = [sys.executable, "-m", "newsletter", *args, "--transport"]
        command.append(f"smtp://127.0.0.1:{port}")
        doubts = []
        for _ in range(kills):
            process = subprocess.Popen(command, env=env, stdout=DEVNULL, stderr=DEVNULL)
            time.sleep(rng.uniform(0.8, 4.0))  # start-up takes about 0.7 s
            if process.poll() is None:
                process.kill()
                process.wait()
                doubts.append(ledger_states(env).get("sending", 0))
        finished = run(*args, "--transport", f"smtp://127.0.0.1:{port}", env=env)
        unknown = json.loads(finished.stdout)["ledger"]["unknown"]
        once = _exactly_once_but(env, received, count)
    print(
        f"doubt after kill -9 (SQLite): {count} subscribers, {connections} connections, a relay "
        f"taking {delay * 1000:.0f} ms a message, {len(doubts)} kills at random moments: rows "
        f"in doubt per kill {', '.join(map(str, doubts))} (max {max(doubts, default=0)}; bound "
        f"2 x connections = {2 * connections}; 28-74 before); {unknown} unknown in all; every "
        f"other recipient got exactly one message: {'yes' if once else 'NO'}"
    )
    doubts = []
    onces = []
    for _ in range(max(1, kills // 2)):
        with (
            tempfile.TemporaryDirectory() as folder,
            slow_relay(delay) as (port, received),
            postgres_schema() as url,
        ):
            env = project(Path(folder), count, url)
            approved = run("issue", "approve", "2022-W51", "--send-at", "2022-12-26T08:00", env=env)
            assert approved.returncode == 0, approved.stderr
            command = [sys.executable, "-m", "newsletter", "send", "--due", "--worker"]
            command += ["--connections", str(connections), "--transport"]
            command.append(f"smtp://127.0.0.1:{port}")
            pair = [
                subprocess.Popen(command, env=env, stdout=DEVNULL, stderr=DEVNULL) for _ in "ab"
            ]
            time.sleep(rng.uniform(0.8, 3.0))
            doomed = rng.choice(pair)
            doomed.kill()
            doomed.wait()
            doubts.append(ledger_states(env, doomed.pid).get("sending", 0))
            for process in pair:
                process.wait()
            onces.append(_exactly_once_but(env, received, count))
    print(
        f"doubt after kill -9 of one of two --worker senders (PostgreSQL), same relay: rows "
        f"in doubt per kill {', '.join(map(str, doubts))} (max {max(doubts)}; bound "
        f"{2 * connections}; 74 before); the survivor finished each issue, and every other "
        f"recipient got exactly one message: {'yes' if all(onces) else 'NO'}"
    )


def _exactly_once_but(env: dict[str, str], received: collections.Counter[str], count: int) -> bool:
    """Whether every recipient not in `unknown` got exactly one message."""
    engine = open_database(load_config(Path(env["NEWSLETTER_CONFIG"]), env).database_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT email, state FROM deliveries")).all()
    engine.dispose()
    states = dict(rows)
    return len(states) == count and all(
        state == "unknown" or (state == "sent" and received[email] == 1)
        for email, state in states.items()
    )


def returned_messages(folder: Path, sent: list[Path], count: int) -> Path:
    """A Maildir of `count` returned messages made from the sent ones, every kind mixed as
    a bounce mailbox receives them (DSN hard and soft, qmail prose, ARF complaints,
    auto-replies, mail nobody can read), each unique."""
    from email import message_from_bytes

    inbox = folder / "bounces"
    for sub in ("new", "cur", "tmp"):
        (inbox / sub).mkdir(parents=True)
    originals = []
    for path in sent:
        data = path.read_bytes()
        message = message_from_bytes(data)
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        verp = str(message["Return-Path"]).strip("<>")
        originals.append((verp, str(message["To"]), head))
    kinds = ["hard", "soft", "hard", "qmail", "complaint", "auto", "soft", "junk", "hard", "delay"]
    for n in range(count):
        verp, to, head = originals[n % len(originals)]
        kind = kinds[n % len(kinds)]
        unique = f"X-Bench: {n}"
        if kind in ("hard", "soft", "delay"):
            status, words, action = {
                "hard": (
                    "5.1.1",
                    "550 5.1.1 <x>: Recipient address rejected: User unknown",
                    "failed",
                ),
                "soft": ("5.2.2", "552 5.2.2 Mailbox full", "failed"),
                "delay": ("4.4.1", "Connection timed out", "delayed"),
            }[kind]
            body = (
                f"Return-Path: <>\r\nDelivered-To: {verp}\r\n{unique}\r\n"
                f"From: MAILER-DAEMON@mx.example.net\r\n"
                f"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
                f'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
                f"--B\r\nContent-Type: text/plain\r\n\r\nYour message was not delivered.\r\n\r\n"
                f"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
                f"Reporting-MTA: dns; mx\r\n\r\n"
                f"Final-Recipient: rfc822; {to}\r\nAction: {action}\r\nStatus: {status}\r\n"
                f"Diagnostic-Code: smtp; {words}\r\n\r\n"
                f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{head}\r\n\r\n--B--\r\n"
            )
        elif kind == "qmail":
            body = (
                f"Delivered-To: {verp}\r\n{unique}\r\nFrom: MAILER-DAEMON@mail.example.com\r\n"
                f"Subject: failure notice\r\n\r\nHi. This is the qmail-send program.\r\n"
                f"<{to}>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
                f"--- Below this line is a copy of the message.\r\n\r\n{head}\r\n"
            )
        elif kind == "complaint":
            body = (
                f"Delivered-To: fbl@example.org\r\n{unique}\r\nFrom: fbl@feedback.example\r\n"
                f"Subject: complaint\r\nMIME-Version: 1.0\r\n"
                f'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
                f"--F\r\nContent-Type: text/plain\r\n\r\nAbuse report.\r\n\r\n"
                f"--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
                f"Version: 1\r\nOriginal-Rcpt-To: redacted@example.net\r\n\r\n"
                f"--F\r\nContent-Type: text/rfc822-headers\r\n\r\n{head}\r\n\r\n--F--\r\n"
            )
        elif kind == "auto":
            body = (
                f"Delivered-To: {verp}\r\n{unique}\r\nFrom: {to}\r\n"
                f"Auto-Submitted: auto-replied\r\n"
                f"Subject: Out of office\r\n\r\nAway until Monday.\r\n"
            )
        else:
            body = f"From: someone@example.net\r\n{unique}\r\nSubject: hello\r\n\r\nBuy now.\r\n"
        (inbox / "new" / f"{1700000000 + n}.M{n}P1.bench").write_bytes(body.encode())
    return inbox


def bench_bounces(count: int) -> None:
    """`bounces process` over a Maildir of returned mail: messages a second and peak memory
    at a tenth of the size and at full size; the baseline is the standard library only
    reading and parsing the same files."""
    from email import message_from_bytes

    results = {}
    for size in (count // 10, count):
        with tempfile.TemporaryDirectory() as folder:
            env = project(Path(folder), 1000)
            text = (Path(folder) / "newsletter.toml").read_text()
            (Path(folder) / "newsletter.toml").write_text(
                text.replace('# bounce_address = "bounces@news.example.org"',
                             'bounce_address = "bounces@example.org"')
            )  # fmt: skip
            done = run("send", "2022-W51", env=env)
            assert done.returncode == 0, done.stderr
            sent = sorted((Path(folder) / "outbox").glob("*.eml"))
            inbox = returned_messages(Path(folder), sent, size)
            started = time.perf_counter()
            for path in sorted((inbox / "new").iterdir()):
                message_from_bytes(path.read_bytes())
            baseline = size / (time.perf_counter() - started)
            script = (
                "import resource, subprocess, sys, time; t = time.perf_counter(); "
                "subprocess.run(sys.argv[1:], capture_output=True); "
                "print(time.perf_counter() - t, "
                "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
            )
            timed = subprocess.run(
                [sys.executable, "-c", script, sys.executable, "-m", "newsletter", "bounces",
                 "process", str(inbox)],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            seconds, peak = timed.stdout.split()
            left = len(os.listdir(inbox / "new"))
            results[size] = (size / float(seconds), int(peak) / 1024, baseline, left)
    small, large = results[count // 10], results[count]
    print(
        f"bounces: {count:,} returned messages processed at {large[0]:,.0f} msg/s "
        f"(start-up included; stdlib parse alone {large[2]:,.0f} msg/s, ratio "
        f"{large[0] / large[2]:.2f}); target >= 500 msg/s; {large[3]} left unread"
    )
    print(
        f"bounces memory: peak RSS {small[1]:.0f} MB at {count // 10:,}, {large[1]:.0f} MB at "
        f"{count:,} (ratio {large[1] / small[1]:.2f}; flat is ~1)"
    )


SHARED_CORPUS = ROOT.parent / "shared" / "bounce-corpus"


def bench_shared_corpus(copies: int) -> None:
    """../shared/bounce-corpus (mail written by hundreds of servers): its figures by its own
    score.py, and `bounces process --dry-run` over a Maildir of `copies` copies of it,
    messages a second beside the standard library alone parsing the same files."""
    if not (SHARED_CORPUS / "labels.json").is_file():
        print(f"shared corpus: not at {SHARED_CORPUS}; skipped")
        return
    from email import message_from_bytes

    messages = sorted((SHARED_CORPUS / "messages").iterdir())
    with tempfile.TemporaryDirectory() as folder:
        env = project(Path(folder), 10)
        inbox = Path(folder) / "corpus"
        for sub in ("cur", "new", "tmp"):
            (inbox / sub).mkdir(parents=True)
        for copy in range(copies):
            for message in messages:
                shutil.copy(message, inbox / "new" / f"{copy}-{message.name}")
        count = copies * len(messages)
        started = time.perf_counter()
        for path in sorted((inbox / "new").iterdir()):
            message_from_bytes(path.read_bytes())
        baseline = count / (time.perf_counter() - started)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "newsletter", "bounces", "process", str(inbox), "--dry-run",
             "--json"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        speed = count / (time.perf_counter() - started)
        once = [
            line for line in done.stdout.splitlines()
            if line.startswith("{") and json.loads(line)["source"].startswith("new/0-")
        ]  # fmt: skip
        report = Path(folder) / "report.jsonl"
        report.write_text("\n".join(line.replace('"new/0-', '"new/') for line in once) + "\n")
        scored = subprocess.run(
            [sys.executable, str(SHARED_CORPUS / "score.py"), str(SHARED_CORPUS / "labels.json"),
             str(report)],
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
    print(f"shared corpus: {scored}")
    print(
        f"shared corpus speed: {count:,} messages ({copies} copies) at {speed:,.0f} msg/s "
        f"(start-up included; stdlib parse alone {baseline:,.0f} msg/s, ratio "
        f"{speed / baseline:.2f})"
    )


def _wrk(
    url: str, seconds: int, connections: int, script: Path | None = None
) -> tuple[int, float, float]:
    """requests, requests/s and p99 in ms from a wrk run with a browser's User-Agent (or
    what `script` sets)."""
    extra = ["-s", str(script)] if script else []
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", *extra,
         "-H", "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120 Safari/537.36", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = done.stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return total, rate, float(p99) * scale


BARE_REDIRECT = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Route
from newsletter.web.server import server_config

async def go(request):
    return RedirectResponse("https://kyivindependent.com/", status_code=302)

app = Starlette(routes=[Route("/c/{token}", go)])
uvicorn.Server(server_config(app, host="127.0.0.1", port=int(sys.argv[1]),
                             proxy_headers=False, log_level="info")).run()
"""

# wrk: each request a different reader (its own User-Agent), so every one counts: one
# client's repeats count once in ten minutes (web/counting.py).
READERS_LUA = """
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end
counter = 0
request = function()
  counter = counter + 1
  wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120 reader-"
    .. id .. "-" .. counter
  return wrk.format(nil)
end
"""


def _serving(
    command: list[str], env: dict[str, str], port: int, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("w") as handle:
        server = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.1)
    return server


def bench_redirects(seconds: int) -> None:
    """Counted-link redirects under wrk on loopback, 32 connections: requests a second and
    p99 beside a bare Starlette redirect served the same way (uvicorn with our server
    settings and access log) in the same run; then every request a different reader, and
    the count the database holds against the 302s answered (exact)."""
    if not shutil.which("wrk"):
        print("redirects: skipped (wrk is not installed: apt-get install wrk)")
        return
    connections = 32
    with tempfile.TemporaryDirectory() as folder:
        env = project(Path(folder), 200)
        done = run("send", "2022-W51", env=env)
        assert done.returncode == 0, done.stderr
        sent = sorted((Path(folder) / "outbox").glob("*.eml"))[0].read_bytes().decode()
        from email import message_from_string

        body = message_from_string(sent).get_payload()[1].get_payload(decode=True).decode()
        link = re.search(r"https://news\.example\.org(/c/[0-9a-z-]+)", body)
        assert link is not None
        bare_port, port = free_port(), free_port()
        bare = _serving([sys.executable, "-c", BARE_REDIRECT, str(bare_port)], env, bare_port,
                        Path(folder) / "bare.log")  # fmt: skip
        try:
            _, bare_rate, bare_p99 = _wrk(f"http://127.0.0.1:{bare_port}/c/x", seconds, connections)
        finally:
            bare.terminate()
            bare.wait(timeout=20)
        log = Path(folder) / "serve.log"
        server = _serving([sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
                          env, port, log)  # fmt: skip
        script = Path(folder) / "readers.lua"
        script.write_text(READERS_LUA)
        try:
            url = f"http://127.0.0.1:{port}{link.group(1)}"
            _, rate, p99 = _wrk(url, seconds, connections)
            engine = open_database(load_config(Path(folder) / "newsletter.toml", env).database_url)

            def stored() -> int:
                with engine.connect() as connection:
                    total = connection.execute(sa.text("SELECT SUM(count) FROM click_counts"))
                    return int(total.scalar() or 0)

            before = stored()
            answered_before = _redirects_logged(log)
            total, readers_rate, readers_p99 = _wrk(url, seconds, connections, script)
            time.sleep(1.0)  # the last group commit
            moved = stored() - before
            answered = _redirects_logged(log) - answered_before
            engine.dispose()
        finally:
            server.terminate()
            server.wait(timeout=20)
    ratio = rate / bare_rate
    print(
        f"redirects: {rate:,.0f}/s, p99 {p99:.1f} ms, {connections} connections over "
        f"{seconds} s (wrk, loopback); a bare Starlette redirect served alike {bare_rate:,.0f}/s, "
        f"p99 {bare_p99:.1f} ms; ratio {ratio:.2f} (targets: >= 0.4, p99 < 50 ms)"
    )
    print(
        f"redirects, every request a different reader (each counted): {readers_rate:,.0f}/s, "
        f"p99 {readers_p99:.1f} ms; the count moved by {moved:,} for {answered:,} redirects "
        f"answered ({'exact' if moved == answered else 'NOT exact'}; wrk completed {total:,})"
    )


def _redirects_logged(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if "/c/" in line and " 302" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=[
            "all",
            "render",
            "throughput",
            "latency",
            "distance",
            "memory",
            "import",
            "parallel",
            "doubt",
            "bounces",
            "corpus",
            "redirects",
            "dkim",
        ],  # fmt: skip
    )
    parser.add_argument(
        "--quick", action="store_true", help="memory: 100,000 subscribers, not 1,000,000"
    )
    parser.add_argument(
        "--postgresql",
        action="store_true",
        help="throughput, latency, memory and import on PostgreSQL, not SQLite",
    )
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    if args.which in ("all", "render"):
        bench_render()
    if args.which in ("all", "throughput"):
        bench_throughput(20_000, args.postgresql)
    if args.which in ("all", "latency"):
        bench_latency(1920, args.postgresql)
    if args.which in ("all", "distance"):
        bench_distance(4000, args.postgresql)
    if args.which in ("all", "memory"):
        bench_memory(10_000, 100_000 if args.quick else 1_000_000, args.postgresql)
    if args.which in ("all", "import"):
        bench_import(1_000_000, args.postgresql)
    if args.which in ("all", "parallel"):
        bench_parallel(32 * 30)
    if args.which in ("all", "doubt"):
        bench_doubt(2000, 6)
    if args.which in ("all", "bounces"):
        bench_bounces(10_000 if args.quick else 100_000)
    if args.which in ("all", "dkim"):
        bench_dkim(2000)
    if args.which in ("all", "redirects"):
        bench_redirects(10)
    if args.which in ("all", "corpus"):
        subprocess.run([sys.executable, "-m", "tests.bounces.corpus"], cwd=ROOT, check=True)
        bench_shared_corpus(20)


if __name__ == "__main__":
    main()
