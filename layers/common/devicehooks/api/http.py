"""What both APIs share: Mender's error body, request ids, body size limit, 404/405, JSON output."""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import inspect
import json
import re
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.domain.validation import first_type_error, format_errors, go_unmarshal_error
from devicehooks.errors import DevicehooksError
from devicehooks.jsonenc import dumps, loads
from devicehooks.observability import logger

if TYPE_CHECKING:  # the internal API writes no response models: it does not import them
    from devicehooks.api.schemas import ResponseModel

JSON = "application/json; charset=utf-8"
REQUEST_ID_HEADER = "X-MEN-RequestID"
MAX_REQUEST_ID = 128
WWW_AUTHENTICATE = 'Bearer realm="ManagementJWT"'

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Error-body schema for the OpenAPI document (Mender's common Error).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "Description of the error."},
        "request_id": {"type": "string", "description": "Same as the X-MEN-RequestID header."},
    },
}


def request_id() -> str:
    """The id of the request being served (echoed from ``X-MEN-RequestID`` or generated)."""
    return _request_id.get()


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response[str]:
    """A JSON response written as Mender's Go services write it."""
    return Response(status_code=status, content_type=JSON, body=dumps(body), headers=dict(headers or {}))


def model_response(status: int, body: ResponseModel | list[ResponseModel]) -> Response[str]:
    """A response written from its response model(s) (api/schemas.py), as Mender writes it."""
    content = [m.to_json() for m in body] if isinstance(body, list) else body.to_json()
    return json_response(status, content)


def empty_response(status: int, headers: Mapping[str, str] | None = None) -> Response[str]:
    return Response(status_code=status, content_type=None, body="", headers=dict(headers or {}))


def error_response(status: int, message: str) -> Response[str]:
    """Mender's error body ``{"error", "request_id"}``; 401s say how to authenticate."""
    body = {"error": message, "request_id": request_id()}
    headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if status == 401 else {}
    return json_response(status, body, headers)


def responses(documented: dict[int, Any], *codes: int) -> Any:
    """OpenAPI ``responses``: the given success entries plus error codes with Mender's error body."""
    names = {
        400: "Invalid request.",
        401: "Missing or invalid token.",
        403: "The token is not a user's token, or (a change) its user is not an admin of the tenant.",
        404: "Not found.",
        405: "Method not allowed.",
        409: "Conflict.",
        413: "Request body too large.",
        500: "Internal error.",
        503: "Unavailable: a service it depends on did not answer (for a change alongside Mender: useradm).",
    }
    errors = {
        code: {"description": names[code], "content": {"application/json": {"schema": ERROR_SCHEMA}}} for code in codes
    }
    return documented | errors


def _query_message(error: Mapping[str, Any], raw: Mapping[str, str]) -> str | None:
    """Mender's messages for invalid paging parameters (``rest.utils/paging.go``)."""
    loc = error.get("loc", ())
    if len(loc) != 2 or loc[0] != "query":
        return None
    name = str(loc[1])
    kind = error.get("type")
    if name in ("page", "per_page"):
        if kind == "less_than_equal" and name == "per_page":
            return f'parameter "per_page" above limit (max: {error.get("ctx", {}).get("le", 500)})'
        if kind in ("greater_than_equal", "greater_than"):
            return f"invalid {name} query: value must be a non-zero positive integer"
        return f'invalid {name} query: "{raw.get(name, "")}"'
    return f"invalid {name} query: {format_errors([error], skip_prefix=('query', name)) or 'invalid value'}"


# What Powertools documents a dynamic path parameter (``<name>``) to match: word characters and
# these; the rest of a rule is a regular expression, anchored at both ends (APIGatewayHttpResolver).
_PATH_PARAMETER = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"
_PARAMETER_NAME = re.compile(r"<(\w+)>")

Handler = TypeVar("Handler", bound=Callable[..., Any])
PathCheck = Callable[[Mapping[str, str]], None]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    template: str  # the OpenAPI path template: what ``Request.route`` names the route being served
    pattern: re.Pattern[str]
    handler: Callable[..., Any]


class HttpApi:
    """A Powertools resolver (``app``) with the rules both APIs share, and the table of its routes.

    Routes are declared here (``@api.get(rule, ...)`` takes ``app.get``'s arguments) so that the
    table is ours: Powertools keeps its own private, and the API needs it before a request is
    resolved (authentication runs only for a path some route serves) and after (a path served for
    another method is a 405, not a 404; a route's body model names Go's types in errors).

    The resolver reads request bodies with :func:`devicehooks.jsonenc.loads`: powertools'
    ``json.loads`` takes NaN, lone surrogates and numbers that cannot be written back, and raises
    ``RecursionError`` or ``ValueError`` (a 500) on deep nesting and 4,300-digit integers; ``loads``
    refuses them all with a ``JSONDecodeError``, which request validation reports as
    ``json_invalid``: Mender's 400 ``malformed request body: ...``.

    ``path_check`` checks a route's path parameters (it raises a :class:`DevicehooksError`) before
    its body is looked at, as Mender's handlers parse the path's ids before they bind the body.
    """

    def __init__(self, *, enable_validation: bool = False, path_check: PathCheck | None = None) -> None:
        self.app = APIGatewayHttpResolver(enable_validation=enable_validation, json_body_deserializer=loads)
        self._routes: list[_Route] = []
        _install(self, path_check)

    def get(self, rule: str, **options: Any) -> Callable[[Handler], Handler]:
        return self._declare("GET", rule, options)

    def post(self, rule: str, **options: Any) -> Callable[[Handler], Handler]:
        return self._declare("POST", rule, options)

    def put(self, rule: str, **options: Any) -> Callable[[Handler], Handler]:
        return self._declare("PUT", rule, options)

    def delete(self, rule: str, **options: Any) -> Callable[[Handler], Handler]:
        return self._declare("DELETE", rule, options)

    def serves(self, path: str) -> bool:
        """Whether some route, of any method, serves ``path``."""
        return any(route.pattern.match(path) for route in self._routes)

    def body_model(self) -> type | None:
        """The Go-described input model (``go_fields``) of the body of the route being served."""
        request = self.app.request
        for route in self._routes:
            if route.method == request.method and route.template == request.route:
                return _input_model(route.handler)
        return None

    def _declare(self, method: str, rule: str, options: dict[str, Any]) -> Callable[[Handler], Handler]:
        register = self.app.route(rule, method, **options)
        template = _PARAMETER_NAME.sub(lambda name: "{" + name.group(1) + "}", rule)
        regex = _PARAMETER_NAME.sub(lambda name: f"(?P<{name.group(1)}>{_PATH_PARAMETER})", rule)
        pattern = re.compile(f"^{regex}$")

        def declare(handler: Handler) -> Handler:
            self._routes.append(_Route(method, template, pattern, handler))
            return register(handler)

        return declare


@functools.cache
def _input_model(handler: Callable[..., Any]) -> type | None:
    """The model of ``handler``'s body parameter (annotated ``Body()``), if it describes Go's types.
    Worked out on the first validation error that needs it: evaluating annotations at import would
    cost every cold start."""
    from aws_lambda_powertools.event_handler.openapi.params import Body

    hints = typing.get_type_hints(handler, include_extras=True)
    for name in inspect.signature(handler).parameters:
        hint = hints.get(name)
        if typing.get_origin(hint) is not Annotated:
            continue
        annotation, *metadata = typing.get_args(hint)
        if any(isinstance(item, Body) for item in metadata):
            for candidate in (annotation, *typing.get_args(annotation)):
                if isinstance(candidate, type) and hasattr(candidate, "go_fields"):
                    return candidate
            return None
    return None


def _go_type_message(api: HttpApi, errors: list[Any]) -> str | None:
    """Mender's ``malformed request body: json: ...`` when a body value has the wrong JSON type."""
    error = first_type_error(e for e in errors if tuple(e.get("loc", ()))[:1] == ("body",))
    if error is None:
        return None
    model = api.body_model()
    if model is None:
        return None
    go = go_unmarshal_error(model, [str(p) for p in tuple(error["loc"])[1:]], error.get("input"))
    return None if go is None else f"malformed request body: {go}"


def _install(api: HttpApi, path_check: PathCheck | None) -> None:
    """Register error handlers (Mender's body for every failure) and the 404/405 handler.

    They read the request through Powertools' public ``app.request`` (the route being served and
    its path parameters) and ``app.current_event``. Not through ``app.use`` middlewares: request
    validation runs before them, so none would run for a request whose validation failed.
    """
    app = api.app

    @app.exception_handler(DevicehooksError)  # type: ignore[untyped-decorator]
    def _domain_error(exc: DevicehooksError) -> Response[str]:
        return error_response(exc.status_code, exc.message)

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def _invalid(exc: RequestValidationError) -> Response[str]:
        errors = list(exc.errors())
        if path_check is not None:
            try:
                path_check(app.request.path_parameters)
            except DevicehooksError as problem:
                return error_response(problem.status_code, problem.message)
        raw = app.current_event.query_string_parameters or {}
        for error in errors:
            message = _query_message(error, raw)
            if message is not None:
                return error_response(400, message)
        for error in errors:
            if error.get("type") == "json_invalid":
                detail = error.get("ctx", {}).get("error", "invalid JSON")
                return error_response(400, f"malformed request body: invalid JSON: {detail}")
        go_message = _go_type_message(api, errors)
        if go_message is not None:
            return error_response(400, go_message)
        body_errors = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("body",)]
        if body_errors and all(len(e.get("loc", ())) == 1 for e in body_errors):
            kind = body_errors[0].get("type")
            text = "request body is required" if kind == "missing" else "the body must be a JSON object"
            return error_response(400, f"malformed request body: {text}")
        return error_response(400, "malformed request body: " + format_errors(errors, skip_prefix=("body",)))

    @app.not_found
    def _not_found(_: NotFoundError) -> Response[str]:
        if api.serves(app.current_event.path):
            return error_response(405, "method not allowed")
        return error_response(404, "not found")


def openapi_document(
    app: APIGatewayHttpResolver, patch: Callable[[dict[str, Any]], None] | None = None, **info: Any
) -> dict[str, Any]:
    """The app's OpenAPI document, with the validation answers as they really are (400, not 422)."""
    schema: dict[str, Any] = json.loads(app.get_openapi_json_schema(**info))
    if patch is not None:
        patch(schema)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for response in responses.values():
                # powertools documents the handler's return annotation (Response[str]) as the body
                body = response.get("content", {}).get("application/json", {}).get("schema", {})
                if body == {"type": "string", "title": "Return"}:
                    response.pop("content", None)
                else:
                    body.pop("title", None)
    schemas = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return schema


def docs_routes(
    api: HttpApi,
    docs_path: str,
    json_path: str,
    info: Callable[[], dict[str, Any]],
    patch: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Serve the OpenAPI document at ``json_path`` and Swagger UI (bundled, no CDN) at ``docs_path``.

    Not ``app.enable_swagger``: it serves powertools' own document, with no hook to drop the 422s
    nobody answers or to add the bodies the internal API reads by hand, and serves it only as the
    UI path's ``?format=json`` (not at ``openapi.json``, not written as Mender writes JSON); its
    pages are ``text/html`` without a charset. These two routes use its public pieces instead
    (``get_openapi_json_schema``, ``swagger_ui.generate_swagger_html`` and the bundled assets).
    """
    app = api.app

    @api.get(json_path, include_in_schema=False)
    def _openapi() -> Response[str]:
        return json_response(200, openapi_document(app, patch, **info()))

    @api.get(docs_path, include_in_schema=False)
    def _swagger() -> Response[str]:
        from pathlib import Path

        from aws_lambda_powertools.event_handler.openapi import swagger_ui

        assets = Path(swagger_ui.__file__).parent
        spec = dumps(openapi_document(app, patch, **info())).replace("</", "<\\/")
        html = swagger_ui.generate_swagger_html(
            spec,
            (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
            (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
            "",
            None,
            False,
        )
        return Response(status_code=200, content_type="text/html; charset=utf-8", body=html)


def _header(event: Mapping[str, Any], name: str) -> str | None:
    headers = event.get("headers") or {}
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return str(val)
    return None


def _body_bytes(event: Mapping[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            return body.encode()
    return str(body).encode()


def _as_text_body(event: dict[str, Any], raw: bytes) -> None:
    """Hand the handlers the body as text, read as Go's ``encoding/json`` reads bytes.

    API Gateway base64-encodes a body that is not UTF-8 text. Mender decodes such a body as
    JSON all the same, and invalid UTF-8 becomes U+FFFD: inside a string it is kept, anywhere
    else the JSON is invalid (a 400). Without this, decoding the body raised (a 500).
    """
    if event.get("isBase64Encoded"):
        event["body"] = raw.decode("utf-8", errors="replace")
        event["isBase64Encoded"] = False


def serve(
    app: APIGatewayHttpResolver,
    event: dict[str, Any],
    context: LambdaContext,
    size_limit: int,
    before: Callable[[dict[str, Any]], Response[str] | None] | None = None,
) -> dict[str, Any]:
    """Resolve one API Gateway (HTTP API, payload 2.0) event with the cross-cutting rules applied.

    Every response carries ``X-MEN-RequestID``; bodies over ``size_limit`` are refused with 413
    before anything parses them; anything unexpected becomes a 500 with no internals in it.
    """
    given = (_header(event, REQUEST_ID_HEADER) or "").strip()
    rid = given[:MAX_REQUEST_ID] if given and given.isprintable() else str(uuid.uuid4())
    token = _request_id.set(rid)
    try:
        declared = _header(event, "content-length")
        raw = _body_bytes(event)
        too_large = len(raw) > size_limit or (
            declared is not None and declared.isdigit() and int(declared) > size_limit
        )
        if too_large:
            early: Response[str] | None = error_response(413, "http: request body too large")
        else:
            _as_text_body(event, raw)
            early = before(event) if before is not None else None
        if early is not None:
            response = _render(early)
        else:
            headers = event.setdefault("headers", {}) or {}
            # Mender decodes the body as JSON whatever Content-Type says (gin ShouldBindJSON)
            for key in [k for k in headers if k.lower() == "content-type"]:
                del headers[key]
            event["headers"] = headers
            try:
                response = app.resolve(event, context)
            except Exception:
                logger.exception("unhandled error", extra={"request_id": rid})
                response = _render(error_response(500, "internal error"))
        response.setdefault("headers", {})[REQUEST_ID_HEADER] = rid
        return response
    finally:
        _request_id.reset(token)


def _render(response: Response[str]) -> dict[str, Any]:
    headers = {k: (v if isinstance(v, str) else ",".join(v)) for k, v in response.headers.items()}
    if response.content_type:
        headers["Content-Type"] = response.content_type
    return {
        "statusCode": response.status_code,
        "headers": headers,
        "body": response.body or "",
        "isBase64Encoded": False,
    }
