"""Class-name lists: bundled vocabularies (config/vocabularies/*.txt) and user files.

A file must look like a vocabulary, or it is refused with its name and the rule it broke, never its
content (an operator's typo must not turn into a log of some other file): UTF-8, at most 1 MiB, one
name per line (blank lines and ``#`` comments skipped), each a class name by ``config.name_problem``,
at most ``config.MAX_CLASSES`` of them, no duplicates.
"""
from __future__ import annotations

from pathlib import Path

from sam_ovseg_ros.core.config import MAX_CLASSES, ConfigError, name_problem, validate_classes

MAX_FILE_BYTES = 1 << 20

BUNDLED = ("ade20k_150", "coco_stuff_171", "scannet_200")


def _search_dirs() -> list[Path]:
    dirs = [Path(__file__).resolve().parents[2] / "config" / "vocabularies"]  # source checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("sam_ovseg_ros")) / "config" / "vocabularies")
    except Exception:  # not a ROS install, or the package is not in the index
        pass
    return dirs


def resolve(name_or_path: str) -> Path:
    """A bundled list's file ("ade20k_150") or a path to a file with one name per line."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if name_or_path in BUNDLED:
        return bundled(name_or_path)
    raise FileNotFoundError(f"vocabulary '{name_or_path}' is neither a file nor one of the bundled {list(BUNDLED)}")


def bundled(name: str) -> Path:
    """The file of a bundled list; never a path from outside the package."""
    if name in BUNDLED:
        for d in _search_dirs():
            cand = d / f"{name}.txt"
            if cand.is_file():
                return cand
    raise FileNotFoundError(f"'{name}' is not one of the bundled vocabularies {list(BUNDLED)}")


def load(name_or_path: str) -> list[str]:
    """Names in file order (see the module docstring for the rules); ValueError names the file and the rule."""
    return read_names(resolve(name_or_path))


def load_bundled(name: str) -> list[str]:
    return read_names(bundled(name))


def read_names(path: Path) -> list[str]:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is not a vocabulary: {size} bytes, at most {MAX_FILE_BYTES}")
    with open(path, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a vocabulary: not UTF-8 text") from None
    names = []
    for i, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        why = name_problem(name)
        if why:
            raise ValueError(f"{path} is not a vocabulary: line {i} has {why}" if why.startswith("a ")
                             else f"{path} is not a vocabulary: line {i} is {why}")
        names.append(name)
        if len(names) > MAX_CLASSES:
            raise ValueError(f"{path} is not a vocabulary: more than {MAX_CLASSES} names")
    try:
        return validate_classes(names)
    except ConfigError as exc:
        raise ValueError(f"{path} is not a vocabulary: {exc}") from None


MAX_QUERY_CHARS = 256


def query_problem(text: str) -> str | None:
    """Why a map query's text is refused (None: fine): empty, longer than MAX_QUERY_CHARS, or with control
    characters. The text itself is never echoed back, as with a vocabulary file's content."""
    import unicodedata

    if not text.strip():
        return "the text is empty"
    if len(text) > MAX_QUERY_CHARS:
        return f"the text has {len(text)} characters, at most {MAX_QUERY_CHARS} are taken"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in text):
        return "the text holds control or unassigned characters"
    return None
