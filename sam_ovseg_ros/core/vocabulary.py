"""Class-name lists: bundled vocabularies (config/vocabularies/*.txt) and user files."""
from __future__ import annotations

from pathlib import Path

from sam_ovseg_ros.core.config import validate_classes

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
        for d in _search_dirs():
            cand = d / f"{name_or_path}.txt"
            if cand.is_file():
                return cand
    raise FileNotFoundError(f"vocabulary '{name_or_path}' is neither a file nor one of the bundled {list(BUNDLED)}")


def load(name_or_path: str) -> list[str]:
    """Names in file order; blank lines and '#' comments are skipped; validated (unique, non-empty)."""
    lines = resolve(name_or_path).read_text(encoding="utf-8").splitlines()
    return validate_classes([ln for ln in (l.strip() for l in lines) if ln and not ln.startswith("#")])
