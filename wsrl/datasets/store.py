"""The local Minari store: where datasets live, reading them (their episodes, their metadata, their content hash)
and writing them atomically (built in a scratch root beside the target, then renamed into place). The one place
that reads a Minari dataset and the one place that points Minari at another root."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

KEYS = ("observations", "actions", "rewards", "terminations", "truncations")
Episodes = dict[str, list[np.ndarray]]  # per-episode arrays under KEYS; observations carry the final one
HASH_KEY = "wsrl_content_hash"  # the metadata entry holding ``content_hash`` of a dataset wsrl wrote
URL_LABELS = ("repository", "source", "sourcecode", "code", "homepage")  # [project.urls] names code_permalink takes


class DatasetError(RuntimeError):
    """A dataset that is missing or unusable; the one-line message names it and the command that fixes it."""


def datasets_root() -> Path:
    """Minari's local root: ``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))


def exists_locally(dataset_id: str) -> bool:
    return (datasets_root() / dataset_id / "data" / "metadata.json").exists()


@contextlib.contextmanager
def scratch_root(prefix: str) -> Iterator[Path]:
    """Point Minari at a new temporary root inside the current one (same filesystem, a name Minari ignores) for the
    duration, then restore ``MINARI_DATASETS_PATH`` and remove the scratch root with whatever is left in it."""
    root = datasets_root()
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(scratch)
    try:
        yield scratch
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = before
        shutil.rmtree(scratch, ignore_errors=True)


def read_metadata(dataset_id: str) -> dict:
    """A local dataset's Minari metadata (``metadata.json``: its sizes, spaces as JSON strings, reference scores)."""
    return json.loads((datasets_root() / dataset_id / "data" / "metadata.json").read_text())


def read_episodes(dataset_id: str) -> Episodes:
    """Every episode of a local dataset as per-episode arrays. Minari's own errors (a damaged file, missing
    fields) pass through: each reader says what they mean for it."""
    import minari

    out: Episodes = {k: [] for k in KEYS}
    for ep in minari.load_dataset(dataset_id).iterate_episodes():
        for k in KEYS:
            out[k].append(np.asarray(getattr(ep, k)))
    return out


def content_hash(episodes: Episodes) -> str:
    """A fingerprint of the episodes' arrays: the first 16 hex digits of the SHA-256 of each array's shape and
    values (as float64, or bool for the flags: exact for the dtypes datasets are stored in), key by key, episode by
    episode. Equal data give equal hashes on any machine; a dataset generated elsewhere, whose numbers differ in
    the last digits, gives another."""
    digest = hashlib.sha256()
    for key in KEYS:
        dtype = "u1" if key in ("terminations", "truncations") else "<f8"
        for array in episodes[key]:
            values = np.asarray(array).astype(bool) if dtype == "u1" else np.asarray(array)
            digest.update(str(values.shape).encode())
            digest.update(np.ascontiguousarray(values, dtype=dtype).tobytes())
    return digest.hexdigest()[:16]


def dataset_hash(dataset_id: str, episodes: Episodes) -> str:
    """The content hash of a local dataset: the one recorded in its metadata when wsrl wrote it (``write_dataset``),
    else computed from ``episodes``, its arrays as read (a dataset made by other tools or before hashes)."""
    return read_metadata(dataset_id).get(HASH_KEY) or content_hash(episodes)


def code_permalink() -> str | None:
    """The project's repository, from its package metadata (``[project.urls]`` in pyproject.toml, the first of
    ``URL_LABELS``); None where it names none: datasets then carry no ``code_permalink`` rather than an invented
    one."""
    from importlib import metadata

    try:
        urls = metadata.metadata("wsrl").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    named = {label.replace(" ", "").lower(): url.strip() for label, _, url in (u.partition(",") for u in urls)}
    return next((named[label] for label in URL_LABELS if label in named), None)


def concat_episodes(parts: list[Episodes]) -> Episodes:
    """The episodes of ``parts``, one after another."""
    return {k: [ep for part in parts for ep in part[k]] for k in KEYS}


def write_dataset(dataset_id: str, episodes: list, overwrite: bool = False, **metadata) -> str:
    """Write ``episodes`` (Minari EpisodeBuffers) as ``dataset_id``: whole or not at all.

    ``metadata`` goes to ``minari.create_dataset_from_buffers`` (env, eval_env, ref scores, description...), with
    the project's ``code_permalink`` where its package metadata names one and the episodes' ``content_hash``
    (under ``HASH_KEY``). An existing dataset is replaced only with ``overwrite=True``; an interrupted write leaves
    only a scratch directory whose name Minari ignores, removed on the way out.
    """
    import minari

    target = datasets_root() / dataset_id
    if exists_locally(dataset_id) and not overwrite:
        raise DatasetError(f"{dataset_id} already exists in {datasets_root()}; pass --overwrite to replace it")
    fingerprint = content_hash({k: [getattr(ep, k) for ep in episodes] for k in KEYS})
    permalink = code_permalink()
    try:
        with scratch_root(".wsrl-build-") as scratch:
            with warnings.catch_warnings():  # left out on purpose where the project names no repository
                warnings.filterwarnings("ignore", message="`code_permalink` is set to None")
                made = minari.create_dataset_from_buffers(dataset_id, buffer=episodes, author="wsrl",
                                                          code_permalink=permalink, **metadata)
            made.storage.update_metadata({HASH_KEY: fingerprint})
            _publish(scratch / dataset_id, target, dataset_id)
    except OSError as err:  # disk full, read-only root: the scratch copy is gone, an existing dataset untouched
        reason = err.strerror or str(err).splitlines()[0] or type(err).__name__
        raise DatasetError(f"cannot write {dataset_id} ({err.filename or target}): {reason}; nothing was written and "
                           "an existing dataset is kept: free some space or fix the permissions, then retry") from err
    return dataset_id


def _publish(built: Path, target: Path, dataset_id: str) -> None:
    """Rename the finished dataset into place, replacing an existing one only once the new one is whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for parent in reversed(Path(dataset_id).parents[:-1]):  # Minari expects namespace metadata files
        meta = datasets_root() / parent / "namespace_metadata.json"
        if not meta.exists():
            meta.write_text(json.dumps({}))
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(built, target)
        shutil.rmtree(old)
    else:
        os.replace(built, target)


def episode_buffers(observations: list[np.ndarray], actions: list[np.ndarray], rewards: list[np.ndarray],
                    terminations: list[np.ndarray], truncations: list[np.ndarray]) -> list:
    """Minari EpisodeBuffers from per-episode arrays (observations have one more row than actions)."""
    from minari.data_collector import EpisodeBuffer

    return [EpisodeBuffer(id=i, observations=o, actions=a, rewards=r.tolist(), terminations=te.tolist(),
                          truncations=tr.tolist())
            for i, (o, a, r, te, tr) in enumerate(zip(observations, actions, rewards, terminations, truncations,
                                                       strict=True))]
