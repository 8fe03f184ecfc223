"""CSV import and export, through the CLI, on both databases."""

import csv
import io
import json

import pytest

from tests.conftest import Project

HOSTILE = (
    "\ufeffE-mail ignored;EMAIL;Name;Plan;Note\r\n"  # BOM, semicolons, header case
    "x;olena@example.org;Olena;gold;\r\n"
    "x;OLENA@Example.org;Olena K.;gold;second row for the same person\r\n"
    "x;not-an-address;Bad;;\r\n"
    "x;;No email;;\r\n"
    "x;eve@example.org\r\nBcc: all@example.org;Eve;;\r\n"
    'x;"mallory%0d%0aBcc:@example.org";Mallory;;\r\n'
    'x;ann@example.org;"Ann\r\nBcc: evil@example.org";;\r\n'
    'x;=HYPERLINK("http://evil")@example.org;Formula;;\r\n'
    "x;bob@example.org;=cmd|' /C calc'!A0;@SUM(1);-2+3\r\n"
    "x;too@example.org;Too;many;cells;here\r\n"
    "x;анна@пример.рф;Анна;;\r\n"
)


def run_import(project: Project, text: str, *args: str) -> tuple[int, dict[str, object]]:
    (project.root / "list.csv").write_bytes(text.encode("utf-8"))
    result = project.run("subscribers", "import", "list.csv", "--json", *args)
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}


def emails(project: Project) -> list[str]:
    rows = json.loads(project.run("subscribers", "list", "--json").stdout)
    return sorted(row["email"] for row in rows)


def test_hostile_file_imports_exactly_its_valid_people(project: Project) -> None:
    code, report = run_import(project, HOSTILE)
    assert code == 1
    rejected = {(r["row"], r["reason"].split(":")[0]) for r in report["rejected"]}  # type: ignore[union-attr]
    # The raw line break after eve's address ends that record (CSV rules): eve is a clean row
    # of her own, and "Bcc: all@example.org" starts a new row whose address cell is "Eve".
    assert report["imported"] == 5 and report["duplicates"] == 1
    assert len(report["rejected"]) == 6  # type: ignore[arg-type]
    assert (4, "An email address must have an @-sign.") in rejected
    assert (5, "no email address") in rejected
    assert any(row == 8 and "line break" in reason for row, reason in rejected)
    assert (11, "The email address contains invalid characters before the @-sign") in rejected
    assert emails(project) == ["ann@example.org", "bob@example.org", "eve@example.org",
                               "olena@example.org", "анна@пример.рф"]  # fmt: skip
    olena = json.loads(project.run("subscribers", "show", "olena@example.org", "--json").stdout)
    assert olena["name"] == "Olena K." and olena["attributes"]["plan"] == "gold"
    assert olena["attributes"]["note"] == "second row for the same person"
    ann = json.loads(project.run("subscribers", "show", "ann@example.org", "--json").stdout)
    assert ann["name"] == "Ann Bcc: evil@example.org"  # one line, can never become a header


def test_import_again_merges_and_dry_run_changes_nothing(project: Project) -> None:
    good = "email,name\nolena@example.org,Olena\nbob@example.org,Bob\n"
    code, dry = run_import(project, good, "--dry-run")
    assert code == 0 and dry["imported"] == 2 and dry["dry_run"] is True
    assert emails(project) == []
    assert run_import(project, good)[1]["imported"] == 2
    code, again = run_import(project, good.replace("Bob", "Robert"))
    assert code == 0 and again["imported"] == 0 and again["updated"] == 1
    assert again["unchanged"] == 1 and emails(project) == ["bob@example.org", "olena@example.org"]


def test_unsubscribed_people_are_not_resubscribed_by_an_import(project: Project) -> None:
    run_import(project, "email\nolena@example.org\n")
    assert project.run("subscribers", "unsubscribe", "olena@example.org").exit_code == 0
    code, report = run_import(project, "email\nOlena@example.org\n")
    assert code == 0 and report["suppressed"] == 1
    shown = json.loads(project.run("subscribers", "show", "olena@example.org", "--json").stdout)
    assert shown["status"] == "unsubscribed"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name\nOlena\n", "no 'email' column"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        ("email\nолена@example.org\n".encode("cp1251"), "not UTF-8"),
        (b"", "empty file"),
    ],
)
def test_unreadable_files_exit_2_and_change_nothing(
    project: Project, content: bytes, message: str
) -> None:
    (project.root / "bad.csv").write_bytes(content)
    result = project.run("subscribers", "import", "bad.csv")
    assert result.exit_code == 2 and message in result.stderr
    assert "Traceback" not in result.output
    assert emails(project) == []
    missing = project.run("subscribers", "import", "nope.csv")
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_export_neutralises_formula_cells(project: Project) -> None:
    run_import(project, HOSTILE)
    result = project.run("subscribers", "export", "--status", "active", "--out", "out.csv")
    assert result.exit_code == 0, result.output
    data = (project.root / "out.csv").read_bytes()
    assert data.decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    bob = next(r for r in rows if r["email"] == "bob@example.org")
    assert bob["name"] == "'=cmd|' /C calc'!A0"
    assert bob["plan"] == "'@SUM(1)" and bob["note"] == "'-2+3"
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert {r["email"] for r in rows} == {"ann@example.org", "bob@example.org", "eve@example.org",
                                          "olena@example.org", "анна@пример.рф"}  # fmt: skip


def test_a_duplicate_past_the_first_chunk_is_merged_not_doubled(project: Project) -> None:
    lines = ["email,name,team"] + [f"r{n}@example.org,R{n}," for n in range(1500)]
    lines.append("R0@Example.org,Renamed,desk")  # the same person as the first row
    code, report = run_import(project, "\n".join(lines) + "\n")
    assert code == 0 and report["imported"] == 1500 and report["duplicates"] == 1
    assert report["updated"] == 0 and report["unchanged"] == 0
    first = json.loads(project.run("subscribers", "show", "r0@example.org", "--json").stdout)
    assert first["name"] == "Renamed" and first["attributes"] == {"team": "desk"}
    assert json.loads(project.run("subscribers", "count", "--json").stdout)["active"] == 1500


def test_names_and_attributes_survive_the_bulk_insert_unchanged(project: Project) -> None:
    """Backslashes, quotes, tabs, Cyrillic and emoji, through PostgreSQL's COPY and
    SQLite's executemany alike."""
    tricky = 'back\\slash "quoted" \\N tab\there Київ 🙂 {"json": [1]}'
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "name", "note", "empty"])
    writer.writerow(["olena@example.org", 'Олена \\ "O"', tricky, ""])
    writer.writerow(["nobody@example.org", "", "", ""])
    code, report = run_import(project, buffer.getvalue())
    assert code == 0 and report["imported"] == 2
    olena = json.loads(project.run("subscribers", "show", "olena@example.org", "--json").stdout)
    assert olena["name"] == 'Олена \\ "O"'
    assert olena["attributes"] == {"note": " ".join(tricky.split())}  # runs of spaces folded
    nobody = json.loads(project.run("subscribers", "show", "nobody@example.org", "--json").stdout)
    assert nobody["name"] is None and nobody["attributes"] == {}
