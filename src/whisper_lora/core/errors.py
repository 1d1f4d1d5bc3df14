"""The base class of errors caused by the user's input, which the CLI reports in one line."""


class UserError(ValueError):
    """Bad input the user can fix: the message names the file, the row where there is one, and the reason."""


class TrainingInterrupted(UserError):
    """Training stopped by Ctrl-C after saving a resumable checkpoint."""
