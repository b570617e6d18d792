"""Exit codes scripts can trust, and the one error that means "the command line is wrong".

A leaf: every other CLI module imports these, and this imports nothing of the CLI, so the
parser, the commands and `resolve` share them without importing each other.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`
PARTNER_CENTER_DEFAULT_SCOPE = "https://api.partnercenter.microsoft.com/.default"


class UsageError(Exception):
    """A command line that parses but makes no sense; exit 2 with the message."""
