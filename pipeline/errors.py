"""User-facing errors: the CLI turns these into one line on stderr and an exit code, never a traceback."""


class UsageError(Exception):
    """Bad command line or config (names the key/argument and the reason). Exit code 2."""


class JobFailed(Exception):
    """A job ran but its result is unacceptable (e.g. too many bad inputs). Exit code 1."""
