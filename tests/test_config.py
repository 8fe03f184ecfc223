"""`newsletter init` and configuration validation."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import load_config
from newsletter.errors import ConfigError

runner = CliRunner()
INIT = [
    "init",
    "news",
    "--name",
    "War Notes",
    "--timezone",
    "Europe/Kyiv",
    "--from",
    "War Notes <notes@example.org>",
    "--base-url",
    "https://news.example.org/",
]


def test_init_writes_a_valid_commented_config_and_creates_the_database(tmp_path: Path) -> None:
    result = runner.invoke(app, INIT)
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "news" / "newsletter.toml")
    assert (config.name, str(config.timezone)) == ("War Notes", "Europe/Kyiv")
    assert config.base_url == "https://news.example.org"
    assert config.database_url == f"sqlite:///{(tmp_path / 'news' / 'newsletter.db').resolve()}"
    assert (tmp_path / "news" / "newsletter.db").is_file()
    assert "# IANA time zone" in (tmp_path / "news" / "newsletter.toml").read_text()
    again = runner.invoke(app, INIT)
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert runner.invoke(app, [*INIT, "--force"]).exit_code == 0


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--timezone", "Europe/Kiev2", "unknown time zone 'Europe/Kiev2'"),
        ("--base-url", "news.example.org", "bad base URL"),
        ("--from", "not an address", "bad From address"),
        ("--name", " ", "--name is empty"),
    ],
)
def test_init_refuses_bad_values_and_writes_nothing(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    args = list(INIT)
    args[args.index(option) + 1] = value
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "news").exists()


def test_init_without_directory_writes_where_config_points(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "news.toml"
    result = runner.invoke(app, ["--config", str(target), "init", "--timezone", "UTC"])
    assert result.exit_code == 0, result.output
    assert target.is_file() and (tmp_path / "elsewhere" / "newsletter.db").is_file()


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(
        '[newsletter]\nname = "N"\nfrom = "a@example.org"\nbase_url = "https://e.org"\n' + body
    )
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('timezone = "Mars/Olympus"\n', "unknown time zone"),
        ("nmae = 'typo'\n", "unknown key 'nmae' in [newsletter]"),
        ('[[sources]]\nkind = "video"\nlocation = "x"\n', "kind 'video' must be one of"),
        ('[[sources]]\nkind = "text"\nlocation = "x.txt"\n', "is a saved text: give it url"),
        (
            '[[sources]]\nname = "a"\nkind = "feed"\nlocation = "x"\n'
            '[[sources]]\nname = "a"\nkind = "feed"\nlocation = "y"\n',
            "two [[sources]] are named 'a'",
        ),
        ("[collect]\ntimeout = -1\n", "timeout must be a positive number"),
        ("= broken toml", "invalid TOML"),
    ],
)
def test_bad_config_files_name_the_file_and_the_key(
    tmp_path: Path, body: str, message: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_environment_overrides_the_database(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///relative.db"\n')
    assert load_config(path, {}).database_url == f"sqlite:///{tmp_path.resolve() / 'relative.db'}"
    override = {"NEWSLETTER_DATABASE_URL": "postgresql+psycopg://db.example/news"}
    assert load_config(path, override).database_url == "postgresql+psycopg://db.example/news"


def test_missing_config_is_a_usage_error_with_the_fix(tmp_path: Path) -> None:
    result = runner.invoke(app, ["articles", "list"])
    assert result.exit_code == 2
    assert f"no newsletter.toml in {tmp_path} or any folder above it" in result.stderr
    assert "run 'newsletter init DIR'" in result.stderr


def test_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    write(tmp_path, "")
    env = {"NEWSLETTER_DATABASE_URL": "postgresql+psycopg://user:s3cret@127.0.0.1:9/none"}
    result = runner.invoke(app, ["articles", "list"], env=env)
    assert result.exit_code == 2
    assert "cannot open database" in result.stderr and "s3cret" not in result.output
    assert result.stderr.count("\n") == 1


def test_commands_find_the_config_from_any_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    made = runner.invoke(app, ["init", "news", "--name", "War Notes"])
    assert made.exit_code == 0, made.output
    deep = tmp_path / "news" / "issues" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    found = runner.invoke(app, ["subscribers", "count", "--json"])
    assert found.exit_code == 0, found.output
    # --config and NEWSLETTER_CONFIG still win over the search.
    other = runner.invoke(app, ["init", str(tmp_path / "other"), "--name", "Other"])
    assert other.exit_code == 0, other.output
    runner.invoke(app, ["--config", str(tmp_path / "other/newsletter.toml"), "subscribers",
                        "add", "olena@example.org"])  # fmt: skip
    assert json.loads(runner.invoke(app, ["subscribers", "count", "--json"]).stdout)["active"] == 0
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(tmp_path / "other/newsletter.toml"))
    assert json.loads(runner.invoke(app, ["subscribers", "count", "--json"]).stdout)["active"] == 1
    # init in a subfolder of a newsletter makes a new one there, not over the parent's.
    monkeypatch.delenv("NEWSLETTER_CONFIG")
    nested = runner.invoke(app, ["init", "--name", "Nested"])
    assert nested.exit_code == 0 and (deep / "newsletter.toml").is_file()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[collect]\ntimeout = true\n", "[collect] timeout must be a positive number"),
        ("[collect]\nmax_bytes = 'big'\n", "[collect] max_bytes must be a positive number"),
        ("[collect]\nretries = 3\n", "unknown key 'retries' in [collect] (expected one of"),
        ("[tracker]\nclicks = true\n", "unknown key 'tracker' in the top level"),
        ('[tracking]\nclicks = "yes please"\n', "[tracking] clicks must be true or false"),
        ("[delivery]\nretry_hours = 0\n", "[delivery] retry_hours must be a positive number"),
        ("[delivery]\ndkim_selector = 's1'\n", "[delivery] DKIM needs both"),
        ("[render]\ntemplates = 'nowhere'\n", "[render] templates: folder"),
        ("[database]\nurl = ''\n", "[database] url must be a non-empty string"),
        ("^database = 3\n", "[database] must be a table"),
        ("^sources = 'x'\n", "'sources' must be an array of tables"),
        (
            '[[sources]]\nkind = "feed"\nlocation = "x"\n[[sources]]\nkind = "feed"\n',
            '[[sources]] #2 needs location = "..."',
        ),
        (
            '[[sources]]\nkind = "text"\nlocation = "x"\nurl = "https://e.org/a"\n'
            'published = "someday"\n',
            "[[sources]] #1 published 'someday' is not an ISO 8601 date",
        ),
    ],
)
def test_each_kind_of_mistake_is_one_line_naming_table_key_and_fix(
    tmp_path: Path, body: str, message: str
) -> None:
    path = write(tmp_path, "" if body.startswith("^") else body)
    if body.startswith("^"):  # a top-level key: before the first table
        path.write_text(body[1:] + path.read_text())
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value) and "pydantic" not in str(caught.value)


@pytest.mark.parametrize(
    ("newsletter", "message"),
    [
        ('name = 3\nfrom = "a@example.org"\nbase_url = "https://e.org"\n', "name must be a"),
        ('name = "N"\nbase_url = "https://e.org"\n', '[newsletter] needs from = "..."'),
        ('name = "N"\nfrom = "a@example.org"\nbase_url = "e.org"\n', "base_url: bad base URL"),
        (
            'name = "N"\nfrom = "a@example.org"\nbase_url = "https://e.org"\nid = "War Notes"\n',
            "id 'War Notes': use a-z, 0-9 and -",
        ),
        (
            'name = "N"\nfrom = "a@example.org"\nbase_url = "https://e.org"\nauthors = "A"\n',
            'authors must be a list of names: authors = ["A", "B"]',
        ),
    ],
)
def test_newsletter_table_mistakes(tmp_path: Path, newsletter: str, message: str) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text("[newsletter]\n" + newsletter)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)


def test_the_starter_config_documents_exactly_the_models_keys() -> None:
    """Every key of every table is in the file `init` writes (set or commented out), and
    the file names no key the model does not have."""
    from newsletter.config import ConfigFile, starter_config

    text = starter_config(
        name="N", timezone="UTC", sender="a@example.org", base_url="https://e.org"
    )
    documented: dict[str, set[str]] = {}
    table = ""
    for line in text.splitlines():
        bare = line.removeprefix("# ").strip()
        if bare.startswith("[[") and bare.endswith("]]"):
            table = bare.strip("[]")
        elif bare.startswith("[") and bare.endswith("]"):
            table = bare.strip("[]")
        elif table and re.match(r"^[a-z][a-z0-9_]* = ", bare):
            documented.setdefault(table, set()).add(bare.split(" = ")[0])
    expected = {
        name: {f.alias or key for key, f in field.annotation.model_fields.items()}  # type: ignore[union-attr]
        for name, field in ConfigFile.model_fields.items()
        if name != "sources"
    }
    expected["sources"] = {
        f.alias or key
        for key, f in ConfigFile.model_fields["sources"].annotation.__args__[0].model_fields.items()  # type: ignore[union-attr]
    }
    assert documented == expected


def test_the_starter_configs_values_are_the_models_defaults() -> None:
    """A key the starter file sets (not one `init` fills in from its arguments, nor an
    example left commented) has the value the model would take without it: the file
    documents the defaults, and cannot drift from them."""
    import tomllib

    from newsletter.config import ConfigFile, starter_config

    text = starter_config(
        name="N", timezone="UTC", sender="a@example.org", base_url="https://e.org"
    )
    data = tomllib.loads(text)
    filled = {("newsletter", key) for key in ("id", "name", "timezone", "from", "base_url")}
    filled.add(("database", "url"))  # a file beside the config: the model's is no file
    checked = 0
    for table, values in data.items():
        model = ConfigFile.model_fields[table].annotation
        fields = {f.alias or name: f for name, f in model.model_fields.items()}  # type: ignore[union-attr]
        for key, value in values.items():
            if (table, key) in filled:
                continue
            assert fields[key].default == value, (table, key, value, fields[key].default)
            checked += 1
    assert checked >= 15


def test_every_environment_variable_is_read_through_config_and_documented() -> None:
    from newsletter.config import ENVIRONMENT

    root = Path(__file__).resolve().parent.parent
    used = {
        name
        for path in (root / "newsletter").rglob("*.py")
        for name in re.findall(r"\bNEWSLETTER_[A-Z_]+[A-Z]\b", path.read_text())
    }
    assert used <= set(ENVIRONMENT), used - set(ENVIRONMENT)
    documented = (root / "docs" / "configuration.md").read_text()
    assert all(f"`{name}`" in documented for name in ENVIRONMENT)
    direct = [
        str(path)
        for path in (root / "newsletter").rglob("*.py")
        if path.name != "config.py"
        and re.search(r"(environ|env)(\.get\(|\[)\"NEWSLETTER_", path.read_text())
    ]
    assert direct == []


def test_a_table_key_without_its_config_field_stops_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key added to [delivery] once validated and then reached nothing."""
    from pydantic import create_model

    from newsletter import config

    grown = create_model("Grown", __base__=config.DeliverySettings, new_knob=(int, 1))
    monkeypatch.setattr(config, "_FLAT_TABLES", (*config._FLAT_TABLES[:2], grown))
    with pytest.raises(TypeError, match="new_knob"):
        config._flat_keys()
