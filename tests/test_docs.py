"""The docs keep up with the code, and the repository stands on its own.

- No file points outside the repository (the specs a clone does not have).
- Every config key of every section is in docs/operating.md's table, with
  its default.
- Every command the gateway answers is in docs/contract.md or
  docs/contract-social-web.md.
- Every error word the code can send is in one of them.

Each test reads the code, not a list kept here, so a new key, command or
error word fails the test until the docs name it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
import typing
from pathlib import Path

import attrs
import pytest

from kryten_likes import config as config_module
from kryten_likes.actors.gateway import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist",
             "data", "node_modules"}
# Spelled in two pieces so that this file does not match itself.
OUTSIDE = ("../" + "shared", "/work/" + "shared")


def _repo_files() -> list[Path]:
    """The repository's files: tracked and new ones (not ignored), by git;
    without git, every file outside the skipped folders."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        listed = None
    if listed is not None:
        paths = [ROOT / p for p in listed.decode("utf-8", "surrogateescape").split("\0") if p]
        return [p for p in paths if p.is_file()]
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT).parts
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel):
            continue
        if path.is_file():
            out.append(path)
    return out


def test_no_file_points_outside_the_repository():
    offenders = []
    for path in _repo_files():
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for n, line in enumerate(text.splitlines(), 1):
            if any(o in line for o in OUTSIDE):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "files point outside the repository (use docs/):\n" + "\n".join(offenders)


# --- configuration ---------------------------------------------------------


def _sections() -> list[tuple[str, type]]:
    hints = typing.get_type_hints(config_module.Config, vars(config_module))
    return [(f.name, hints[f.name]) for f in attrs.fields(config_module.Config)]


def _config_table() -> dict[tuple[str, str], str]:
    """``(section, key) -> default cell`` of every row of operating.md's tables."""
    rows = {}
    pattern = re.compile(r"^\|\s*`\[(\w+)\]\s+(\w+)`\s*\|\s*([^|]*?)\s*\|")
    for line in (DOCS / "operating.md").read_text(encoding="utf-8").splitlines():
        m = pattern.match(line)
        if m:
            rows[(m.group(1), m.group(2))] = m.group(3)
    return rows


def _same_default(cell: str, default: object) -> bool:
    if default is None:
        return cell == "unset"
    text = cell.strip("`")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return False
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default) and value == default
    if isinstance(default, tuple):
        return value == list(default)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and float(value) == default
    return type(value) is type(default) and value == default


def test_every_config_key_is_in_the_operating_table_with_its_default():
    table = _config_table()
    missing, wrong = [], []
    for section, cls in _sections():
        for f in attrs.fields(cls):
            default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default
            cell = table.get((section, f.name))
            if cell is None:
                missing.append(f"[{section}] {f.name}")
            elif not _same_default(cell, default):
                wrong.append(f"[{section}] {f.name}: docs say {cell!r}, the code {default!r}")
    assert not missing, "config keys missing from docs/operating.md: " + ", ".join(missing)
    assert not wrong, "defaults in docs/operating.md differ from the code:\n" + "\n".join(wrong)


def test_the_operating_table_names_no_key_the_code_lacks():
    known = {(section, f.name) for section, cls in _sections() for f in attrs.fields(cls)}
    stale = sorted(set(_config_table()) - known)
    assert not stale, f"docs/operating.md documents keys the config does not have: {stale}"


# --- the wire contract ----------------------------------------------------------


def _contract() -> str:
    return "\n".join((DOCS / n).read_text(encoding="utf-8") for n in ("contract.md", "contract-social-web.md"))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_contract(command):
    assert f"`{command}`" in _contract(), f"{command} is answered but not in docs/contract.md"


def _error_words() -> dict[str, list[str]]:
    """Every literal error word passed to ``wire.error`` (or ``error`` imported
    from wire) anywhere in the package: word -> where."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "kryten_likes").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        from_wire = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                     and (node.module or "").endswith("wire") for a in node.names if a.name == "error"}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            is_wire_error = (isinstance(f, ast.Attribute) and f.attr == "error"
                             and isinstance(f.value, ast.Name) and f.value.id == "wire") \
                or (isinstance(f, ast.Name) and f.id in from_wire)
            if not is_wire_error:
                continue
            word = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "word"), None)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(word, ast.Constant) and isinstance(word.value, str):
                found.setdefault(word.value, []).append(where)
            else:
                found.setdefault(f"<not a literal at {where}>", []).append(where)
    return found


def test_the_code_sends_error_words():
    # The scan itself works: these are sent today.
    assert {"invalid_request", "rate_limited", "no_current_item", "internal_error"} <= set(_error_words())


def test_every_error_word_the_code_sends_is_in_the_contract():
    text = _contract()
    missing = {w: where for w, where in _error_words().items() if f"`{w}`" not in text}
    assert not missing, f"error words sent but not in docs/contract.md: {missing}"


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a file's headings: lower case, punctuation
    dropped (``-`` and ``_`` kept), spaces as ``-``."""
    out, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#{1,6}\s+(.*)", line)
        if m:
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_the_docs_links_lead_somewhere():
    """Every link between the docs (and from the README into them) names a
    file that exists and, with ``#``, a heading it has."""
    sources = [DOCS / n for n in ("contract.md", "contract-social-web.md", "kv-schema.md", "design.md",
                                  "operating.md")]
    broken = []
    for source in [*sources, ROOT / "README.md"]:
        text = source.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(((?:docs/)?[\w.-]*\.md)?(?:#([^)\s]+))?\)", text):
            if not target and not anchor:
                continue
            path = source if not target else (source.parent / target)
            if target and source.parent == DOCS and target.startswith("docs/"):
                path = ROOT / target
            if not path.is_file():
                broken.append(f"{source.name}: {target} does not exist")
            elif anchor and anchor not in _anchors(path.read_text(encoding="utf-8")):
                broken.append(f"{source.name}: {target or source.name} has no heading #{anchor}")
    assert not broken, "broken links:\n" + "\n".join(broken)
