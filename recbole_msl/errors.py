"""One exception type for user mistakes, so the CLI can print them as one line."""


class ConfigError(ValueError):
    """Bad configuration or input data; the message names the fix."""
