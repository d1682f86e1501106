"""The one progress helper of the library: a rich bar, a user's callback, or nothing.

Every sampler that runs long (planes, lines, training, jump and retrain) reports through
:func:`progress_bar`, so the three forms of its ``progress`` argument mean the same everywhere.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Union

Progress = Union[bool, Callable[[int, int], None], None]

# The stage the last progress bar counted, and how far it got: what an interrupted command says
# was done (``{"stage": "plane 41x41", "done": 492, "total": 1681}``; empty before any bar).
LAST: dict = {}


def _counting(advance: Callable[[int], None], total: int, description: str) -> Callable[[int], None]:
    LAST.clear()
    LAST.update(stage=description, done=0, total=total)

    def counted(n: int = 1) -> None:
        LAST["done"] += n
        advance(n)

    return counted


@contextlib.contextmanager
def progress_bar(progress: Progress, total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A context that yields ``advance(n)``, to be called as ``n`` more units of work finish.

    Parameters
    ----------
    progress : bool or callable
        ``True``: a rich progress bar (``rich`` is imported only then); a callable: called as
        ``progress(done, total)`` after every advance (it may raise to stop the work, which is how
        tests interrupt a run); ``False`` or ``None``: nothing.
    total : int
        Units of work in all.
    description : str
        The bar's label.

    Examples
    --------
    >>> with progress_bar(lambda done, total: print(done, total), 3, "demo") as advance:
    ...     advance(2)
    ...     advance(1)
    2 3
    3 3
    """
    if progress is True:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), transient=False,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield _counting(lambda n=1: bar.advance(task, n), total, description)
        return
    if callable(progress):
        done = 0

        def advance(n: int = 1) -> None:
            nonlocal done
            done += n
            progress(done, total)

        yield _counting(advance, total, description)
        return
    yield _counting(lambda n=1: None, total, description)
