"""The tool as users get it: an sdist built from the checkout, a wheel built from that sdist,
installed with its dependencies into a fresh virtual environment outside the checkout, and
the editor's whole journey run from an empty folder. A test run from the checkout (where the
package can read files next to itself) cannot catch a theme, migration or page left out of
the package; this one does."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from tests.smtpserver import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh virtual environment holding the built wheel."""
    work = tmp_path_factory.mktemp("package")
    dist = work / "dist"
    build = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    subprocess.run(
        [sys.executable, "-c", build, str(dist)], cwd=ROOT, check=True, capture_output=True
    )
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(name.endswith("templates/email.mjml.j2") for name in names), names
    assert any(name.endswith("newsletter/locales/uk.po") for name in names), names
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist),
         str(sdist)],
        check=True, capture_output=True, cwd=work,
    )  # fmt: skip
    (wheel,) = dist.glob("*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    bin_dir = work / "venv" / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, cwd=work,
    )  # fmt: skip
    return bin_dir


def test_the_wheel_carries_the_theme_migrations_and_pages(venv: Path) -> None:
    found = subprocess.run(
        [str(venv / "python"), "-c",
         "import newsletter, importlib.resources as r; print(newsletter.__file__); "
         "print(r.files('newsletter.theme').joinpath('web/subscribe.html.j2').is_file())"],
        check=True, capture_output=True, text=True, cwd=venv,
    )  # fmt: skip
    module, theme = found.stdout.split()
    assert module.startswith(str(venv.parent)) and theme == "True"
    # The catalogues travel too: an installed copy speaks the newsletter's language.
    spoken = subprocess.run(
        [str(venv / "python"), "-c",
         "from newsletter import languages as l; print(*l.available()); "
         "print(l.translations('uk').gettext('Unsubscribe')); "
         "print(l.week_range(__import__('datetime').date(2022, 12, 19), "
         "__import__('datetime').date(2022, 12, 25), 'uk'))"],
        check=True, capture_output=True, text=True, cwd=venv,
    )  # fmt: skip
    assert spoken.stdout.splitlines() == ["en uk", "Відписатися", "19–25 грудня 2022"]


def test_the_whole_journey_from_an_installed_wheel(venv: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NEWSLETTER_", "PYTHON", "VIRTUAL_ENV"))
    }
    env |= {"HOME": str(home), "PATH": f"{venv}:{env.get('PATH', '')}"}

    def run(*args: str, cwd: Path, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(venv / "newsletter"), *args],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode in ok, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    run("init", "war-notes", "--name", "War Notes", "--timezone", "Europe/Kyiv",
        "--from", "War Notes <war-notes@example.org>",
        "--base-url", "https://example.org/war-notes", cwd=home)  # fmt: skip
    project = home / "war-notes"
    config = project / "newsletter.toml"
    config.write_text(
        config.read_text().replace(
            "# postal_address = ", 'postal_address = "1 Example Street, Kyiv" # '
        )
    )
    run("collect", "--feed", str(SAMPLES / "feeds/kyiv-independent.rss"),
        "--feed", str(SAMPLES / "feeds/war-notes.atom"),
        "--page", str(SAMPLES / "pages/*.html"), cwd=project)  # fmt: skip
    issue = Path(
        run("issue", "new", "--week", "2022-W51", "--author", "Asami Terajima", cwd=project)
        .stdout.strip()
        .splitlines()[-1]
    )
    issue = issue if issue.is_absolute() else project / issue
    issue.write_text(issue.read_text() + "The week the front froze.\n")
    run("issue", "render", "2022-W51", cwd=project)
    assert (project / "build/2022-W51/email.html").stat().st_size > 10_000
    run("issue", "check", "2022-W51", cwd=project)
    run("issue", "approve", "2022-W51", cwd=project)
    run("archive", "build", cwd=project)
    assert (project / "build/archive/index.html").is_file()
    # The installed theme speaks through the installed catalogue: a Ukrainian newsletter's
    # email is in Ukrainian, not the English the messages are written in.
    run("init", "uk", "--name", "Воєнні нотатки", "--timezone", "Europe/Kyiv",
        "--from", "N <n@example.org>", "--base-url", "https://example.org/uk",
        "--language", "uk", cwd=home)  # fmt: skip
    edition = home / "uk"
    run("collect", "--feed", str(SAMPLES / "feeds/war-notes-uk.atom"), cwd=edition)
    run("issue", "new", "--week", "2022-W51", cwd=edition)
    run("issue", "render", "2022-W51", cwd=edition, ok=(0, 1))
    spoken = (edition / "build/2022-W51/email.txt").read_text()
    for words in ("Відкрити в браузері", "Вітаємо, %%first_name%%!", "Відписатися", "грудня"):
        assert words in spoken, spoken[:600]
    assert "View in your browser" not in spoken and "Unsubscribe" not in spoken
    run("subscribers", "import", str(SAMPLES / "subscribers.csv"), cwd=project, ok=(0, 1))
    run("send", "2022-W51", cwd=project, ok=(0, 1))
    assert len(list((project / "outbox").glob("*.eml"))) >= 3

    port = free_port()
    server = subprocess.Popen(
        [str(venv / "newsletter"), "serve", "--port", str(port)],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        answers = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(answers) < 2:
            try:
                for path in ("/subscribe", "/archive/"):
                    answers[path] = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            except httpx.TransportError:
                time.sleep(0.2)
        assert {path: answer.status_code for path, answer in answers.items()} == {
            "/subscribe": 200,
            "/archive/": 200,
        }
        assert "War Notes" in answers["/archive/"].text
    finally:
        server.terminate()
        server.wait(timeout=10)
