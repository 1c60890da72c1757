"""User-facing errors and the documented exit codes.

Every mistake a user can make ends in a `KwsbenchError`: the CLI prints its message (what was
wrong, where, what to do) and exits with its code, never with a traceback.
"""

from __future__ import annotations

# Documented in the README ("Exit codes"); keep the two in sync.
EXIT_OK = 0
EXIT_FAILED = 1  # the job ran but something failed: a failed cell, a DEVIATES verdict
EXIT_USAGE = 2  # bad command line or a missing optional dependency
EXIT_CHECKPOINT = 3  # checkpoint missing, wrong sha256, wrong keys, unsafe file
EXIT_DATASET = 4  # dataset directory missing or of no known layout
EXIT_BAD_INPUT = 5  # bad audio file, bad YAML / plan, unknown model or noise name
EXIT_STORE = 6  # results store corrupt or of another schema version
EXIT_DOWNLOAD = 7  # a download failed or did not verify
EXIT_NO_STORE = 8  # no results store at the path looked at (nothing was run into it yet)
EXIT_INCONCLUSIVE = 9  # reproduce judged no row: no published row was comparable with the data measured
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); cells already stored are kept


class KwsbenchError(Exception):
    """An error a user can act on; `exit_code` is one of the EXIT_* codes above."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class DatasetError(KwsbenchError):
    exit_code = EXIT_DATASET


class BadInputError(KwsbenchError):
    exit_code = EXIT_BAD_INPUT


class CheckpointError(KwsbenchError):
    exit_code = EXIT_CHECKPOINT


class StoreError(KwsbenchError):
    exit_code = EXIT_STORE


class StoreMissingError(KwsbenchError):
    exit_code = EXIT_NO_STORE


class DownloadError(KwsbenchError):
    exit_code = EXIT_DOWNLOAD


class MissingDependencyError(KwsbenchError):
    exit_code = EXIT_USAGE
