"""Logging through loguru: a readable stderr stream and a rotating file under the run dir."""
from __future__ import annotations

import re
import sys

from loguru import logger

from core.files import private_file
from core.text import printable

# Anything that looks like a credential is masked before it reaches any sink.
_SECRET = re.compile(r"(?i)(api[_-]?key|secret|password|token|signature)(['\"]?\s*[:=]\s*['\"]?)([^\s'\",&]+)")


def _mask(record) -> bool:
    """Credentials masked, and one record is one line: no text that reached a message (a
    remote party's words included) can start a forged line or send terminal escapes."""
    message = _SECRET.sub(r"\1\2***", record["message"])
    record["message"] = message if message.isprintable() else printable(message, 1 << 16)
    return True


def setup_logging(level: str = "INFO", file: str | None = None, *, quiet: bool = False) -> None:
    logger.remove()
    fmt = "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <8}</level> {message}"
    logger.add(sys.stderr, level="WARNING" if quiet else level, format=fmt, filter=_mask,
               colorize=sys.stderr.isatty(), backtrace=False, diagnose=False)
    if file:
        private_file(file)  # rotated files are 0600 through the process umask (bin/trader sets 077)
        logger.add(file, level="DEBUG", rotation="50 MB", retention=5, enqueue=True, filter=_mask,
                   format="{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <8} {thread.name} {message}",
                   backtrace=False, diagnose=False)
