"""User-facing errors: the CLI prints these as one line and exits non-zero, without a traceback."""


class EvalsuiteError(Exception):
    """A problem the user can fix (bad input, missing package, unreachable endpoint)."""


class ConfigError(EvalsuiteError):
    """A configuration file or flag is malformed."""


class CheckpointError(EvalsuiteError):
    """A model checkpoint or GGUF file is missing, unreadable or corrupt."""


class BackendUnavailableError(EvalsuiteError):
    """A backend's library is not installed or its endpoint cannot be reached."""


def did_you_mean(word: str, known: "list[str] | set[str]") -> str:
    """` (did you mean X?)` for the closest known name, or nothing: the hint every unknown-name error gives."""
    import difflib

    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
