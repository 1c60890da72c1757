"""Progress on long work: a rich bar on a terminal (not under CI), plain lines otherwise."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

# a cell that has run this long shows its own progress (clips done), at most every PLAIN_EVERY_S as plain lines
WITHIN_AFTER_S = 3.0
PLAIN_EVERY_S = 5.0


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

    def within(self, model: str, condition: str, clips: int) -> Callable[[int], None]:
        """A callback for one cell's batches (clips done so far): silent for the first WITHIN_AFTER_S seconds,
        then a second bar (terminal) or a line every PLAIN_EVERY_S seconds, so a slow cell never looks hung."""
        start = time.perf_counter()
        state = {"task": None, "printed": start}

        def on_batch(done: int) -> None:
            now = time.perf_counter()
            if not self.enabled or now - start < WITHIN_AFTER_S:
                return
            rate = done / (now - start)
            left = (clips - done) / rate if rate > 0 else 0.0
            if self._rich is not None:
                if state["task"] is None:
                    state["task"] = self._rich.add_task(f"  {model} | {condition}", total=clips, speed="")
                self._rich.update(state["task"], completed=done, speed=f"{rate:,.0f} clips/s")
                if done >= clips:
                    self._rich.remove_task(state["task"])
            elif now - state["printed"] >= PLAIN_EVERY_S or (done >= clips and state["printed"] > start):
                state["printed"] = now
                print(f"  ... {model} | {condition}: {done:,}/{clips:,} clips, {rate:,.0f} clips/s, "
                      f"~{left:.0f} s left", file=sys.stderr, flush=True)

        return on_batch

    def note(self, text: str) -> None:
        if self._rich is not None:
            self._rich.console.print(text, highlight=False)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
