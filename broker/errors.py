"""Errors the broker answers with: JSON `{"message", "detail", "code"}` and a status.

`message` is one sentence saying what went wrong; `detail` says what to do about it; `code` is
stable, for programs (the CLI picks its retry behaviour by it): one of `pair.api.models.ErrorCode`,
a closed set the type checker holds every Problem to.

What to do depends on who asks: an admin can run `pair-broker …` on the server, anyone else can
only ask an admin. A hint that names a `pair-broker` verb is the Problem's `admin_detail`, never its
`detail`, and `detail_for` (the one place that chooses) gives it to admins alone: the JSON answers
(broker.http), the web pages and `pair-broker` itself (whose user runs the server) ask it.
tests/unit/test_error_answers.py holds every hint in broker/ to that.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from pair.api.models import ErrorCode

T = TypeVar("T")


class Problem(Exception):
    @overload
    def __init__(self, status: int, message: str, detail: str, code: ErrorCode, *, admin_detail: str = "") -> None: ...
    @overload
    def __init__(self, status: int, message: str, *, code: ErrorCode, admin_detail: str = "") -> None: ...
    def __init__(
        self, status: int, message: str, detail: str = "", code: ErrorCode | None = None, *, admin_detail: str = ""
    ) -> None:
        super().__init__(message)
        if code is None:
            raise TypeError("a Problem names its code (pair.api.models.ErrorCode)")
        self.status = status
        self.message = message
        self.detail = detail  # what anyone can do (ask an admin, never run `pair-broker`)
        self.admin_detail = admin_detail  # what an admin can do instead ("": the same as detail)
        self.code: ErrorCode = code

    def detail_for(self, is_admin: bool) -> str:
        """The hint for the person the answer goes to: `admin_detail` (which may name `pair-broker`
        verbs) for an admin, when there is one; `detail` for everyone else, and for an answer
        whose asker is unknown (before authentication)."""
        return self.admin_detail if is_admin and self.admin_detail else self.detail


def not_found(what: str, detail: str = "", *, admin_detail: str = "") -> Problem:
    return Problem(404, f"{what} was not found.", detail, "not_found", admin_detail=admin_detail)


def invalid(message: str, detail: str = "") -> Problem:
    return Problem(422, message, detail, "invalid")


def checked(kind: Any, value: T) -> T:
    """`value` if it fits the wire type `kind` (pair.api.models: a name, an email, a request
    built by a web form), as the broker's JSON endpoints decode it; Problem 422 `invalid` with the
    type's sentence otherwise (pair.api.fields). For the entries that do not decode JSON: the
    web forms and `pair-broker`."""
    from pair.api.fields import check
    from pair.api.grammar import Invalid

    try:
        check(kind, value)
    except Invalid as exc:
        raise invalid(exc.message, exc.hint) from exc
    return value
