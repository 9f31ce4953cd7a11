"""No test, and no code path a test takes, leaves ``os.environ`` changed: ``scoped_environ`` puts variables back,
and conftest's ``environment_unchanged`` fails (and repairs) any test that leaves a change behind."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import child_env, environ_changes
from wsrl.common.environ import scoped_environ


def test_scoped_environ_puts_back_what_the_body_and_its_libraries_wrote(monkeypatch):
    monkeypatch.setenv("WSRL_KEPT", "before")
    monkeypatch.delenv("WSRL_UNSET", raising=False)
    monkeypatch.delenv("WSRL_BY_LIBRARY", raising=False)
    with scoped_environ("WSRL_BY_LIBRARY", WSRL_KEPT="during", WSRL_UNSET="during"):
        assert os.environ["WSRL_KEPT"] == os.environ["WSRL_UNSET"] == "during"
        os.environ["WSRL_BY_LIBRARY"] = "written"  # what a library does behind the caller's back
        os.environ["WSRL_KEPT"] = "overwritten"
    assert os.environ["WSRL_KEPT"] == "before"
    assert "WSRL_UNSET" not in os.environ and "WSRL_BY_LIBRARY" not in os.environ
    with scoped_environ(WSRL_KEPT=None):
        assert "WSRL_KEPT" not in os.environ
    assert os.environ["WSRL_KEPT"] == "before"


def test_environ_changes_names_each_key():
    assert environ_changes({"A": "1", "B": "2"}, {"A": "1", "B": "3", "C": "x" * 80}) == [
        "B: '2' -> '3'", f"C: unset -> '{'x' * 57}...'"]
    assert environ_changes({"A": "1", "PYTEST_CURRENT_TEST": "t"}, {"A": "1"}) == []  # pytest's own


LEAKS = '''
import os

import pytest


@pytest.fixture(scope="module")
def wide():
    os.environ["WSRL_WIDE"] = "1"  # for the whole module, without putting it back
    yield


def test_leaves_a_variable():
    os.environ["WSRL_LEAK"] = "1"


def test_after_it_the_environment_is_clean():
    assert "WSRL_LEAK" not in os.environ


def test_monkeypatch_is_fine(monkeypatch):
    monkeypatch.setenv("WSRL_PATCHED", "1")


def test_under_a_wide_fixture(wide):
    pass


def test_after_the_wide_fixture(wide):
    assert "WSRL_WIDE" not in os.environ
'''


def test_a_test_that_leaves_the_environment_changed_fails_alone(tmp_path):
    """In a pytest session of its own, with this suite's conftest: the leaking test and the fixture that leaks are
    reported with the key; the environment is repaired, so the tests after them see none of it."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import environment_unchanged, "
                                          "pytest_collection_finish  # noqa: F401\n")
    (tmp_path / "test_leaks.py").write_text(LEAKS)
    env = {k: v for k, v in child_env().items() if k not in ("WSRL_LEAK", "WSRL_WIDE")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "the test left os.environ changed: WSRL_LEAK: unset -> '1'" in out, out
    assert "os.environ was changed before this test ran" in out and "WSRL_WIDE: unset -> '1'" in out, out
    for test in ("test_after_it_the_environment_is_clean", "test_monkeypatch_is_fine", "test_after_the_wide_fixture"):
        assert f"PASSED test_leaks.py::{test}" in out, out
    assert "ERROR test_leaks.py::test_leaves_a_variable" in out and "ERROR test_leaks.py::test_under_a_wide" in out
