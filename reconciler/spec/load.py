"""Reading spec files: YAML into plain values plus the FILE:LINE:COL of every key and value.

Built on PyYAML's composer (node marks); we only walk its node tree. The walk is where the safety
rules live: one document per file, a mapping at the top, no duplicate keys, only plain YAML tags,
and no aliases (so an alias bomb can never expand).
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from reconciler.errors import ReconcilerError, SpecIssue

# A path into a document: ("vms", 3, "vgpu", "instances").
SpecPath = tuple[str | int, ...]

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_MAP_TAG = _TAG + "map"
_SEQ_TAG = _TAG + "seq"
SPEC_SUFFIXES = (".yaml", ".yml")
_MAX_FILE_BYTES = 16 * 1024 * 1024   # a spec is text a person wrote; refuse anything absurd
_MAX_DEPTH = 32                      # a spec nests about 6 levels; deeper is junk (and recursion)


class SpecPathError(ReconcilerError):
    """A path given on the command line does not exist or holds no spec files."""


class Mark(NamedTuple):
    """A 1-based line and column. A tuple, not a dataclass: one is made per node, so it must be cheap."""

    line: int
    column: int


@dataclass
class SpecDocument:
    """One spec file: its plain data and where each key and value was written."""

    file: str                                   # as the user typed it
    path: Path                                  # the real file
    data: dict[str, Any]
    values: dict[SpecPath, Mark] = field(default_factory=dict)
    keys: dict[SpecPath, Mark] = field(default_factory=dict)

    def mark(self, path: SpecPath, prefer_key: bool = False) -> Mark:
        """Where `path` was written: its value (or key), else the nearest enclosing node."""
        while True:
            table = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            for marks in table:
                if path in marks:
                    return marks[path]
            if not path:
                return Mark(1, 1)
            path = path[:-1]

    def issue(self, path: SpecPath, message: str, prefer_key: bool = False) -> SpecIssue:
        m = self.mark(path, prefer_key)
        return SpecIssue(self.file, m.line, m.column, format_path(path), message)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]+")


def format_path(path: SpecPath) -> str:
    """("vms", 3, "vgpu") -> "vms[3].vgpu"; the empty path is the document itself."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


class _LoadFailed(Exception):
    def __init__(self, issue: SpecIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


def expand_paths(paths: Sequence[str], within: Path | None = None) -> list[tuple[str, Path]]:
    """Spec files named by PATHs, as (name as typed, real path); directories recursively, sorted.

    A folder's files stay inside it: a link that leads out of the folder (or out of `within`, the
    repository in git mode) or leads nowhere (dangling, a loop) is an error naming the link, and
    its target is never read. Hidden folders (.git, .github, lab state) are not walked: they hold
    other tools' YAML, never specs. A folder holds at most MAX_SPEC_FILES spec files.
    """
    found: list[tuple[str, Path]] = []
    for typed in paths:
        p = Path(typed).expanduser()
        if p.is_dir():
            boundary = (within or p).resolve()
            files = _spec_files(typed, p, boundary)
            if not files:
                raise SpecPathError(f"{typed}: no *.yaml or *.yml files in this directory")
            found.extend((os.path.join(typed, str(f.relative_to(p))), f) for f in files)
        elif p.is_file():
            if within is not None:
                _check_inside(typed, p, within.resolve())
            found.append((typed, p))
        elif p.is_symlink():
            raise SpecPathError(f"{typed}: a broken link (its target does not exist)")
        elif p.exists():
            raise SpecPathError(f"{typed}: not a regular file or directory")
        else:
            raise SpecPathError(f"{typed}: no such file or directory")
    # A file named twice (`specs specs/vms.yaml`) is one file, not a clash with itself.
    unique: dict[Path, tuple[str, Path]] = {}
    for typed, real in found:
        unique.setdefault(real.resolve(), (typed, real))
    return list(unique.values())


# A spec folder is written by people: thousands of files mean the path names the wrong folder.
MAX_SPEC_FILES = 5000


def _spec_files(typed: str, folder: Path, boundary: Path) -> list[Path]:
    files: list[Path] = []
    for root, dirs, names in os.walk(folder):
        # Pruned in place: os.walk then never enters hidden folders (nor follows linked ones).
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith(".") or not name.endswith(SPEC_SUFFIXES):
                continue
            path = Path(root) / name
            shown = os.path.join(typed, str(path.relative_to(folder)))
            _check_inside(shown, path, boundary)
            if not path.is_file():
                raise SpecPathError(f"{shown}: not a regular file")
            files.append(path)
            if len(files) > MAX_SPEC_FILES:
                raise SpecPathError(f"{typed}: more than {MAX_SPEC_FILES} spec files; name the "
                                    "folder that holds the specs")
    return sorted(files)


def _check_inside(shown: str, path: Path, boundary: Path) -> None:
    """Refuse a file whose real location is outside `boundary` (never reading it)."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise SpecPathError(f"{shown}: a broken link (its target does not exist or loops)") \
            from None
    if not real.is_relative_to(boundary):
        raise SpecPathError(f"{shown}: a link that leads out of {boundary}; spec files must "
                            "lie inside the spec folder (it was not read)")


def load_document(typed: str, path: Path) -> SpecDocument | SpecIssue:
    """Load one spec file; a file that cannot be read as a spec gives a located issue instead."""
    try:
        raw = _read(typed, path)
        text = _decode(typed, raw)
        return _compose(typed, path, text)
    except _LoadFailed as failed:
        return failed.issue


def _read(typed: str, path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_FILE_BYTES + 1)
    except OSError as err:
        raise _LoadFailed(SpecIssue(typed, 1, 1, "(document)",
                                    f"cannot read file: {err.strerror or err}")) from None
    if len(raw) > _MAX_FILE_BYTES:
        raise _LoadFailed(SpecIssue(typed, 1, 1, "(document)",
                                    f"file is larger than {_MAX_FILE_BYTES // (1024 * 1024)} MiB"))
    return raw


def _decode(typed: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        before = raw[:err.start]
        line = before.count(b"\n") + 1
        column = err.start - (before.rfind(b"\n") + 1) + 1
        raise _LoadFailed(SpecIssue(typed, line, column, "(document)",
                                    f"file is not UTF-8 text (byte 0x{raw[err.start]:02x})")) from None


def _compose(typed: str, path: Path, text: str) -> SpecDocument:
    loader = _Loader(text)
    try:
        root = loader.get_node() if loader.check_node() else None
        if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _TAG + "null"):
            # `---` alone (or `~`) is a document holding nothing, like an empty file
            raise _LoadFailed(SpecIssue(typed, 1, 1, "(document)",
                                        "file is empty (a spec needs at least apiVersion)"))
        if loader.check_node():
            second = loader.get_node()
            m = second.start_mark if second is not None else None
            raise _LoadFailed(SpecIssue(typed, (m.line + 1) if m else 1, (m.column + 1) if m else 1,
                                        "(document)", "only one YAML document per file "
                                        "(split this into separate files)"))
    except yaml.MarkedYAMLError as err:
        raise _LoadFailed(_syntax_issue(typed, err, text)) from None
    except yaml.YAMLError as err:   # ReaderError: a character YAML does not allow
        raise _LoadFailed(_reader_issue(typed, text, err)) from None
    except RecursionError:          # only the pure-Python composer recurses per nesting level
        raise _LoadFailed(SpecIssue(typed, 1, 1, "(document)",
                                    f"nested more than {_MAX_DEPTH} levels deep")) from None
    finally:
        loader.dispose()
    if not isinstance(root, yaml.MappingNode) or root.tag != _MAP_TAG:
        m = root.start_mark
        raise _LoadFailed(SpecIssue(typed, m.line + 1, m.column + 1, "(document)",
                                    f"a spec file must be a mapping of keys, not {_kind(root)}"))
    doc = SpecDocument(typed, path, {})
    walker = _Walker(doc, text)
    doc.data = walker.mapping(root, ())
    return doc


def _syntax_issue(typed: str, err: yaml.MarkedYAMLError, text: str) -> SpecIssue:
    mark = err.problem_mark or err.context_mark
    problem = err.problem or "invalid YAML"
    context = err.context or ""
    unclosed = _unclosed_flow(text) if ("flow" in context or "end of stream" in problem) else None
    if unclosed is not None:
        # The parser notices an unclosed bracket only at the end; point at where it was opened.
        mark, bracket = unclosed
        problem = f"'{bracket}' is not closed"
    elif "end of stream" in problem and err.context_mark is not None:
        mark = err.context_mark   # an unclosed quote: where it was opened
        what = context.removeprefix("while scanning a ")
        problem = f"this {what} is not closed"
    elif mark is not None and text[mark.index:mark.index + 1] == "\t":
        problem = "tab character: indent YAML with spaces"
    elif "block mapping" in context or "block collection" in context:
        problem = f"{problem} (check the indentation)"
    elif context:
        problem = f"{context}, {problem}"
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return SpecIssue(typed, line, column, "(document)", f"YAML syntax error: {problem}")


def _unclosed_flow(text: str) -> tuple[yaml.Mark, str] | None:
    """The innermost '[' or '{' still open where the text stops making sense, if any."""
    stack: list[tuple[yaml.Mark, str]] = []
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.FlowSequenceStartToken):
                stack.append((token.start_mark, "["))
            elif isinstance(token, yaml.FlowMappingStartToken):
                stack.append((token.start_mark, "{"))
            elif isinstance(token, (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)) and stack:
                stack.pop()
    except yaml.YAMLError:
        pass
    return stack[-1] if stack else None


def _reader_issue(typed: str, text: str, err: yaml.YAMLError) -> SpecIssue:
    position = getattr(err, "position", 0) or 0
    before = text[:position]
    line = before.count("\n") + 1
    column = position - (before.rfind("\n") + 1) + 1
    char = getattr(err, "character", None)
    if isinstance(char, int):
        char = chr(char)
    what = f"character {char!r}" if isinstance(char, str) else "a character"
    return SpecIssue(typed, line, column, "(document)", f"{what} is not allowed in YAML text")


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.ScalarNode):
        return "a single value"
    return "a tagged value"


class _Walker:
    """Turns a composed node tree into plain values, recording marks and enforcing the rules."""

    def __init__(self, doc: SpecDocument, text: str) -> None:
        self.doc = doc
        self.text = text
        self.seen: set[int] = set()
        self.constructor = yaml.SafeLoader("")

    def _mark(self, node: yaml.Node) -> Mark:
        return Mark(node.start_mark.line + 1, node.start_mark.column + 1)

    def _fail(self, node: yaml.Node, path: SpecPath, message: str) -> None:
        m = self._mark(node)
        raise _LoadFailed(SpecIssue(self.doc.file, m.line, m.column, format_path(path), message))

    def _enter(self, node: yaml.Node, path: SpecPath) -> None:
        # An alias hands back a node that is already in the tree: refuse before expanding anything.
        if id(node) in self.seen:
            line, column = self._first_alias()
            raise _LoadFailed(SpecIssue(self.doc.file, line, column, format_path(path),
                                        "YAML aliases (*name) are not supported: write the value "
                                        "out in full"))
        self.seen.add(id(node))

    def _first_alias(self) -> tuple[int, int]:
        try:
            for token in yaml.scan(self.text, Loader=yaml.SafeLoader):
                if isinstance(token, yaml.AliasToken):
                    return token.start_mark.line + 1, token.start_mark.column + 1
        except yaml.YAMLError:
            pass
        return 1, 1

    def value(self, node: yaml.Node, path: SpecPath) -> Any:
        if len(path) > _MAX_DEPTH:
            self._fail(node, path[:_MAX_DEPTH], f"nested more than {_MAX_DEPTH} levels deep")
        self.doc.values[path] = self._mark(node)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            self._enter(node, path)
            self._check_tag(node, path, _SEQ_TAG)
            return [self.value(item, path + (i,)) for i, item in enumerate(node.value)]
        self._enter(node, path)
        assert isinstance(node, yaml.ScalarNode)
        return self.scalar(node, path)

    def mapping(self, node: yaml.MappingNode, path: SpecPath) -> dict[str, Any]:
        self._enter(node, path)
        self.doc.values[path] = self._mark(node)
        self._check_tag(node, path, _MAP_TAG)
        out: dict[str, Any] = {}
        first_at: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            self._enter(key_node, path)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
                self._fail(key_node, path, "keys must be plain names")
            key = str(key_node.value)   # `1:` or `yes:` as a key is still a name
            kpath = path + (key,)
            if key in first_at:
                f = first_at[key]
                self._fail(key_node, kpath, f"duplicate key '{key}' (first given at "
                                            f"{self.doc.file}:{f.line}:{f.column})")
            first_at[key] = self._mark(key_node)
            self.doc.keys[kpath] = first_at[key]
            out[key] = self.value(value_node, kpath)
        return out

    def scalar(self, node: yaml.ScalarNode, path: SpecPath) -> Any:
        tag = node.tag
        if tag == _TAG + "str":
            return node.value
        if tag not in _SCALAR_TAGS:
            self._unsafe(node, path)
        if tag == _TAG + "timestamp":
            return node.value   # a date-like value is meant as text here
        try:
            return self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError):
            self._fail(node, path, f"'{node.value}' is not a valid {tag.removeprefix(_TAG)}")
        return None

    def _check_tag(self, node: yaml.Node, path: SpecPath, expected: str) -> None:
        if node.tag != expected:
            self._unsafe(node, path)

    def _unsafe(self, node: yaml.Node, path: SpecPath) -> None:
        tag = node.tag.replace(_TAG, "!!")
        self._fail(node, path, f"tag '{tag}' is not allowed: a spec holds only plain YAML "
                               "values (strings, numbers, booleans, lists, mappings)")


def load_documents(paths: Sequence[str], within: Path | None = None
                   ) -> Iterator[SpecDocument | SpecIssue]:
    """Every spec file under PATHs, loaded (or the issue that stopped it)."""
    for typed, real in expand_paths(paths, within):
        yield load_document(typed, real)
