"""WebSocket close codes the broker, the agent and `pair spaces proxy` agree on.

1000–1015 are RFC 6455 §7.4.1 and the IANA registry's; 4000–4999 are for applications
(§7.4.2), and ours read as "4" + the HTTP status they stand for, as the broker's refusals before
a WebSocket is accepted are that HTTP status. Every close the broker sends carries a reason
(at most 123 bytes, RFC 6455 §5.5) that is one sentence for people; `pair spaces proxy` prints
it, and falls back to `SENTENCES` for a close without one.

Standard library only: `pair spaces proxy` (ssh's ProxyCommand) imports this on every connection.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    # -- RFC 6455 ------------------------------------------------------------------------------
    NORMAL = 1000  # the stream ended as its ends wanted (a logout, a shell's exit)
    GOING_AWAY = 1001  # a server going down or a browser leaving the page
    NO_STATUS = 1005  # a close frame without a code (never sent, only received)
    ABNORMAL = 1006  # no close frame at all: the connection dropped (never sent, only received)
    BAD_DATA = 1007  # a message that is not one of the protocol's (the agent's control channel)
    POLICY = 1008  # refused, where the server cannot answer the upgrade with an HTTP status
    TOO_BIG = 1009  # a message larger than the receiver takes
    INTERNAL_ERROR = 1011  # the server failed
    SERVICE_RESTART = 1012  # the broker is restarting: agents reconnect at once, people retry
    TRY_AGAIN_LATER = 1013  # overloaded
    BAD_GATEWAY = 1014  # a proxy's upstream answered badly (the app proxy, when an app vanishes)

    # -- pair's own ----------------------------------------------------------------------------
    REPLACED = 4000  # the agent opened a newer control channel; this one is closed
    CREDENTIAL_DEAD = 4401  # the agent credential no longer works (the Space deleted, bootstrapped elsewhere)
    REVOKED = 4403  # the person's access ended or was ended: unshare, kick, delete, down
    WRONG_CONTAINER = 4409  # the Space is registered to another container (instance mismatch)
    INVALID = 4422  # a well-formed message the broker refuses (container facts outside pair.api.grammar)
    CONTAINER_LOST = 4502  # the container's side of a stream vanished (its agent or target stopped)
    UNAVAILABLE = 4503  # the broker cannot use its database right now; the agent retries


# Codes after which an agent's credential is of no more use: it removes the authorized-keys
# snapshot and its terminals, and waits for a new bootstrap.
CREDENTIAL_ENDED = frozenset({CloseCode.CREDENTIAL_DEAD, CloseCode.WRONG_CONTAINER})
# Codes that say the broker is coming back: agents retry every second for a while.
BROKER_RESTARTING = frozenset({CloseCode.GOING_AWAY, CloseCode.SERVICE_RESTART})

# Codes that end a stream without ending what it reached: the network, a proxy or the broker
# failed or restarted (RFC 6455's 1001, 1005, 1006, 1011-1014). With pair's 45xx (a 5xx HTTP
# status: the server's trouble, not the request's), a client may reconnect after them.
TRANSIENT = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.NO_STATUS,
        CloseCode.ABNORMAL,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.TRY_AGAIN_LATER,
        CloseCode.BAD_GATEWAY,
    }
)

# What a person reads when the broker's end of their stream closed with a code and no reason.
SENTENCES: dict[int, str] = {
    CloseCode.GOING_AWAY: "The broker is going away (shutting down or redeploying); connect again once it is back.",
    CloseCode.ABNORMAL: "The connection to the broker was lost (network error).",
    CloseCode.INTERNAL_ERROR: "The broker hit an internal error and closed the connection.",
    CloseCode.SERVICE_RESTART: "The broker restarted; connect again in a few seconds.",
    CloseCode.TRY_AGAIN_LATER: "The broker is overloaded; try again later.",
    CloseCode.BAD_GATEWAY: "A proxy in front of the broker got a bad answer from it.",
    CloseCode.REVOKED: "Your access to the Space ended.",
    CloseCode.CONTAINER_LOST: "The connection to the container was lost (its agent or sshd stopped).",
}


TRANSIENT_RANGE = (4500, 4599)  # pair's codes for an HTTP 5xx, inclusive: transient too


def transient(code: int) -> bool:
    """Whether a stream closed with `code` may be opened again (the one rule a reconnecting client
    asks, the web page's terminal.js included: pair.api.terminal.reconnect_rule): the `TRANSIENT`
    codes and pair's 4500-4599 (an HTTP 5xx: CONTAINER_LOST, UNAVAILABLE). Every other code is
    final: a normal end (1000), a refusal or revocation (1008, 44xx), a protocol fault (1002,
    1003, 1007, 1009, 1010), REPLACED, and codes this module does not know."""
    return code in TRANSIENT or TRANSIENT_RANGE[0] <= code <= TRANSIENT_RANGE[1]


def for_status(status: int) -> CloseCode:
    """The close code for a refusal the broker would answer with HTTP `status` before accepting:
    401 → CREDENTIAL_DEAD, 403 → REVOKED, 409 → WRONG_CONTAINER, 422 → INVALID, 503 →
    UNAVAILABLE, another 4xx → BAD_DATA (the request was wrong), anything else → INTERNAL_ERROR."""
    known = {
        401: CloseCode.CREDENTIAL_DEAD,
        403: CloseCode.REVOKED,
        409: CloseCode.WRONG_CONTAINER,
        422: CloseCode.INVALID,
    }
    if status in known:
        return known[status]
    if status == 503:
        return CloseCode.UNAVAILABLE
    return CloseCode.BAD_DATA if 400 <= status < 500 else CloseCode.INTERNAL_ERROR
