"""The one base of the engine's errors: input it cannot run on, with a stable code for `error.code`."""


class EngineError(Exception):
    """Input the engine cannot run on; `code` is stable and machine-readable, the message is for people.

    Every error the engine raises on purpose derives from it; the job runner fails a job with its code.
    Subclasses set `default_code` or pass `code`.
    """

    default_code = "engine_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        """Keep the message and the code (the class's default unless given)."""
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
