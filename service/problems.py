"""Every error the service answers with, as one small exception class each.

Any layer may raise these: storage raises ``NotFound`` or ``NameTaken``, validation
``ValidationFailed``, authentication ``Unauthorized``. They know nothing of HTTP; the HTTP
layer alone maps each kind to its status and headers (``service.http.responses``). The
``kind`` of each class is its stable problem ``type`` suffix, listed in openapi.yaml.
"""

from __future__ import annotations

from collections.abc import Iterable

from model.invariants import QTY_MAX, FieldError


class Problem(Exception):
    """Base of every answerable error: a stable kind, a title and a detail for people."""

    kind = "internal-error"
    title = "Internal server error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(Problem):
    """The request breaks the contract; ``errors`` names every offending field."""

    kind = "validation-error"
    title = "Invalid request"

    def __init__(self, detail: str, errors: Iterable[FieldError] = ()) -> None:
        super().__init__(detail)
        self.errors = list(errors)


class Unauthorized(Problem):
    """No valid API key: missing, malformed, unknown or revoked."""

    kind = "unauthorized"
    title = "Unauthorized"


class Forbidden(Problem):
    """The key is valid, but its role may not perform this operation."""

    kind = "forbidden"
    title = "Forbidden"


class Rejected(Problem):
    """The state refuses the transition (no such item, a conflict, a stale version): the
    request was valid and reached the store. Only these, and successes, are stored as the
    outcome of an ``Idempotency-Key`` (README, "Idempotent retries").

    In a batch, ``operation`` is the index of the operation that was refused."""

    operation: int | None = None

    def in_operation(self, index: int) -> Rejected:
        """This problem, as the refusal of a batch's operation ``index``."""
        self.operation = index
        return self


class NotFound(Rejected):
    """No such resource (for the caller's tenant), or no such path."""

    kind = "not-found"
    title = "Not found"

    @classmethod
    def item(cls, item_id: str) -> NotFound:
        """The caller's tenant has no item ``item_id``."""
        return cls(f"no item {item_id}")


class MethodNotAllowed(Problem):
    """The path exists, the method does not; ``allowed`` lists the methods that do."""

    kind = "method-not-allowed"
    title = "Method not allowed"

    def __init__(self, detail: str, allowed: Iterable[str]) -> None:
        super().__init__(detail)
        self.allowed = sorted(allowed)


class NameTaken(Rejected):
    """Another item of the tenant already has this name (ignoring case)."""

    kind = "name-taken"
    title = "Name already taken"

    @classmethod
    def by(cls, name: str) -> NameTaken:
        """An item of the tenant is already called ``name``, ignoring case."""
        return cls(f"an item named {name!r} (ignoring case) already exists")


class QuantityOutOfRange(Rejected):
    """The adjustment would take the quantity below 0 or above QTY_MAX."""

    kind = "quantity-out-of-range"
    title = "Quantity out of range"

    @classmethod
    def after(cls, qty: int, delta: int) -> QuantityOutOfRange:
        """Adding ``delta`` to ``qty`` would leave the range."""
        return cls(f"qty {qty} + delta {delta} is outside [0, {QTY_MAX}]; nothing changed")


class PreconditionFailed(Rejected):
    """``If-Match`` does not match the item's current ETag."""

    kind = "precondition-failed"
    title = "Precondition failed"

    @classmethod
    def at(cls, version: int) -> PreconditionFailed:
        """The item is at ``version``, which the condition does not accept."""
        return cls(f'the item is at ETag "{version}"')


class IdempotencyKeyReused(Problem):
    """The ``Idempotency-Key`` was used with another request within the retention time."""

    kind = "idempotency-key-reused"
    title = "Idempotency key reused"

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was used with another request; nothing was done:"
            " use a new key for a new request"
        )


class IdempotencyInFlight(Problem):
    """A request with the same ``Idempotency-Key`` is still running."""

    kind = "idempotency-in-flight"
    title = "Request in flight"
    retry_after = 1

    def __init__(self) -> None:
        super().__init__(
            "a request with this Idempotency-Key is still running; nothing was done:"
            " retry it shortly to get its answer"
        )


class PayloadTooLarge(Problem):
    """The request body is over the size limit."""

    kind = "payload-too-large"
    title = "Payload too large"


class RequestTimeout(Problem):
    """The request's body did not arrive in time."""

    kind = "request-timeout"
    title = "Request timeout"


class UnsupportedMediaType(Problem):
    """The request body is not declared as UTF-8 ``application/json``."""

    kind = "unsupported-media-type"
    title = "Unsupported media type"


class Unavailable(Problem):
    """The database cannot answer now (busy past the budget, unreachable, read-only, full).

    Not the request's fault and not a bug: the client may retry after ``retry_after`` seconds.
    """

    kind = "unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
