"""The one exception for every failure a user can cause or fix."""


class EnvtasksError(Exception):
    """A failure with a one-line message that says what happened and what to do.

    The task layer turns it into ``invoke.Exit`` so users never see a traceback
    for bad input, a missing daemon or a dead registry.
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())
        self.code = code

    def __str__(self) -> str:
        return self.message
