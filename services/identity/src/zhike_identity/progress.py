"""Progress bars for `resolve-csv`, drawn by rich on stderr: only on a terminal and only when
asked (`--no-progress` turns them off), so files and pipes never receive control characters."""

from __future__ import annotations

from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)


class StageProgress:
    """One bar per stage; call it with (stage, done, total), the resolver's progress callback.
    Use it as a context manager: the bars are drawn from entry until exit."""

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        console = Console(file=stream)
        self.enabled = enabled and console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not self.enabled,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StageProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(task, completed=done, total=total)
