"""RFC 9457 problem details: every error the API returns, and nothing else (no stack traces)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from salesml.errors import SalesmlError
from salesml.models.revenue.bundle import MissingFrequencyError

PROBLEM_JSON = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    408: "Request timeout",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class FieldError(BaseModel):
    """One offending field."""

    field: str = Field(description="Where: e.g. body.deals[0].overrides.amount, query.by.")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Unprocessable content",
                    "status": 422,
                    "detail": "body.deals[0].overrides.amount: Input should be greater than or "
                    "equal to 0",
                    "instance": "/v1/deals/score",
                    "request_id": "5f0c6a0e9d8b4c0f",
                    "errors": [
                        {
                            "field": "body.deals[0].overrides.amount",
                            "message": "Input should be greater than or equal to 0",
                        }
                    ],
                }
            ]
        }
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raise to answer with a problem."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = [FieldError(field=field, message=detail)] if field else None
        self.headers = headers or {}

    @classmethod
    def of_all(cls, problems: Sequence[ProblemError], items: str) -> ProblemError:
        """One answer naming every problem of ``problems`` (of a request's ``items``, such as
        "deals"): one problem answers as itself; several answer with all their fields — with
        their status when they share one, else 403 when one is (the key may not do part of
        it), else 422."""
        if len(problems) == 1:
            return problems[0]
        statuses = {p.status for p in problems}
        status = statuses.pop() if len(statuses) == 1 else 403 if 403 in statuses else 422
        errors = [e for p in problems for e in (p.errors or [])]
        shown = "; ".join(f"{e.field}: {e.message}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more in errors)" if len(errors) > 3 else ""
        out = cls(status, f"{len(errors)} problems with the {items} asked: {shown}{more}")
        out.errors = errors
        return out


class Problems:
    """Problems gathered instead of raised one by one, so one answer names every bad item and
    field of a request (``ProblemError.of_all``)."""

    def __init__(self) -> None:
        self.found: list[ProblemError] = []

    def check(self, rule: Any, *args: Any) -> bool:
        """Apply ``rule``; False (and the problem kept) when it raised one."""
        try:
            rule(*args)
        except ProblemError as exc:
            self.found.append(exc)
            return False
        return True


def problem_response(
    request: Request | None,
    status: int,
    detail: str | None,
    *,
    errors: Sequence[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    problem = Problem(
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path if request is not None else None,
        request_id=getattr(request.state, "request_id", None) if request is not None else None,
        errors=list(errors) if errors else None,
    )
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors():
        raw = list(error.get("loc", ()))
        # drop the union tag pydantic puts after a list index (deals[0].known.deal_id)
        loc = [
            p
            for i, p in enumerate(raw)
            if not (p in ("known", "new") and i > 0 and isinstance(raw[i - 1], int))
        ]
        message = str(error.get("msg", "invalid value"))
        if error.get("type") == "extra_forbidden":
            message = "unknown field (not part of the schema)"
        errors.append(FieldError(field=_location(loc) or "body", message=message))
    return errors


# -- salesml's own errors ------------------------------------------------------------------------
SALESML_ERRORS: dict[type[SalesmlError], tuple[int, str | None]] = {
    # a period length the registered forecast model was not trained for
    MissingFrequencyError: (422, "query.freq"),
    # any other: the server's models or data cannot answer yet (queries are validated before a
    # route runs, so no other salesml error is the caller's to fix)
    SalesmlError: (503, None),
}
"""Status and offending field of each ``SalesmlError`` class; an error takes the entry of the
first class in its MRO listed here."""

SUBJECTS = {"forecast": "forecast", "kpis": "KPIs", "scores": "scoring", "models": "models"}
"""What a 503 says is unavailable, by the failing route's tag."""


def salesml_problem(exc: SalesmlError, tag: str | None) -> ProblemError:
    """The problem answering ``exc`` raised by a route tagged ``tag`` (``SALESML_ERRORS``)."""
    status, field = next(SALESML_ERRORS[c] for c in type(exc).__mro__ if c in SALESML_ERRORS)
    detail = str(exc)
    if status == 503:
        detail = f"{SUBJECTS.get(tag or '', 'service')} unavailable: {detail}"
    return ProblemError(status, detail, field=field)


HTTP_FIELDS = {404: "path", 405: "method", 413: "body", 408: "body"}
"""The field a 4xx raised by Starlette itself (no route, wrong method) names."""


def install(app: FastAPI) -> None:
    """Answer every error as problem+json."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.detail, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(SalesmlError)
    async def _salesml(request: Request, exc: SalesmlError) -> JSONResponse:
        tags = getattr(request.scope.get("route"), "tags", None) or [None]
        problem = salesml_problem(exc, tags[0])
        return problem_response(request, problem.status, problem.detail, errors=problem.errors)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        return problem_response(request, 422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        headers: dict[str, Any] = dict(exc.headers or {})
        errors = None
        if 400 <= exc.status_code < 500:  # every 4xx names its field
            where = HTTP_FIELDS.get(exc.status_code, "request")
            errors = [FieldError(field=where, message=detail or TITLES.get(exc.status_code, ""))]
        return problem_response(request, exc.status_code, detail, errors=errors, headers=headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # Logged by the request middleware (type and request id only); never echoed.
        request.state.error = type(exc).__name__
        return problem_response(request, 500, "internal error; quote the request id to support")


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": Problem,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        "description": TITLES[status],
    }
    for status in (401, 403, 404, 408, 413, 422, 429, 500, 503)
}
