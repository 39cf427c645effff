"""Progress of long work, reported the same way everywhere.

On a terminal (``sys.stderr.isatty()``) :func:`progress` shows a tqdm bar on stderr. Anywhere
else (a file, a pipe, a notebook) it logs a plain line now and then to the ``camkit.progress``
logger at INFO level: when another 10 % is done (and at least :data:`MIN_INTERVAL` seconds have
passed since the last line), or every :data:`MAX_INTERVAL` seconds, and a last line at the end
if any line was written. The library never prints: the ``camkit`` command line shows these
lines on stderr by setting that logger to INFO; in your own code they appear once logging is
configured (``logging.basicConfig(level=logging.INFO)``).

Example:
    >>> for batch in progress(batches, desc="explain", unit="batch"):
    ...     work(batch)
    >>> with progress(total=len(methods), desc="evaluate", unit="method") as bar:
    ...     for method in methods:
    ...         work(method)
    ...         bar.update()
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator

__all__ = ["MAX_INTERVAL", "MIN_INTERVAL", "STEP", "Progress", "progress"]

log = logging.getLogger("camkit.progress")

STEP = 0.1  # a plain line at every further tenth of the work …
MIN_INTERVAL = 1.0  # … but not more often than this (seconds): short work stays quiet …
MAX_INTERVAL = 30.0  # … and at least this often while work goes on (seconds)


class Progress:
    """A tqdm bar on a terminal, plain log lines elsewhere, nothing when disabled.

    Use it as an iterable wrapper, or call :meth:`update` yourself; :meth:`close` (or leaving
    the ``with`` block) ends it. A run that ends with an exception writes no final line.
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        enabled: bool | None = None,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.count = 0
        self.enabled = enabled is not False
        self._bar = None
        if self.enabled and (enabled or sys.stderr.isatty()):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc or None, unit=unit, file=sys.stderr, leave=False
            )
        self._started = self._last = time.monotonic()
        self._steps_logged = 0  # the steps of STEP done at the last line
        self._lines = 0
        self._closed = False
        self._postfix = ""

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("progress(total=…) without an iterable: call update() instead")
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled:
            now = time.monotonic()
            since = now - self._last
            steps = int(self.count / self.total / STEP + 1e-9) if self.total else 0
            if (steps > self._steps_logged and since >= MIN_INTERVAL) or since >= MAX_INTERVAL:
                self._line(now)
                self._steps_logged = steps

    def set_postfix(self, **values) -> None:
        """Figures shown after the count (``loss=0.41``): on the bar, and in the plain lines."""
        self._postfix = ", ".join(f"{key} {value}" for key, value in values.items())
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = now - self._started
        done = f"{self.count}/{self.total}" if self.total else f"{self.count}"
        share = f" ({self.count / self.total:.0%})" if self.total and not final else ""
        when = f"done in {elapsed:.1f} s" if final else f"{elapsed:.0f} s"
        extra = f", {self._postfix}" if self._postfix else ""
        log.info("%s: %s %s%s, %s%s", self.desc or "progress", done, self.unit, share, when, extra)
        self._last = now
        self._lines += 1

    def close(self) -> None:
        """End the bar; a final plain line if any line was written before."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self._lines:
            self._line(time.monotonic(), final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
            return
        self._closed = True  # no final line after a failure
        if self._bar is not None:
            self._bar.close()


def progress(
    iterable: Iterable | None = None,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool | None = None,
) -> Progress:
    """Report the progress of long work (see the module docstring).

    Args:
        iterable: items to wrap (optional; else call ``update``).
        total: how many units in all (default ``len(iterable)`` where it has one).
        desc, unit: what is counted, e.g. ``desc="evaluate", unit="method"``.
        enabled: ``None`` (default): a bar on a terminal, plain lines elsewhere; ``True``: a bar
            always; ``False``: nothing.
    """
    return Progress(iterable, total, desc, unit, enabled)
