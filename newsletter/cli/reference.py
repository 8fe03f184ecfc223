"""`python -m newsletter.cli.reference > docs/cli.md`: the CLI reference from --help."""

import typer.main

from newsletter.cli import app
from newsletter.cli.help import reference


def main() -> None:
    print(reference(typer.main.get_command(app)), end="")


if __name__ == "__main__":
    main()
