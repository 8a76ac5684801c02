"""Every public name of keras_fip is on the API page (docs/api.md).

The public names are read from the package at run time: `keras_fip.__all__`
and, for each public module, its `__all__` or, without one, the classes
and functions defined in it that do not start with `_`. A name is on the
page when a `::: path` entry documents it (mkdocstrings renders a module
entry's public members too) or, for a constant (no docstring of its own),
when the page or the docstring of a module it renders names it.
"""

import importlib
import inspect
import pathlib
import re

import keras_fip

API_PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "api.md"
ENTRY = re.compile(r"^:::\s*(\S+)", re.M)


def _members(module):
    """A module's public names: its `__all__`, else what it defines."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name, value in vars(module).items()
                 if not name.startswith("_")
                 and (inspect.isclass(value) or inspect.isfunction(value))
                 and value.__module__ == module.__name__]
    return [name for name in names if not name.startswith("__")]


def public_names():
    """`{qualified name: object}` of keras_fip's public API."""
    found, pending, seen = {}, [keras_fip], set()
    while pending:
        module = pending.pop()
        if module.__name__ in seen:
            continue
        seen.add(module.__name__)
        for name in _members(module):
            value = getattr(module, name)
            if inspect.ismodule(value):
                if value.__name__.startswith("keras_fip."):
                    pending.append(value)
                continue
            found.setdefault(f"{module.__name__}.{name}", value)
    return found


def _load(path):
    """The object a `::: path` entry names."""
    try:
        return importlib.import_module(path)
    except ImportError:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)


def documented(text):
    """`(objects, modules)` the page's `:::` entries render."""
    objects, modules = [], []
    for path in ENTRY.findall(text):
        value = _load(path)
        if inspect.ismodule(value):
            modules.append(value)
            objects += [getattr(value, n) for n in _members(value)]
        else:
            objects.append(value)
    return objects, modules


def missing_from(text):
    objects, modules = documented(text)
    missing = []
    for qualified, value in public_names().items():
        if inspect.isclass(value) or inspect.isfunction(value):
            if not any(value is o for o in objects):
                missing.append(qualified)
        else:
            # A constant has no docstring of its own, so mkdocstrings shows
            # it only where a text names it: the page, or the docstring of
            # a module the page renders.
            name = qualified.rpartition(".")[2]
            texts = [text] + [inspect.getdoc(m) or "" for m in modules]
            if not any(re.search(rf"\b{name}\b", t) for t in texts):
                missing.append(qualified)
    return sorted(missing)


def test_every_api_page_entry_names_a_real_object():
    stale = []
    for path in ENTRY.findall(API_PAGE.read_text()):
        try:
            _load(path)
        except (ImportError, AttributeError) as error:
            stale.append(f"{path} ({error})")
    assert not stale, ("docs/api.md has `:::` entries for names that do not "
                       "exist (moved or renamed?): " + ", ".join(stale))


def test_every_public_name_is_on_the_api_page():
    missing = missing_from(API_PAGE.read_text())
    assert not missing, (
        f"{len(missing)} public names are not on docs/api.md; add a `::: "
        f"module.Name` entry (or the module's) for each: "
        + ", ".join(missing))


def test_the_check_finds_a_missing_name_and_accepts_a_module_entry():
    names = public_names()
    assert "keras_fip.fip_optimizer.FIPOptimizer" not in names
    assert "keras_fip.FIPOptimizer" in names
    assert "keras_fip.terms.Invariance" in names
    page = "::: keras_fip.fip_optimizer.FIPOptimizer\n::: keras_fip.terms\n"
    missing = missing_from(page)
    assert "keras_fip.FIPOptimizer" not in missing
    assert "keras_fip.terms.Invariance" not in missing
    assert "keras_fip.Memory" in missing
