"""The one exception tree the CLI knows how to print.

PairError                  anything the user should see as `error: …` / `hint: …`
├── ApiError               the broker answered with an error body {"message", "detail", "code"}
│   └── AuthError          401: the session is missing, expired or revoked
└── BrokerUnreachable      no answer at all (refused, DNS, timeout)
"""

from __future__ import annotations


class PairError(Exception):
    """An expected failure: one sentence for the user and, optionally, what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ApiError(PairError):
    def __init__(self, status: int, message: str, detail: str = "", code: str = "") -> None:
        super().__init__(message, detail)
        self.status = status
        self.detail = detail
        self.code = code


class AuthError(ApiError):
    pass


class BrokerUnreachable(PairError):
    pass
