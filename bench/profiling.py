"""Optional pyinstrument profiles of the ledger's side of a benchmark."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def profiled(directory: Path | None, name: str) -> Iterator[None]:
    """Profile the block into directory/name.txt and .html, if directory is set."""
    if directory is None:
        yield
        return
    from pyinstrument import Profiler  # noqa: PLC0415 (in the bench extra)

    directory.mkdir(parents=True, exist_ok=True)
    profiler = Profiler(interval=0.001)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        (directory / f"{name}.txt").write_text(
            profiler.output_text(unicode=False, color=False, show_all=False)
        )
        profiler.write_html(directory / f"{name}.html")
