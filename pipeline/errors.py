"""User-facing errors: the CLI turns these into one line on stderr and an exit code, never a traceback."""

from training.config_io import ConfigError

# Bad command line or config (names the key/argument and the reason). Exit code 2. The same
# class the config builders of every stage raise, so a bad key is a usage error wherever
# it is found.
UsageError = ConfigError


class JobFailed(Exception):
    """A job ran but its result is unacceptable (e.g. too many bad inputs). Exit code 1."""
