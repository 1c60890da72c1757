"""Progress on long work: a rich bar on a terminal (not under CI), plain lines otherwise."""

from __future__ import annotations

import os
import sys


class Progress:
    """A rich progress bar on a terminal (not under CI), plain lines otherwise."""

    def __init__(self, total: int, enabled: bool = True):
        self.total = total
        self.done = 0
        self.enabled = enabled
        self._rich = None
        if enabled and sys.stderr.isatty() and not os.environ.get("CI"):
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), transient=False)
            self._task = self._rich.add_task("cells", total=total, speed="")
            self._rich.start()

    def cell(self, model: str, condition: str, status: str, clips_per_s: float | None) -> None:
        self.done += 1
        speed = f"{clips_per_s:,.0f} clips/s" if clips_per_s else ""
        if self._rich is not None:
            self._rich.update(self._task, advance=1, description=f"{model} | {condition}", speed=speed)
        elif self.enabled:
            print(f"[{self.done}/{self.total}] {model} | {condition} | {status} {speed}", file=sys.stderr,
                  flush=True)

    def note(self, text: str) -> None:
        if self._rich is not None:
            self._rich.console.print(text, highlight=False)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
