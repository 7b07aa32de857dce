"""Progress of long loops: a tqdm bar on a terminal, a few ``logging`` lines everywhere else.

A bar redraws itself with carriage returns, which a terminal shows as one line and a log file keeps as
hundreds (101 redraws for a 4-second evaluation). So :func:`progress` looks at ``sys.stderr`` when the
loop starts: a terminal gets the tqdm bar; a file, a pipe or a workflow's log gets an INFO line each
time the loop passes another ``every_percent`` of its total (at most one per ``min_interval``), or
``every_seconds`` went by without a line, and one line when it finishes (so a loop logs at most about
``100 / every_percent + duration / every_seconds + 1`` lines)::

    INFO descbench.evaluate.extract: describe (sift): 40% (2,000/5,000 patch), 1,250 patch/s, elapsed 1.6 s, ETA 2.4 s
    INFO descbench.evaluate.extract: describe (sift): done, 5,000 patch in 4.0 s (1,250 patch/s)

Transient loops (``leave=False``: a checksum, an archive's members) stay silent in a log unless they
take longer than ``delay`` seconds. ``DESCBENCH_PROGRESS=bar|log|off`` overrides the choice (``off``:
neither bar nor lines). While a bar is shown, log records go through ``tqdm.write`` so they do not
tear the bar.

The object returned answers the part of tqdm's interface this package uses: iteration, ``update``,
``set_postfix``, ``close`` and the context manager.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["ENV_VAR", "Progress", "progress", "stderr_is_terminal"]

ENV_VAR = "DESCBENCH_PROGRESS"
_MODES = ("bar", "log", "off")
_default_log = logging.getLogger("descbench.progress")


def stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` (as it is now) is an interactive terminal."""
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _mode(bar: bool | None) -> str:
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced in _MODES:
        if forced == "bar" and bar is False:
            return "log"
        return forced
    if bar is False:
        return "log"
    return "bar" if stderr_is_terminal() else "log"


# -- one redirection of logging into tqdm.write while any bar is open ------------------------------
_open_bars = 0
_redirect: contextlib.ExitStack | None = None


def _bar_opened() -> None:
    global _open_bars, _redirect
    _open_bars += 1
    if _open_bars == 1:
        from tqdm.contrib.logging import logging_redirect_tqdm

        _redirect = contextlib.ExitStack()
        _redirect.enter_context(logging_redirect_tqdm())


def _bar_closed() -> None:
    global _open_bars, _redirect
    _open_bars = max(0, _open_bars - 1)
    if _open_bars == 0 and _redirect is not None:
        stack, _redirect = _redirect, None
        stack.close()


# -- formatting --------------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _amount(n: float, unit: str, scale: bool, divisor: int) -> str:
    if not scale:
        return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"
    prefixes = ("", "Ki", "Mi", "Gi", "Ti", "Pi") if divisor == 1024 else ("", "k", "M", "G", "T", "P")
    value = float(n)
    for prefix in prefixes:
        if abs(value) < divisor or prefix == prefixes[-1]:
            return f"{value:.0f} {prefix}" if not prefix else f"{value:.1f} {prefix}"
        value /= divisor
    return f"{n}"  # unreachable


class Progress:
    """A loop's progress, shown as a tqdm bar (``mode="bar"``), as log lines (``"log"``) or not at all.

    Build it with :func:`progress`. In log mode ``update`` returns True when it has just written a
    line (so a caller can restart the averages it shows in ``set_postfix``).
    """

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, leave: bool = True, unit_scale: bool = False,
                 unit_divisor: int = 1000, every_percent: float = 10.0, every_seconds: float = 60.0,
                 min_interval: float = 1.0, delay: float | None = None,
                 logger: logging.Logger | None = None, level: int = logging.INFO, mode: str = "log",
                 **bar_kwargs: Any) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        if mode not in _MODES:
            raise ValueError(f"progress mode {mode!r}: use one of {_MODES}")
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.leave = leave
        self.n = initial
        self.mode = mode
        self._initial = initial
        self._scale = unit_scale
        self._divisor = unit_divisor
        self._every_percent = every_percent
        self._every_seconds = every_seconds
        self._min_interval = min_interval
        self._delay = (0.0 if leave else 10.0) if delay is None else delay
        self._log = logger or _default_log
        self._level = level
        self._postfix: dict[str, Any] = {}
        self._start = self._last_line = time.monotonic()
        self._bucket = self._bucket_of(initial)
        self._lines = 0
        self._closed = False
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            kwargs = {"total": total, "desc": desc or None, "unit": unit, "initial": initial,
                      "leave": leave, "unit_scale": unit_scale, "unit_divisor": unit_divisor,
                      "file": sys.stderr}
            kwargs.update(bar_kwargs)
            self._bar = tqdm(iterable, **kwargs)
            _bar_opened()

    # -- tqdm's interface --------------------------------------------------------------------------
    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress has no iterable; call update() instead")
        try:
            if self._bar is not None:
                yield from self._bar
            else:
                for item in self.iterable:
                    yield item
                    self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    @property
    def logs(self) -> bool:
        """Whether this progress writes log lines (not a bar)."""
        return self.mode == "log"

    def set_postfix(self, **fields: Any) -> None:
        """Extra ``name=value`` fields for the bar and for the next log line."""
        self._postfix = fields
        if self._bar is not None:
            self._bar.set_postfix(fields, refresh=False)

    def update(self, n: float = 1) -> bool:
        if self._closed:
            return False
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return False
        if self.mode != "log":
            return False
        now = time.monotonic()
        if self.total is not None and self.n >= self.total:
            if self._shows(now):
                self._finish_line(now)
                self._closed = True  # nothing more to say; close() stays quiet
                return True
            return False
        bucket = self._bucket_of(self.n)
        since = now - self._last_line
        due = (bucket > self._bucket and since >= self._min_interval) or since >= self._every_seconds
        if due and self._shows(now):
            self._bucket = bucket
            self._emit(self._status_line(now), now)
            return True
        return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            try:
                self._bar.close()
            finally:
                _bar_closed()
            return
        if self.mode != "log":
            return
        now = time.monotonic()
        if self._lines or (self.leave and self._shows(now)):
            if self.total is None:
                self._finish_line(now)
            elif self.n < self.total:
                self._emit(f"{self._prefix()}stopped at {self._count()}", now)

    # -- log lines ---------------------------------------------------------------------------------
    def _bucket_of(self, n: float) -> int:
        if not self.total or self._every_percent <= 0:
            return 0
        return int(100.0 * n / self.total // self._every_percent)

    def _shows(self, now: float) -> bool:
        return self._lines > 0 or now - self._start >= self._delay

    def _prefix(self) -> str:
        return f"{self.desc}: " if self.desc else ""

    def _amount(self, n: float) -> str:
        text = _amount(n, self.unit, self._scale, self._divisor)
        return f"{text}{self.unit}" if self._scale else f"{text} {self.unit}"

    def _count(self) -> str:
        if self.total is None:
            return self._amount(self.n)
        if self._scale:
            return f"{self._amount(self.n)}/{self._amount(self.total)}"
        return f"{_amount(self.n, self.unit, False, self._divisor)}/{self._amount(self.total)}"

    def _rate(self, now: float) -> float:
        elapsed = now - self._start
        return (self.n - self._initial) / elapsed if elapsed > 0 else math.nan

    def _rate_text(self, rate: float) -> str:
        if not math.isfinite(rate):
            return f"? {self.unit}/s"
        if self._scale:
            return f"{_amount(rate, self.unit, True, self._divisor)}{self.unit}/s"
        return f"{rate:,.3g} {self.unit}/s" if rate < 100 else f"{rate:,.0f} {self.unit}/s"

    def _fields(self) -> str:
        return "".join(f", {k}={v}" for k, v in self._postfix.items())

    def _status_line(self, now: float) -> str:
        rate = self._rate(now)
        parts = [self._prefix()]
        if self.total:
            parts.append(f"{100.0 * self.n / self.total:.0f}% ({self._count()})")
        else:
            parts.append(self._count())
        parts.append(self._fields())
        parts.append(f", {self._rate_text(rate)}, elapsed {_duration(now - self._start)}")
        if self.total:
            left = (self.total - self.n) / rate if rate and math.isfinite(rate) and rate > 0 else math.nan
            parts.append(f", ETA {_duration(left)}")
        return "".join(parts)

    def _finish_line(self, now: float) -> None:
        self._emit(f"{self._prefix()}done, {self._amount(self.n - self._initial)} in "
                   f"{_duration(now - self._start)} ({self._rate_text(self._rate(now))}){self._fields()}",
                   now)

    def _emit(self, line: str, now: float) -> None:
        self._lines += 1
        self._last_line = now
        self._log.log(self._level, "%s", line)


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
             unit: str = "it", initial: float = 0, leave: bool = True, unit_scale: bool = False,
             unit_divisor: int = 1000, every_percent: float = 10.0, every_seconds: float = 60.0,
             min_interval: float = 1.0, delay: float | None = None,
             logger: logging.Logger | None = None, level: int = logging.INFO,
             bar: bool | None = None, disable: bool = False,
             **bar_kwargs: Any) -> Progress:
    """Track a loop: wrap an iterable (``for x in progress(xs, desc=...)``) or count by hand
    (``with progress(total=n, desc=...) as p: p.update(k)``).

    ``bar=None`` shows a tqdm bar when stderr is a terminal and log lines otherwise; ``bar=False``
    always logs (a bar was declined, the lines still help); ``disable=True`` shows nothing. Log mode
    writes a line through ``logger`` (default ``descbench.progress``) at each ``every_percent`` of
    ``total`` (but not within ``min_interval`` seconds of the last one) and whenever ``every_seconds``
    pass without one, plus a closing line; ``delay`` (default 0, or 10 s when ``leave=False``) keeps
    loops quicker than that silent. Other keyword arguments go
    to tqdm (``dynamic_ncols``, ``mininterval``...).
    """
    mode = "off" if disable else _mode(bar)
    return Progress(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                    unit_scale=unit_scale, unit_divisor=unit_divisor, every_percent=every_percent,
                    every_seconds=every_seconds, min_interval=min_interval, delay=delay, logger=logger, level=level, mode=mode,
                    **bar_kwargs)
