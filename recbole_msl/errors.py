"""One exception type for user mistakes, so the CLI can print them as one line."""


class ConfigError(ValueError):
    """Bad configuration or input data; the message names the fix."""


def first_line(err: BaseException) -> str:
    """The first non-blank line of an error's message, or its type's name when the message is empty."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__
