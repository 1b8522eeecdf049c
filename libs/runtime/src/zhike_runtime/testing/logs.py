"""The JSON log lines in-process services write, captured for tests that scan them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from zhike_runtime.logs import NOISY_LIBRARIES, JsonFormatter, quiet_libraries


class _Lines(logging.Handler):
    def __init__(self, service: str) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter(service))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured_json_logs(service: str = "test", level: str = "DEBUG") -> Iterator[list[str]]:
    """Every line logged inside the block, rendered exactly as a service writes it to stdout
    (`configure_logging`), at `level` for our own loggers and with the libraries quietened as a
    service quietens them. The list fills while the block runs."""
    root = logging.getLogger()
    saved_root = root.level
    saved_noisy = {name: logging.getLogger(name).level for name in NOISY_LIBRARIES}
    handler = _Lines(service)
    root.addHandler(handler)
    root.setLevel(level)
    quiet_libraries(level)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root)
        for name, saved in saved_noisy.items():
            logging.getLogger(name).setLevel(saved)
