from __future__ import annotations

from pathlib import Path

import pytest

from registry.secret_refs import UnresolvedSecret, describe, resolve, resolves

SECRET = "sk-test-DO-NOT-SHOW-4f1c9a"


def test_it_resolves_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOS_TEST_SECRET", SECRET)
    assert resolve("env:FOS_TEST_SECRET") == SECRET
    assert resolves("env:FOS_TEST_SECRET") is True
    assert describe("env:FOS_TEST_SECRET") == "resolves"


@pytest.mark.parametrize("value", [None, ""])
def test_it_reports_an_unset_or_empty_environment_variable(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("FOS_TEST_SECRET", raising=False)
    else:
        monkeypatch.setenv("FOS_TEST_SECRET", value)
    assert resolves("env:FOS_TEST_SECRET") is False
    assert describe("env:FOS_TEST_SECRET") == "does not resolve: environment variable FOS_TEST_SECRET is not set"
    with pytest.raises(UnresolvedSecret, match="FOS_TEST_SECRET is not set"):
        resolve("env:FOS_TEST_SECRET")


def test_it_resolves_a_file_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "openai.key"
    path.write_text(SECRET + "\n", encoding="utf-8")
    assert resolve(f"file:{path}") == SECRET
    assert resolves(f"file:{path}") is True
    assert describe(f"file:{path}") == "resolves"


def test_it_reports_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    assert resolves(f"file:{path}") is False
    assert describe(f"file:{path}") == f"does not resolve: file {path} does not exist"


def test_it_reports_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.key"
    path.write_text("\n", encoding="utf-8")
    assert resolves(f"file:{path}") is False
    assert describe(f"file:{path}") == f"does not resolve: file {path} is empty"


def test_it_reports_a_file_it_cannot_read(tmp_path: Path) -> None:
    assert describe(f"file:{tmp_path}") == f"does not resolve: file {tmp_path} cannot be read (IsADirectoryError)"


@pytest.mark.parametrize("ref", ["env:", "file:relative.key", SECRET])
def test_it_reports_what_is_not_a_reference_without_repeating_it(ref: str) -> None:
    assert resolves(ref) is False
    # A key pasted where the reference belongs must not come back out on a page.
    assert describe(ref) == "does not resolve: not a secret reference (env:NAME or file:/absolute/path)"
    with pytest.raises(UnresolvedSecret) as excinfo:
        resolve(ref)
    assert SECRET not in str(excinfo.value)


def test_it_describes_no_reference_as_none() -> None:
    assert describe("") == "none"
    assert resolves("") is False


def test_it_never_puts_the_value_in_a_description_or_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FOS_TEST_SECRET", SECRET)
    path = tmp_path / "key"
    path.write_text(SECRET, encoding="utf-8")
    for ref in ("env:FOS_TEST_SECRET", f"file:{path}"):
        assert SECRET not in describe(ref)
