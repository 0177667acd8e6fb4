"""Errors the broker answers with: JSON `{"message", "detail", "code"}` and a status.

`message` is one sentence saying what went wrong; `detail` says what to do about it; `code` is
stable, for programs (the CLI picks its retry behaviour by it).
"""

from __future__ import annotations


class Problem(Exception):
    def __init__(self, status: int, message: str, detail: str = "", code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.code = code


def not_found(what: str, detail: str = "") -> Problem:
    return Problem(404, f"{what} was not found.", detail, "not_found")


def invalid(message: str, detail: str = "") -> Problem:
    return Problem(422, message, detail, "invalid")
