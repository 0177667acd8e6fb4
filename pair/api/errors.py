"""The one exception tree the CLI knows how to print.

PairError                  anything the user should see as `error: …` / `hint: …`
├── ApiError               the broker answered with an error body {"message", "detail", "code"}
│   └── AuthError          401: the session is missing, expired or revoked
└── BrokerUnreachable      no answer at all (refused, DNS, timeout)
"""

from __future__ import annotations

import json


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


def login_hint(url: str = "") -> str:
    """What to run to get a session: the one hint for "not logged in" and "session expired", from
    the CLI and from the broker (which names its own URL)."""
    return f"Run `pair login EMAIL --key-file PATH --url {url or 'BROKER_URL'}` to sign in."


def answered(status: int, content: bytes | bytearray, url: str) -> ApiError:
    """The broker's error answer (`{"message", "detail", "code"}`, pair.api.models.ErrorBody) as
    an ApiError; AuthError for 401. A body that is not one (not pair's broker, a proxy's page)
    becomes a sentence naming the status. Parsed with the stdlib so the proxy stays light."""
    try:
        body = json.loads(content or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        message, detail, code = body["message"], body.get("detail"), body.get("code")
        detail = detail if isinstance(detail, str) else ""
        code = code if isinstance(code, str) else ""
    else:
        message = f"The broker answered HTTP {status} without an error message."
        detail, code = f"Is {url} a pair broker? Check it with `pair whoami`.", ""
    if status == 401:
        return AuthError(401, message, detail or login_hint(url), code)
    return ApiError(status, message, detail, code)
