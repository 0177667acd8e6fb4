"""Errors the broker answers with: JSON `{"message", "detail", "code"}` and a status.

`message` is one sentence saying what went wrong; `detail` says what to do about it; `code` is
stable, for programs (the CLI picks its retry behaviour by it): one of `pair.api.models.ErrorCode`,
a closed set the type checker holds every Problem to.
"""

from __future__ import annotations

from typing import overload

from pair.api.models import ErrorCode


class Problem(Exception):
    @overload
    def __init__(self, status: int, message: str, detail: str, code: ErrorCode) -> None: ...
    @overload
    def __init__(self, status: int, message: str, *, code: ErrorCode) -> None: ...
    def __init__(self, status: int, message: str, detail: str = "", code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is None:
            raise TypeError("a Problem names its code (pair.api.models.ErrorCode)")
        self.status = status
        self.message = message
        self.detail = detail
        self.code: ErrorCode = code


def not_found(what: str, detail: str = "") -> Problem:
    return Problem(404, f"{what} was not found.", detail, "not_found")


def invalid(message: str, detail: str = "") -> Problem:
    return Problem(422, message, detail, "invalid")
