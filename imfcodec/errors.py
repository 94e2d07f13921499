"""Errors a user can act on: the CLI prints these as one line and exits non-zero."""


class UserError(Exception):
    """Bad input, a damaged file, a missing model: anything the user can fix."""


class BitstreamError(UserError):
    """A .imf file that cannot be decoded: corrupt, truncated, or of an unknown version."""
