"""The calls the README and the guides show match the real signatures.

Each inline code span that parses as a call of a keras_fip name
(`FIPOptimizer(inner_optimizer, beta=0.3)`, `callbacks.TaskBoundary(...)`)
and each call of `keras_fip.<name>` in a Python code block is checked:
every keyword must be a parameter. In the first cell of a table (an API
table writes signatures there) a bare positional name must be the
parameter at that position, and a literal default (`beta=0.3`) must be
the signature's default.
"""

import ast
import inspect
import pathlib
import re

import keras_fip

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The pages a newcomer reads first: the README, the home page, the guides.
PAGES = ["README.md", "docs/index.md",
         *sorted(str(p.relative_to(ROOT))
                 for p in (ROOT / "docs" / "guides").glob("*.md"))]
SPAN = re.compile(r"`([^`\n]+)`")
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _dotted(node):
    """`a.b.c` of a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _public_modules():
    return [getattr(keras_fip, n) for n in keras_fip.__all__
            if inspect.ismodule(getattr(keras_fip, n))]


def _resolve(dotted):
    """The keras_fip object `dotted` names (`keras_fip.X`, `X`, `mod.X`, or a
    bare class name exported by one public module), else None."""
    parts = dotted.split(".")
    if parts[0] == "keras_fip":
        parts = parts[1:]
    roots = [keras_fip]
    if len(parts) == 1 and parts[0][:1].isupper():
        # A bare class name (`Invariance(...)`); a bare lower-case name is
        # more likely a method (`project(old, new, step)`) than a function.
        roots += _public_modules()
    found = []
    for root in roots:
        obj = root
        for part in parts:
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and callable(obj) and obj not in found:
            found.append(obj)
    return found[0] if len(found) == 1 else None


def _accepted_keywords(obj, dotted):
    """Parameter names `obj` takes by keyword; with `**kwargs`, also those of
    the classes it forwards to (its own MRO, or its class's for a
    classmethod such as `FIPOptimizer.reference_code`)."""
    signature = inspect.signature(obj)
    names = {p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        owner = obj if inspect.isclass(obj) else getattr(obj, "__self__",
                                                         None)
        for cls in getattr(owner, "__mro__", ()):
            if "__init__" in vars(cls):
                names |= set(inspect.signature(cls.__init__).parameters)
    return names


def _check_call(call, obj, dotted, where, as_signature):
    problems = []
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return problems
    params = [p for p in signature.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    accepted = _accepted_keywords(obj, dotted)
    for keyword in call.keywords:
        if keyword.arg is None:
            continue
        if keyword.arg not in accepted:
            problems.append(f"{where}: {dotted}(...) has no parameter "
                            f"{keyword.arg!r}; its signature is {signature}")
            continue
        if not as_signature or keyword.arg not in signature.parameters:
            continue
        try:
            shown = ast.literal_eval(keyword.value)
        except ValueError:
            continue
        if shown is Ellipsis or (isinstance(shown, (list, tuple))
                                 and Ellipsis in shown):
            continue
        default = signature.parameters[keyword.arg].default
        if default is not inspect.Parameter.empty and shown != default:
            problems.append(
                f"{where}: {dotted}(... {keyword.arg}={shown!r}) but the "
                f"default is {default!r}")
    if as_signature:
        for i, arg in enumerate(call.args):
            if not isinstance(arg, ast.Name):
                continue
            if i >= len(params) or params[i].name != arg.id:
                expected = params[i].name if i < len(params) else "nothing"
                problems.append(
                    f"{where}: {dotted}(...) argument {i + 1} is written "
                    f"{arg.id!r}; the parameter there is {expected!r} "
                    f"(signature {signature})")
    return problems


def _calls(source):
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _check_page(path, page):
    text = path.read_text()
    problems, checked = [], []
    for block in CODE_BLOCK.findall(text):
        for call in _calls(block):
            dotted = _dotted(call.func)
            if not dotted or not dotted.startswith("keras_fip."):
                continue
            obj = _resolve(dotted)
            if obj is not None:
                checked.append(dotted)
                problems += _check_call(call, obj, dotted, page, False)
    for number, line in enumerate(text.splitlines(), 1):
        first_cell = (line.split("|")[1] if line.startswith("|")
                      and line.count("|") > 2 else "")
        for span in SPAN.findall(line):
            for call in _calls(span):
                dotted = _dotted(call.func)
                obj = dotted and _resolve(dotted)
                if obj is None:
                    continue
                checked.append(dotted)
                problems += _check_call(
                    call, obj, dotted, f"{page}:{number}",
                    as_signature=f"`{span}`" in first_cell)
    return problems, checked


def test_calls_shown_in_the_readme_and_guides_match_the_signatures():
    problems, checked = [], []
    for page in PAGES:
        page_problems, page_checked = _check_page(ROOT / page, page)
        problems += page_problems
        checked += page_checked
    assert not problems, "\n".join(problems)
    # The check reads what it should: the README's API table's rows.
    assert {"FIPOptimizer", "ContinualOptimizer", "Memory",
            "callbacks.TaskBoundary"} <= set(checked)


def test_the_check_catches_a_wrong_name_a_wrong_default_and_a_typo(
        tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "| piece | job |\n|---|---|\n"
        "| `FIPOptimizer(inner, beta=0.5)` | x |\n\n"
        "Prose: `keras_fip.Memory(capacty=10)`.\n")
    problems, _ = _check_page(page, "page.md")
    text = "\n".join(problems)
    assert "argument 1 is written 'inner'" in text
    assert "beta=0.5) but the default is 10.0" in text
    assert "no parameter 'capacty'" in text

