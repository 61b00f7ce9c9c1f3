"""User-facing errors: the CLI prints these as one line and exits non-zero, without a traceback."""


class EvalsuiteError(Exception):
    """A problem the user can fix (bad input, missing package, unreachable endpoint)."""


class ConfigError(EvalsuiteError):
    """A configuration file or flag is malformed."""


class CheckpointError(EvalsuiteError):
    """A model checkpoint or GGUF file is missing, unreadable or corrupt."""


class BackendUnavailableError(EvalsuiteError):
    """A backend's library is not installed or its endpoint cannot be reached."""
