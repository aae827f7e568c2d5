"""What `minicomp grade` is given: the notebooks in a class's folders, a name for each student,
the exercises each notebook should have, student folders with no notebook, and identical files.

No notebook is run here, and nothing is imported that needs torch or Jupyter; `grader` runs them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

_CHECK_CALL = re.compile(r"""\bcheck\(\s*\\?["']([A-Za-z_][A-Za-z0-9_]*)\\?["']""")


def _check_paths(paths) -> list:
    """`paths` as a list of str / PathLike: one path alone is a list of one."""
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    if not isinstance(paths, Iterable) or isinstance(paths, (bytes, dict)):
        raise TypeError(f"paths must be a list of notebooks or folders, got {type(paths).__name__} {paths!r:.80}")
    paths = list(paths)
    for p in paths:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"paths must hold file or folder names (str or Path), got {type(p).__name__} {p!r:.80}")
    return paths


def find_notebooks(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The ``.ipynb`` files named in ``paths``; a folder stands for the notebooks inside it."""
    return list(_find(paths))


def _files_in(folder: Path) -> list[Path]:
    """Every file under `folder`, sorted, following links to folders (a class folder may link each
    student's folder from elsewhere; pathlib's rglob does not follow them before Python 3.13), each
    folder once (a link back up cannot loop), leaving out hidden folders (.ipynb_checkpoints, .git,
    .venv) and __pycache__."""
    files, seen = [], set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")   # .git, .venv, checkpoints
        files += [Path(top) / n for n in names if os.path.isfile(os.path.join(top, n))]
    return sorted(files)


def _find(paths) -> dict[Path, Path | None]:
    """Each notebook in `paths`, in order, with the folder of `paths` it was found in (None for a
    notebook named itself). A notebook named twice (a folder and a file in it) is graded once, and
    named as found in its folder."""
    paths = _check_paths(paths)
    found: list[tuple[Path, Path | None]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found += [(q, path) for q in _files_in(path) if q.suffix == ".ipynb"]
        elif path.is_file():
            if path.suffix != ".ipynb":
                raise ValueError(f"path={str(p)!r} is not a notebook; expected a .ipynb file or a folder")
            found.append((path, None))
        else:
            raise ValueError(f"path={str(p)!r} does not exist; expected a .ipynb file or a folder")
    unique: dict[Path, tuple[Path, Path | None]] = {}
    for path, root in found:
        if unique.get(path.resolve(), (None, None))[1] is None:   # the first, unless it was named alone
            unique[path.resolve()] = (path, root)
    return dict(unique.values())


def folders_without_notebooks(paths: Iterable[str | os.PathLike]) -> dict[Path, list[str]]:
    """The folders of `paths` that hold no notebook at any depth, and, in a folder of `paths` laid
    out as one folder per student (notebooks in some of its folders, none beside them), the folders
    that hold none (a student who handed in a .py or a .zip); each with the names of up to five of
    its files, so that they get a row, instead of looking like students who handed in nothing.
    (Beside notebooks, a folder is their data.)"""
    empty: dict[Path, list[str]] = {}
    for p in _check_paths(paths):
        if not Path(p).is_dir():
            continue
        held = _files_in(Path(p))
        if not any(f.suffix == ".ipynb" for f in held):   # a folder named on its own, with no notebook
            empty[Path(p)] = [str(f.relative_to(p)) for f in held][:5]
            continue
        if any(Path(p).glob("*.ipynb")):
            continue
        folders = [f for f in sorted(Path(p).iterdir()) if f.is_dir() and not f.name.startswith(".")
                   and f.name != "__pycache__"]
        files = {f: _files_in(f) for f in folders}
        lacking = {f: held for f, held in files.items() if not any(g.suffix == ".ipynb" for g in held)}
        if len(lacking) < len(folders):   # some student folders do hold notebooks
            empty |= {f: [str(g.relative_to(f)) for g in held][:5] for f, held in lacking.items()}
    return empty


def expected_exercises(source: str) -> list[str]:
    """Exercise names in the ``check("name", ...)`` calls of ``source``, in order, without repeats.

    ``source`` may be a notebook's JSON text or its code; broken JSON is fine.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a notebook's text (str), got {type(source).__name__}; read it with "
                        "Path(notebook).read_text()")
    names: list[str] = []
    for name in _CHECK_CALL.findall(source):
        if name not in names:
            names.append(name)
    return names


def course_exercises(stem: str) -> list[str]:
    """The exercises that the course's own ``exercises/<stem>.py`` checks ([] if there is none,
    or no course folder), so that a submission whose check cell was deleted still gets its row."""
    from minicomp.course import repo_root

    try:
        source = repo_root() / "exercises" / f"{stem}.py"
        return expected_exercises(source.read_text(encoding="utf-8")) if source.is_file() else []
    except (OSError, ValueError):   # FileNotFoundError (no course folder) is an OSError
        return []


def student_names(notebooks: Sequence[Path], roots: Sequence[Path | None] | None = None) -> dict[Path, str]:
    """A name for each notebook: its file name without .ipynb, with its folders below the folder it
    was found in (`roots`, one per notebook or None: jane/untitled for class/jane/untitled.ipynb,
    class/ being graded) in front, and as many more as it takes to tell it from the others
    (alice/04_affine_map, bob/04_affine_map)."""
    # absolute, but links not followed: a student's folder may be a link to elsewhere
    paths = [Path(os.path.abspath(nb)) for nb in notebooks]
    depth = {p: 0 for p in paths}
    for p, root in zip(paths, roots or [None] * len(paths), strict=True):
        if root is not None and Path(os.path.abspath(root)) in p.parents:
            depth[p] = len(p.relative_to(os.path.abspath(root)).parts) - 1

    def name(p: Path) -> str:
        return "/".join([*p.parent.parts[len(p.parent.parts) - depth[p]:], p.stem]) if depth[p] else p.stem

    while True:
        seen: dict[str, list[Path]] = {}
        for p in paths:
            seen.setdefault(name(p), []).append(p)
        clashes = [p for group in seen.values() if len(group) > 1 for p in group if depth[p] < len(p.parent.parts)]
        if not clashes:
            return {nb: name(p) for nb, p in zip(notebooks, paths, strict=True)}
        for p in clashes:
            depth[p] += 1


def identical_files(paths: Sequence[Path], ignore: Iterable[str] = ()) -> list[list[Path]]:
    """Groups of two or more of `paths` with the same bytes (a copied submission, or one handed in
    twice), in the order of `paths`. Empty files are not compared (each has its own row already),
    nor files whose sha256 is in `ignore` (the course's own notebooks, handed in untouched)."""
    ignore = set(ignore)
    groups: dict[str, list[Path]] = {}
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        digest = hashlib.sha256(data).hexdigest()
        if data and digest not in ignore:
            groups.setdefault(digest, []).append(Path(path))
    return [group for group in groups.values() if len(group) > 1]
