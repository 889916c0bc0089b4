"""Progress display (rich): one bar per step with fold, epoch, loss and validation metric.

``quiet=True`` shows nothing (errors still surface as exceptions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    """Bars and notes for a training run.

    Args:
        console: where to draw (default: stderr).
        quiet: draw nothing.
    """

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=self.console, transient=False,
        )

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A bar over ``total`` items; yields ``advance(done)`` (absolute count)."""
        if self.quiet or total == 0:
            yield lambda done: None
            return
        with self._progress() as bar:
            task = bar.add_task(description, total=total)
            yield lambda done: bar.update(task, completed=done)

    @contextmanager
    def fold(self, k: int, epochs: int, steps: int) -> Iterator[Callable[[dict[str, Any]], None] | None]:
        """A bar over a fold's training steps; yields the callback for :func:`training.loop.fit`."""
        if self.quiet:
            yield None
            return
        with self._progress() as bar:
            task = bar.add_task(f"fold {k} epoch 1/{epochs}", total=steps)
            last: dict[str, str] = {"metric": ""}

            def callback(event: dict[str, Any]) -> None:
                if event["event"] == "batch":
                    bar.update(task, advance=1, description=(
                        f"fold {k} epoch {event['epoch'] + 1}/{epochs} loss {event['loss']:.4f}{last['metric']}"))
                else:
                    metric = next(((n, v) for n, v in event.items() if n.startswith("val_") and n != "val_loss"), None)
                    last["metric"] = f" val_loss {event['val_loss']:.4f}" + (f" {metric[0]} {metric[1]:.3f}" if metric else "")
                    bar.update(task, description=f"fold {k} epoch {event['epoch']}/{epochs}{last['metric']}")

            yield callback
            bar.update(task, total=bar.tasks[0].completed)  # early stopping ends a fold before its last step

    def note(self, text: str) -> None:
        """A one-line message."""
        if not self.quiet:
            self.console.print(text, highlight=False)

    def status(self, text: str):
        """A spinner while something without steps runs."""
        return nullcontext() if self.quiet else self.console.status(text)
