"""Where kwsbench keeps things on disk, resolved in this one module: the data that ships with kwsbench
(noise definitions, published baselines, checkpoint manifests and the project's small weights), the
user's folders added beside it, the user homes and the default results store. Each location honours an
environment variable so tests and users can redirect it (README, "Environment variables")."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# An installed wheel carries the top-level data folders here (copied by setup.py at build time); a checkout
# (editable install or PYTHONPATH) has no _data and reads the top-level folders themselves, which users edit.
PACKAGED_DATA = Path(__file__).resolve().parent / "_data"
DATA_FOLDERS = ("noise", "baselines", "checkpoints")

STORE_ENV = "KWSBENCH_STORE"
NOISE_DIR_ENV = "KWSBENCH_NOISE_DIR"
BASELINES_ENV = "KWSBENCH_BASELINES"
MANIFESTS_ENV = "KWSBENCH_MANIFESTS"


def make_folder(path: Path, what: str) -> Path:
    """Create the folder `path` (and its parents) for `what` (e.g. "noise render --out x.wav"); one that cannot
    be made (under a file, no permission, read-only disk) is bad input, exit 5, naming it, not a traceback."""
    from kwsbench.errors import BadInputError

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInputError(f"{what}: cannot create the folder {path} ({err.strerror}); pass a path you can "
                            "write to") from err
    return path


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def packaged(folder: str) -> Path:
    """A data folder that ships with kwsbench ('noise', 'baselines' or 'checkpoints')."""
    if folder not in DATA_FOLDERS:
        raise ValueError(f"{folder!r} is not one of {DATA_FOLDERS}")
    installed = PACKAGED_DATA / folder
    return installed if installed.is_dir() else PROJECT_ROOT / folder


def user_noise_dir(explicit: str | Path | None = None) -> Path | None:
    """The user's noise folder (recordings and extra definitions): `--noise-dir`, else `KWSBENCH_NOISE_DIR`."""
    return Path(explicit).expanduser() if explicit is not None else _env_path(NOISE_DIR_ENV)


def user_baselines_dir() -> Path | None:
    """Extra published-result files beside the packaged ones: `KWSBENCH_BASELINES`."""
    return _env_path(BASELINES_ENV)


def user_manifests_dir() -> Path | None:
    """Extra checkpoint manifests beside the packaged ones, and where `train --publish` writes: `KWSBENCH_MANIFESTS`."""
    return _env_path(MANIFESTS_ENV)


DEFAULT_STORE = Path("runs") / "kwsbench.sqlite"  # relative: in the working directory


def default_store() -> Path:
    """The results store when none is named: `KWSBENCH_STORE`, else runs/kwsbench.sqlite in the working directory."""
    return _env_path(STORE_ENV) or DEFAULT_STORE


def cache_dir() -> Path:
    """Decoded clip sets, noise banks: `KWSBENCH_CACHE` or ~/.cache/kwsbench."""
    env = os.environ.get("KWSBENCH_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kwsbench"
    return base.expanduser()


def data_home() -> Path:
    """Downloaded and synthesised datasets: `KWSBENCH_DATA` or ~/.local/share/kwsbench/data."""
    env = os.environ.get("KWSBENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "kwsbench" / "data"


def checkpoint_home() -> Path:
    """Imported / fetched public checkpoints: `KWSBENCH_CHECKPOINTS` or ~/.local/share/kwsbench/checkpoints."""
    env = os.environ.get("KWSBENCH_CHECKPOINTS")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "kwsbench" / "checkpoints"


def shared_dir() -> Path:
    """The team's shared data folder (`KWSBENCH_SHARED`, default ../shared beside the checkout)."""
    env = os.environ.get("KWSBENCH_SHARED")
    return Path(env).expanduser() if env else PROJECT_ROOT.parent / "shared"
