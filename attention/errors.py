"""The one error type that command-line entry points report as a single line."""


class UserError(Exception):
  """Bad input from the person running a command: a config field, a flag, a file or a
  run directory. The message names what is wrong and what is allowed."""
