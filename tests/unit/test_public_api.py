"""The package's top level exports every manager, record and exception a user holds."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from typing import Protocol

import sessionward
from sessionward import errors

# The modules whose public classes a user meets: each one must be exported at the top.
PUBLIC_MODULES = [
    "sessionward.auth.manager",
    "sessionward.budgets",
    "sessionward.clock",
    "sessionward.errors",
    "sessionward.jobs.kinds",
    "sessionward.jobs.manager",
    "sessionward.jobs.worker",
    "sessionward.limits.limiter",
    "sessionward.limits.policy",
    "sessionward.rate_policy",
    "sessionward.sessions",
    "sessionward.state",
    "sessionward.users",
    "sessionward.ward",
]
# Public by name but not for users: internals of one manager.
NOT_EXPORTED = {"DirectLimiter", "NoParams"}
MANAGERS = ["Auth", "Budgets", "Jobs", "RateLimiter", "Sessions", "StateManager", "Users", "Ward"]


def _public_classes(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    return {
        name
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and value.__module__ == module_name
        and not name.startswith("_")
        and Protocol not in value.__mro__[1:]
        and name not in NOT_EXPORTED
    }


def _package_modules() -> list[str]:
    found = pkgutil.walk_packages(sessionward.__path__, "sessionward.")
    # ``__main__`` runs the CLI when imported.
    return [m.name for m in found if not m.name.endswith("__main__")]


def test_all_is_sorted_and_unique() -> None:
    assert sessionward.__all__ == sorted(set(sessionward.__all__))


def test_every_name_in_all_resolves() -> None:
    for name in sessionward.__all__:
        assert getattr(sessionward, name) is not None, name


def test_every_public_class_of_the_public_modules_is_exported() -> None:
    missing = {
        f"{module}.{name}"
        for module in PUBLIC_MODULES
        for name in _public_classes(module)
        if name not in sessionward.__all__
    }
    assert not missing


def test_every_manager_is_exported() -> None:
    assert set(MANAGERS) <= set(sessionward.__all__)


def test_every_exception_in_the_package_is_exported() -> None:
    missing = set()
    for module_name in _package_modules():
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, errors.SessionwardError)
                and value.__module__ == module_name
                and not name.startswith("_")
                and getattr(sessionward, name, None) is not value
            ):
                missing.add(f"{module_name}.{name}")
    assert not missing


def test_every_exception_lives_in_errors() -> None:
    strays = set()
    for module_name in _package_modules():
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, errors.SessionwardError)
                and value.__module__ == module_name != errors.__name__
            ):
                strays.add(f"{module_name}.{name}")
    assert not strays


def _drawn_tree() -> dict[str, str]:
    """Each class in the ``errors`` docstring's tree, with the class drawn as its parent."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"^\s*(?P<lead>[│├└─\s]*)(?P<name>[A-Z]\w+)", line)
        if found is None or not (found["lead"].strip() or found["name"] == "SessionwardError"):
            continue
        depth = len(found["lead"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[found["name"]] = stack[-1][1]
        stack.append((depth, found["name"]))
    return parents


def test_the_tree_in_the_errors_docstring_matches_the_code() -> None:
    drawn = _drawn_tree()
    defined = {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, errors.SessionwardError)
        and not name.startswith("_")
        and name != "SessionwardError"
    }
    assert set(drawn) == set(defined)
    for name, parent in drawn.items():
        assert issubclass(defined[name], getattr(errors, parent)), (name, parent)
