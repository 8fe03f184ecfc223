import pytest

from newsletter.collect.authors import author_key, split_byline, unique_names


@pytest.mark.parametrize(
    ("byline", "names"),
    [
        ("Asami Terajima", ["Asami Terajima"]),
        ("Asami Terajima and Illia Ponomarenko", ["Asami Terajima", "Illia Ponomarenko"]),
        ("By A. Smith, B. Jones & C. Lee", ["A. Smith", "B. Jones", "C. Lee"]),
        ("Written by: Alexander Query", ["Alexander Query"]),
        ("Sandra  Anderson", ["Sandra Anderson"]),
        ("https://facebook.com/someone", []),
    ],
)
def test_bylines_become_names(byline: str, names: list[str]) -> None:
    assert split_byline(byline) == names


def test_matching_ignores_case_and_runs_of_spaces() -> None:
    assert author_key("  asami   TERAJIMA ") == author_key("Asami Terajima")


def test_unique_names_keeps_first_spelling_and_order() -> None:
    assert unique_names(["Asami Terajima", "asami terajima and Martin Fornusek"]) == [
        "Asami Terajima",
        "Martin Fornusek",
    ]
