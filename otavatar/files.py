"""Files in and out: reading without running code, writing atomically, never over an input.

Every ``torch.save`` file the project reads (checkpoints, exported models, avatars, assets) goes
through :func:`load_torch_file`; NVIDIA's EG3D ``.pkl`` goes through the restricted unpickler of
:mod:`otavatar.checkpoints`. Checkpoints and pretrained assets load their weights through
:func:`load_state_dict_checked`, which names each missing, unexpected or misshapen key. Every output
is written by :func:`atomic_write` after :func:`check_outputs` has made sure it replaces no input.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from otavatar.errors import FileFormatError, InputError, MissingInputError

# Beyond tensors and plain containers, the project's own files hold one thing: the numpy arrays of
# the RNG states in training checkpoints (np.random.get_state(): a uint32 array).
NUMPY_RNG_GLOBALS = (np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType)
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")


def load_torch_file(path: str | Path, what: str, error: type[FileFormatError] = FileFormatError) -> Any:
    """Read a ``torch.save`` file to the CPU with ``weights_only=True``: nothing in it can run.

    Args:
        what: what the file should be, with its article (``'a checkpoint'``), for the messages.
        error: the error raised for an unreadable or refused file (a :class:`FileFormatError`).

    Raises:
        MissingInputError: no such file.
        error: truncated or not a torch file, or refused because it asks to import something other than
            tensors and plain containers; the message names the file and that global.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: file does not exist (expected {what})")
    try:
        with torch.serialization.safe_globals(list(NUMPY_RNG_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as failure:
        refused = _REFUSED_GLOBAL.search(str(failure)) if isinstance(failure, pickle.UnpicklingError) else None
        if refused:
            raise error(
                f"{path}: refused: loading it would import {refused.group(1) or refused.group(2)}, which is not part of {what}; "
                "otavatar loads only tensors, numbers, strings and containers (torch.load weights_only=True), so nothing in the file ran"
            ) from failure
        raise error(f"{path}: cannot be read as {what} ({type(failure).__name__}: {_reason(failure)}); the file is truncated or another format") from failure


def load_torch_bytes(data: bytes) -> Any:
    """A ``torch.save`` blob held inside another file (EG3D pickles store their tensors so), read as
    :func:`load_torch_file` reads files: ``weights_only=True``, to the CPU."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def state_dict_mismatches(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], unexpected: bool = True) -> list[str]:
    """Keys of ``expected`` missing from ``found`` or of another shape, then (``unexpected``) keys of ``found``
    that ``expected`` lacks, each as ``key: expected … found …``."""
    problems = [f"{key}: missing (expected shape {tuple(value.shape)})" for key, value in expected.items() if key not in found]
    problems += [
        f"{key}: expected shape {tuple(value.shape)}, found {tuple(found[key].shape)}"
        for key, value in expected.items()
        if key in found and tuple(found[key].shape) != tuple(value.shape)
    ]
    if unexpected:
        problems += [f"{key}: unexpected key (shape {tuple(value.shape)})" for key, value in found.items() if key not in expected]
    return problems


def load_state_dict_checked(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    error: type[FileFormatError],
    context: str,
    key_map: Mapping[str, str] | None = None,
    ignore_unexpected: bool = False,
    optional_suffixes: tuple[str, ...] = (),
) -> None:
    """Load ``state_dict`` into ``module`` after checking every key and shape (:func:`state_dict_mismatches`).

    Args:
        error: raised, with ``context`` (which file, which network) and one line per problem (at most 20).
        key_map: the ``state_dict`` key of each of ``module``'s keys where they differ (default: the same names).
        ignore_unexpected: ``state_dict`` keys the module does not use are allowed (e.g. a classifier).
        optional_suffixes: module keys ending so may be absent (batch norm's ``num_batches_tracked`` in files
            saved before it existed); they keep their values.
    """
    own = module.state_dict()
    names = {key: (key_map or {}).get(key, key) for key in own}
    names = {key: name for key, name in names.items() if not (key.endswith(optional_suffixes) and name not in state_dict)}
    problems = state_dict_mismatches({name: own[key] for key, name in names.items()}, state_dict, unexpected=not ignore_unexpected)
    if problems:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise error(f"{context}:\n  " + "\n  ".join(problems[:20]) + more)
    # Checked above: only the optional keys left out can be missing.
    module.load_state_dict({key: state_dict[name] for key, name in names.items()}, strict=len(names) == len(own))


def _reason(error: BaseException) -> str:
    """The first sentence of what went wrong (torch's messages go on with advice for other situations)."""
    text = str(error).split("WeightsUnpickler error:")[-1]
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line.split(". ")[0]


def check_outputs(
    inputs: Mapping[str, str | Path | None],
    files: Mapping[str, str | Path | None] | None = None,
    folders: Mapping[str, str | Path | None] | None = None,
    make_folders: bool = False,
) -> None:
    """Refuse, before any work, outputs that would replace an input or each other.

    Args:
        inputs: every path the command reads, by how the user named it (``{'--portrait': 'me.png'}``).
        files: output files by name: each must not be a folder, and its folder must exist and be writable.
        folders: output folders (created when missing): each must not be a file.
        make_folders: the writer creates the missing folders of ``files``: then their nearest existing
            ancestor must be a writable folder.
        No output may be an input or another output (same path, or a link to it), or lie inside an input folder.

    Raises:
        InputError: naming the output, the input it would replace and what to do.
    """
    read = {label: Path(path) for label, path in inputs.items() if path is not None}
    written: dict[str, Path] = {}
    for label, path in {**(folders or {}), **(files or {})}.items():
        if path is None:
            continue
        path = Path(path)
        if folders and label in folders:
            if path.exists() and not path.is_dir():
                raise InputError(f"{label} {path}: is a file; expected a folder to write into")
            parent = next(p for p in (path, *path.parents) if p.exists())
        else:
            if path.is_dir():
                raise InputError(f"{label} {path}: is a folder; give the path of a file to write")
            parent = path.parent
            if make_folders:
                parent = next(p for p in (parent, *parent.parents) if p.exists())
            if parent.exists() and not parent.is_dir():
                raise InputError(f"{label} {path}: {parent} is a file, not a folder; choose another output path")
            if not parent.is_dir():
                raise MissingInputError(f"{label} {path}: the folder {parent} does not exist; create it or choose another output path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(f"{label} {path}: the folder {parent} is not writable; choose another output path")
        for other_label, other in {**read, **written}.items():
            if _same_file(path, other):
                raise InputError(f"{label} {path} is also {other_label} {other}: writing it would destroy that file; choose another output path")
        for other_label, other in read.items():
            if other.is_dir() and other.resolve() in path.resolve().parents:
                raise InputError(f"{label} {path} lies inside the folder {other_label} {other}, which is read; choose another output path")
        written[label] = path


def _same_file(a: Path, b: Path) -> bool:
    """The same path after resolving links, or two names (hard links) of one existing file."""
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def replace_marked_block(path: Path, markers: tuple[str, str], text: str) -> None:
    """Replace what lies between the two ``markers`` lines of a text file (a generated table in the README) with ``text``, atomically."""
    start, end = markers
    content = path.read_text()
    if start not in content or end not in content:
        raise InputError(f"{path} has no {start} … {end} block to replace")
    block = f"{start}\n{text}{end}"
    atomic_write_text(path, re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, content, flags=re.S))
