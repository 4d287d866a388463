"""What one activity event item may keep, so that no item approaches DynamoDB's 400 KB.

The event item holds the body (at most :data:`BODY_BYTES`), one status per webhook and each
delivery's attempt log. Every stored attempt is capped (:func:`bounded_attempt`: the response
snippet, the error and the request headers, measured as stored, in UTF-8 bytes, not as received:
a binary error body of 256 bytes is 768 bytes of U+FFFD) and a delivery keeps at most
:attr:`Bound.keep` attempts, its first and its latest ``keep - 1`` (``status.attempts - len(log)``
says how many it left out; the API shows it as ``attempts_not_kept``). How many it keeps depends
on how many webhooks the event went to (:func:`bound_for`): their share of :data:`TARGET_BYTES`.

Worst case, by DynamoDB's sizing rules (attribute names + UTF-8 strings + numbers; a map or list
3 bytes + 1 per element), each figure checked against what the store writes by
tests/unit/test_bounds.py:

* the body: 245,760 bytes (240 KiB, ``services.ingest.MAX_DETAIL_BYTES``, which counts the
  webhook body); the item's other fixed attributes (keys and index keys with 256-character tenant
  and device ids, type, time, TTL): 2,260 measured, :data:`FIXED_BYTES` = 3,072;
* one delivery: its status, 239 measured with a capped error, :data:`STATUS_BYTES` = 400, its
  webhook id in two maps and its log's list: :data:`DELIVERY_BYTES` = 477;
* one stored attempt: 863 measured with every cap reached (snippet 256, error 128, 16 headers of
  384 bytes), :data:`ATTEMPT_BYTES` = 1,000; 454 without headers, :data:`BARE_ATTEMPT_BYTES` = 500.

So an event to W webhooks is at most 248,832 + W × (477 + keep × 1,001) bytes (``+ keep × 501``
without headers), and ``keep`` is the most that keeps it under 350,000 (85 % of 400 KB):

=========  =====================  ==============================
webhooks   each delivery keeps    worst case
=========  =====================  ==============================
1–22       4 (first + latest 3)   338,452 at 20 (the default limit of ``DEVICEHOOKS_MAX_INTEGRATIONS``)
23–29      3                      349,752 at 29 (the largest of all)
30–40      2                      347,992 at 40
41–68      1 (the latest)         349,336 at 68
69–99      1, without headers     345,654 at 99 (the setting's maximum)
=========  =====================  ==============================

So more than 50 KB stay free whatever the settings: far more than one attempt, which is all the
write after a POST can add (its attempt replaces a kept one once the log is full). A write refused
for the item's size all the same (an item written before these bounds, some 400 KB already) is
turned into :class:`ItemTooLarge` or a smaller record, never an unexplained error: see the stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from devicehooks.domain.activity import Attempt, DeliveryStatus

ITEM_LIMIT = 400 * 1024  # DynamoDB's item size limit
TARGET_BYTES = 350_000  # no event item may be larger than this (85 % of the limit)
BODY_BYTES = 240 * 1024  # services.ingest.MAX_DETAIL_BYTES: the largest body sent and kept
FIXED_BYTES = 3072  # the item's attributes but the body, statuses and attempt logs (~2,300 at most)
STATUS_BYTES = 400  # one delivery's status map, its error capped (~250 at most)
ATTEMPT_BYTES = 1000  # one stored attempt, every cap reached (~870)
BARE_ATTEMPT_BYTES = 500  # one stored attempt without its headers (~460)
# one delivery's share of the item besides its attempts: its webhook id (36) in the statuses and
# the attempt logs, its status, its log's list
DELIVERY_BYTES = 2 * (1 + 36) + STATUS_BYTES + 3
KEEP_MAX = 4  # a delivery keeps at most its first attempt and its latest 3

SNIPPET_BYTES = 256  # the response body's snippet as stored (a non-UTF-8 byte is stored as 3: U+FFFD)
ERROR_BYTES = 128  # an attempt's (or a status's) error as stored
HEADER_BYTES = 384  # the request headers kept, names and values (a signed request with two signatures: ~300)
HEADER_COUNT = 16  # ... and at most this many of them


@dataclass(frozen=True, slots=True)
class Bound:
    """What each delivery of an event keeps: ``keep`` attempts (its first and latest ``keep - 1``;
    only the latest when 1), with at most ``header_bytes`` of request headers each."""

    keep: int = KEEP_MAX
    header_bytes: int = HEADER_BYTES


def bound_for(deliveries: int) -> Bound:
    """The bound of an event to ``deliveries`` webhooks: as many attempts each as fit their share of
    :data:`TARGET_BYTES` at their largest (at most :data:`KEEP_MAX`); at least the latest, without
    its headers when even one full attempt each would not fit."""
    room = (TARGET_BYTES - BODY_BYTES - FIXED_BYTES) // max(1, deliveries) - DELIVERY_BYTES
    keep = min(KEEP_MAX, room // (ATTEMPT_BYTES + 1))
    if keep >= 1:
        return Bound(keep, HEADER_BYTES)
    return Bound(1, 0)


def worst_case_bytes(deliveries: int) -> int:
    """The largest an event item to ``deliveries`` webhooks can be (module docstring)."""
    bound = bound_for(deliveries)
    attempt = ATTEMPT_BYTES if bound.header_bytes else BARE_ATTEMPT_BYTES
    per_delivery = DELIVERY_BYTES + bound.keep * (attempt + 1)
    return BODY_BYTES + FIXED_BYTES + deliveries * per_delivery


def clip(text: str | None, limit: int) -> str | None:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (on a character boundary)."""
    if text is None:
        return None
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


def _headers(headers: Mapping[str, str] | None, limit: int) -> dict[str, str] | None:
    """The headers kept in order while their names and values fit ``limit`` bytes (a header is
    kept whole or not at all: a cut signature would be wrong)."""
    if not headers or limit <= 0:
        return None
    kept: dict[str, str] = {}
    used = 0
    for name, value in headers.items():
        if len(kept) >= HEADER_COUNT:
            break
        size = len(name.encode()) + len(value.encode())
        if used + size > limit:
            continue
        kept[name] = value
        used += size
    return kept or None


def bounded_attempt(attempt: Attempt, bound: Bound = Bound()) -> Attempt:
    """``attempt`` as it is stored: its snippet, error and headers capped."""
    body = clip(attempt.response_body, SNIPPET_BYTES)
    error = clip(attempt.error, ERROR_BYTES)
    headers = _headers(attempt.headers, bound.header_bytes)
    same_headers = (headers or None) == (dict(attempt.headers) if attempt.headers else None)
    if body == attempt.response_body and error == attempt.error and same_headers:
        return attempt
    return replace(attempt, response_body=body, error=error, headers=headers)


def bare_attempt(attempt: Attempt) -> Attempt:
    """The least an attempt is recorded as, when even its capped record does not fit: what happened
    (number, time, duration, status), no snippet nor headers."""
    return replace(attempt, response_body=None, headers=None, error=clip(attempt.error, 64))


def bounded_status(status: DeliveryStatus) -> DeliveryStatus:
    """``status`` as it is stored: its error capped."""
    error = clip(status.error, ERROR_BYTES)
    return status if error == status.error else replace(status, error=error)


def kept(log: Sequence[Attempt], keep: int) -> tuple[Attempt, ...]:
    """The attempts a delivery keeps of ``log`` (oldest first): the first and the latest ``keep - 1``."""
    if len(log) <= keep:
        return tuple(log)
    if keep <= 1:
        return tuple(log[-1:])
    return (log[0], *log[len(log) - (keep - 1) :])


def slot(number: int, keep: int) -> int | None:
    """Where attempt ``number`` goes in a stored log that keeps ``keep``: ``None`` appends (the log
    is not full yet); otherwise the index of the oldest of the latest ones, which it replaces (index
    0 is the first attempt, kept while ``keep > 1``). Writing one element never touches the others,
    so the log is bounded in the same single write as the status."""
    if number <= keep:
        return None
    if keep <= 1:
        return 0
    return 1 + (number - 2) % (keep - 1)


def dropped(status: DeliveryStatus, log: Sequence[Any]) -> int:
    """How many of a delivery's attempts its log does not show."""
    return max(0, status.attempts - len(log))


class ItemTooLarge(Exception):
    """DynamoDB refused a write for the item's size (an item written before these bounds)."""


def too_large(exc: BaseException) -> bool:
    """Whether ``exc`` is DynamoDB refusing a write for the item's size (``ValidationException:
    Item size has exceeded the maximum allowed size``, or ``Item size to update has exceeded ...``)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    error = response.get("Error", {})
    return error.get("Code") == "ValidationException" and "item size" in str(error.get("Message", "")).lower()


def no_list(exc: BaseException) -> bool:
    """Whether ``exc`` is DynamoDB refusing to write an element of a list that is not there (``The
    document path provided in the update expression is invalid for update``)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    error = response.get("Error", {})
    return error.get("Code") == "ValidationException" and "document path" in str(error.get("Message", "")).lower()


__all__ = [
    "ATTEMPT_BYTES",
    "KEEP_MAX",
    "TARGET_BYTES",
    "Bound",
    "ItemTooLarge",
    "bare_attempt",
    "bound_for",
    "bounded_attempt",
    "bounded_status",
    "clip",
    "dropped",
    "kept",
    "no_list",
    "slot",
    "too_large",
    "worst_case_bytes",
]
