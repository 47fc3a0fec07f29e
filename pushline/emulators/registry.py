"""An in-memory Confluent Schema Registry for the development stack and the tests.

It speaks the REST subset that confluent-kafka-python's ``SchemaRegistryClient``, ``AvroSerializer``
and ``AvroDeserializer`` use, plus what an operator reaches for (listing, deleting, compatibility
configuration and tests), with Confluent's status codes, ``error_code`` values and response shapes.
Only Avro is supported; schema references, contexts, modes other than READWRITE, metadata and rule
sets are not.

Behaviour worth knowing:

- Schema ids are global and start at 1; the same canonical schema (whitespace and key order do not
  matter) gets the same id under every subject. With ``normalize=true`` names are fully qualified
  before comparing and storing.
- Registering a schema the subject already has (as a live version) returns its id without a
  compatibility check; anything else is checked against the subject's live versions according to its
  compatibility level (subject level, else global, default BACKWARD). Non-transitive levels check
  against the latest version only.
- Deletes are soft by default (``permanent=true`` then removes what was soft-deleted), as in
  Confluent. An id, once given, stays resolvable through ``GET /schemas/ids/{id}`` even after its
  versions are deleted, so old messages stay readable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pushline.emulators._avro_compat import (
    AvroSchema,
    Incompatibility,
    InvalidSchemaError,
    check_compatibility,
    parse_avro,
)
from pushline.errors import StackError

__all__ = ["COMPATIBILITY_LEVELS", "CONTENT_TYPE", "RegistryServer", "create_registry_app"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
COMPATIBILITY_LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
DEFAULT_COMPATIBILITY = "BACKWARD"
_MAX_VERSION = 2**31 - 1
# Request bodies the registry accepts; Confluent also takes octet-stream for curl users.
_ACCEPTED_BODY_TYPES = (
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
)


class _ApiError(Exception):
    """An error answer: HTTP status is the first three digits of Confluent's error code."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message

    @property
    def status(self) -> int:
        return int(str(self.error_code)[:3])


def _subject_not_found(subject: str) -> _ApiError:
    return _ApiError(40401, f"Subject '{subject}' not found.")


def _version_not_found(version: object) -> _ApiError:
    return _ApiError(40402, f"Version {version} not found.")


def _no_subject_level(subject: str) -> _ApiError:
    return _ApiError(
        40408, f"Subject '{subject}' does not have subject-level compatibility configured"
    )


def _invalid_level() -> _ApiError:
    return _ApiError(
        42203,
        "Invalid compatibility level. Valid values are none, backward, forward, full, "
        "backward_transitive, forward_transitive, and full_transitive",
    )


# ------------------------------------------------------------------------------------------ state


@dataclass
class _Version:
    version: int
    schema_id: int
    deleted: bool = False


@dataclass(frozen=True)
class _Stored:
    schema_id: int
    text: str
    parsed: AvroSchema


@dataclass(frozen=True)
class _Candidate:
    """A schema from a request body, validated, with the text it is stored and compared as."""

    text: str
    parsed: AvroSchema


@dataclass
class _RegistryState:
    """Everything the registry knows, guarded by one lock (handlers may run on any thread)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    by_id: dict[int, _Stored] = field(default_factory=dict)
    id_by_text: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, dict[int, _Version]] = field(default_factory=dict)
    global_level: str = DEFAULT_COMPATIBILITY
    subject_levels: dict[str, str] = field(default_factory=dict)

    def reset(self) -> None:
        with self.lock:
            self.by_id.clear()
            self.id_by_text.clear()
            self.subjects.clear()
            self.subject_levels.clear()
            self.global_level = DEFAULT_COMPATIBILITY

    # -- helpers (callers hold the lock) ---------------------------------------------------------

    def _versions(self, subject: str, *, deleted: bool) -> list[_Version]:
        versions = self.subjects.get(subject, {})
        return [v for _, v in sorted(versions.items()) if deleted or not v.deleted]

    def _live_or_404(self, subject: str, *, deleted: bool = False) -> list[_Version]:
        versions = self._versions(subject, deleted=deleted)
        if not versions:
            raise _subject_not_found(subject)
        return versions

    def _find_version(self, subject: str, version: int | None, *, deleted: bool) -> _Version:
        """``version`` None means latest: the newest live version (or newest at all if deleted)."""
        versions = self._live_or_404(subject, deleted=deleted)
        if version is None:
            live = [v for v in versions if not v.deleted]
            return (live or versions)[-1]
        for v in versions:
            if v.version == version:
                return v
        raise _version_not_found(version)

    def _level(self, subject: str) -> str:
        return self.subject_levels.get(subject, self.global_level)

    def _describe(self, subject: str, v: _Version) -> dict[str, Any]:
        return {
            "subject": subject,
            "version": v.version,
            "id": v.schema_id,
            "schema": self.by_id[v.schema_id].text,
        }

    def _errors(self, candidate: AvroSchema, against: list[_Version], level: str) -> list[str]:
        """Confluent-style detail lines for each version ``candidate`` is incompatible with."""
        if level == "NONE":
            return []
        backward = level.startswith(("BACKWARD", "FULL"))
        forward = level.startswith(("FORWARD", "FULL"))
        details: list[str] = []
        for v in against:
            old = self.by_id[v.schema_id]
            found: list[tuple[Incompatibility, str]] = []
            if backward:
                found += [(i, "new") for i in check_compatibility(candidate, old.parsed)]
            if forward:
                found += [(i, "old") for i in check_compatibility(old.parsed, candidate)]
            if not found:
                continue
            details += [_detail(i, reader) for i, reader in found]
            details += [
                f"{{oldSchemaVersion: {v.version}}}",
                f"{{oldSchema: '{old.text}'}}",
                f"{{compatibility: '{level}'}}",
            ]
        return details

    # -- operations ----------------------------------------------------------------------------

    def register(self, subject: str, candidate: _Candidate) -> dict[str, Any]:
        with self.lock:
            live = self._versions(subject, deleted=False)
            for v in live:
                if self.by_id[v.schema_id].text == candidate.text:
                    return {"id": v.schema_id}
            level = self._level(subject)
            against = live if level.endswith("_TRANSITIVE") else live[-1:]
            details = self._errors(candidate.parsed, against, level)
            if details:
                raise _ApiError(
                    409,
                    "Schema being registered is incompatible with an earlier schema for subject "
                    f'"{subject}", details: [{", ".join(details)}]',
                )
            schema_id = self.id_by_text.get(candidate.text)
            if schema_id is None:
                schema_id = max(self.by_id, default=0) + 1
                self.by_id[schema_id] = _Stored(schema_id, candidate.text, candidate.parsed)
                self.id_by_text[candidate.text] = schema_id
            versions = self.subjects.setdefault(subject, {})
            number = max(versions, default=0) + 1
            versions[number] = _Version(number, schema_id)
            log.debug("registered %s version %d as id %d", subject, number, schema_id)
            return {"id": schema_id}

    def lookup(self, subject: str, candidate: _Candidate, *, deleted: bool) -> dict[str, Any]:
        with self.lock:
            versions = self._live_or_404(subject, deleted=deleted)
            # Newest first: a schema registered, deleted and registered again answers its latest.
            for v in reversed(versions):
                if self.by_id[v.schema_id].text == candidate.text:
                    return self._describe(subject, v)
            raise _ApiError(40403, "Schema not found")

    def schema_by_id(self, schema_id: int) -> _Stored:
        with self.lock:
            stored = self.by_id.get(schema_id)
            if stored is None:
                raise _ApiError(40403, f"Schema {schema_id} not found")
            return stored

    def id_usage(self, schema_id: int, *, deleted: bool) -> list[tuple[str, int]]:
        with self.lock:
            if schema_id not in self.by_id:
                raise _ApiError(40403, f"Schema {schema_id} not found")
            return [
                (subject, v.version)
                for subject in sorted(self.subjects)
                for v in self._versions(subject, deleted=deleted)
                if v.schema_id == schema_id
            ]

    def list_subjects(self, *, deleted: bool, deleted_only: bool, prefix: str) -> list[str]:
        with self.lock:
            names = []
            for subject in sorted(self.subjects):
                if not subject.startswith(prefix):
                    continue
                live = bool(self._versions(subject, deleted=False))
                if deleted_only:
                    if not live and self.subjects[subject]:
                        names.append(subject)
                elif live or (deleted and self.subjects[subject]):
                    names.append(subject)
            return names

    def list_versions(self, subject: str, *, deleted: bool, deleted_only: bool) -> list[int]:
        with self.lock:
            versions = self._live_or_404(subject, deleted=deleted or deleted_only)
            return [v.version for v in versions if v.deleted or not deleted_only]

    def get_version(self, subject: str, version: int | None, *, deleted: bool) -> dict[str, Any]:
        with self.lock:
            return self._describe(subject, self._find_version(subject, version, deleted=deleted))

    def delete_subject(self, subject: str, *, permanent: bool) -> list[int]:
        with self.lock:
            versions = self.subjects.get(subject)
            if not versions:
                raise _subject_not_found(subject)
            live = [v for v in versions.values() if not v.deleted]
            if permanent:
                if live:
                    raise _ApiError(
                        40405,
                        f"Subject '{subject}' was not deleted first before being permanently "
                        "deleted",
                    )
                del self.subjects[subject]
                return sorted(versions)
            if not live:
                raise _ApiError(
                    40404,
                    f"Subject '{subject}' was soft deleted.Set permanent=true to delete "
                    "permanently",
                )
            for v in live:
                v.deleted = True
            # Confluent drops the subject's compatibility setting together with the subject.
            self.subject_levels.pop(subject, None)
            return sorted(v.version for v in live)

    def delete_version(self, subject: str, version: int | None, *, permanent: bool) -> int:
        with self.lock:
            # A numbered version is looked up among soft-deleted ones too, to tell "already deleted"
            # (40406) from "never existed" (40402); "latest" means the newest live version.
            v = self._find_version(subject, version, deleted=permanent or version is not None)
            if permanent:
                if not v.deleted:
                    raise _ApiError(
                        40407,
                        f"Subject '{subject}' Version {v.version} was not deleted first before "
                        "being permanently deleted",
                    )
                del self.subjects[subject][v.version]
                if not self.subjects[subject]:
                    del self.subjects[subject]
                return v.version
            if v.deleted:
                raise _ApiError(
                    40406,
                    f"Subject '{subject}' Version {v.version} was soft deleted.Set "
                    "permanent=true to delete permanently",
                )
            v.deleted = True
            return v.version

    def test_compatibility(
        self, subject: str, candidate: _Candidate, version: int | None, *, all_versions: bool
    ) -> list[str]:
        with self.lock:
            level = self._level(subject)
            if all_versions:
                live = self._versions(subject, deleted=False)
                against = live if level.endswith("_TRANSITIVE") else live[-1:]
            else:
                against = [self._find_version(subject, version, deleted=False)]
            return self._errors(candidate.parsed, against, level)

    def get_level(self, subject: str | None, *, default_to_global: bool) -> str:
        with self.lock:
            if subject is None:
                return self.global_level
            level = self.subject_levels.get(subject)
            if level is not None:
                return level
            if default_to_global:
                return self.global_level
            raise _no_subject_level(subject)

    def set_level(self, subject: str | None, level: str) -> None:
        with self.lock:
            if subject is None:
                self.global_level = level
            else:
                self.subject_levels[subject] = level

    def delete_level(self, subject: str | None) -> str:
        with self.lock:
            if subject is None:
                old, self.global_level = self.global_level, DEFAULT_COMPATIBILITY
                return old
            old_level = self.subject_levels.pop(subject, None)
            if old_level is None:
                raise _no_subject_level(subject)
            return old_level


def _detail(inc: Incompatibility, reader: str) -> str:
    writer = "old" if reader == "new" else "new"
    description = (
        f"{inc.message} (path '{inc.path}'; the {reader} schema is the reader, "
        f"the {writer} schema the writer)"
    )
    return f"{{errorType:'{inc.kind}', description:'{description}', additionalInfo:'{inc.detail}'}}"


# ------------------------------------------------------------------------------------------- HTTP

Handler = Callable[["_Call"], Any]


@dataclass(frozen=True)
class _Call:
    """One request as a handler sees it: path parameters, query and decoded JSON body."""

    state: _RegistryState
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: Any

    def flag(self, name: str) -> bool:
        return self.query.get(name, "false").strip().lower() == "true"

    def int_query(self, name: str, default: int) -> int:
        raw = self.query.get(name)
        try:
            return default if raw is None else int(raw)
        except ValueError:
            raise _ApiError(400, f"Query parameter {name}={raw!r} is not an integer") from None

    def candidate(self) -> _Candidate:
        """The schema in the body, validated; with ``normalize=true`` in normalized form."""
        body = self.body
        if not isinstance(body, dict):
            raise _ApiError(42201, "Invalid schema: the request body must be a JSON object")
        schema_type = str(body.get("schemaType") or "AVRO").upper()
        if schema_type != "AVRO":
            raise _ApiError(
                42201, f"Invalid schema type {schema_type}: this registry supports AVRO only"
            )
        if body.get("references"):
            raise _ApiError(42201, "Invalid schema: schema references are not supported")
        text = body.get("schema")
        if not isinstance(text, str) or not text.strip():
            raise _ApiError(42201, "Empty schema")
        try:
            parsed = parse_avro(text)
        except InvalidSchemaError as exc:
            raise _ApiError(42201, f"Invalid schema {text}, details: {exc}") from exc
        stored = parsed.normalized if self.flag("normalize") else parsed.canonical
        return _Candidate(text=stored, parsed=parsed)

    def version(self) -> int | None:
        """The path's version: None for latest (``latest`` or ``-1``), else a number >= 1."""
        raw = self.params["version"]
        if raw in ("latest", "-1"):
            return None
        try:
            number = int(raw)
        except ValueError:
            number = 0
        if not 1 <= number <= _MAX_VERSION or not raw.isdigit():
            raise _ApiError(
                42202,
                f"The specified version '{raw}' is not a valid version id. Allowed values are "
                'between [1, 2^31-1] and the string "latest"',
            )
        return number

    def schema_id(self) -> int:
        raw = self.params["id"]
        if not raw.isdigit():
            raise _ApiError(404, "HTTP 404 Not Found")
        return int(raw)

    def page(self, items: list[Any]) -> list[Any]:
        offset = max(self.int_query("offset", 0), 0)
        limit = self.int_query("limit", -1)
        return items[offset:] if limit < 0 else items[offset : offset + limit]


def _level_from_body(body: Any) -> str:
    if not isinstance(body, dict):
        raise _invalid_level()
    raw = body.get("compatibility", body.get("compatibilityLevel"))
    level = str(raw).upper() if isinstance(raw, str) else ""
    if level not in COMPATIBILITY_LEVELS:
        raise _invalid_level()
    return level


def _root(_: _Call) -> Any:
    return {}


def _schema_types(_: _Call) -> Any:
    return ["AVRO"]


def _mode(_: _Call) -> Any:
    return {"mode": "READWRITE"}


def _associations(_: _Call) -> Any:
    # Newer clients ask which subject a topic is associated with before falling back to the topic
    # name strategy; this registry has no associations, so the answer is always none.
    return []


def _register(c: _Call) -> Any:
    return c.state.register(c.params["subject"], c.candidate())


def _lookup(c: _Call) -> Any:
    subject = c.params["subject"]
    candidate = c.candidate()
    return c.state.lookup(subject, candidate, deleted=c.flag("deleted"))


def _schema_by_id(c: _Call) -> Any:
    return {"schema": c.state.schema_by_id(c.schema_id()).text}


def _schema_text_by_id(c: _Call) -> Any:
    return _RawSchema(c.state.schema_by_id(c.schema_id()).text)


def _id_versions(c: _Call) -> Any:
    usage = c.state.id_usage(c.schema_id(), deleted=c.flag("deleted"))
    subject = c.query.get("subject")
    return c.page([{"subject": s, "version": v} for s, v in usage if subject in (None, s)])


def _id_subjects(c: _Call) -> Any:
    usage = c.state.id_usage(c.schema_id(), deleted=c.flag("deleted"))
    subject = c.query.get("subject")
    return c.page(sorted({s for s, _ in usage if subject in (None, s)}))


def _subjects(c: _Call) -> Any:
    return c.page(
        c.state.list_subjects(
            deleted=c.flag("deleted"),
            deleted_only=c.flag("deleted_only"),
            prefix=c.query.get("subjectPrefix", ""),
        )
    )


def _versions(c: _Call) -> Any:
    return c.page(
        c.state.list_versions(
            c.params["subject"], deleted=c.flag("deleted"), deleted_only=c.flag("deleted_only")
        )
    )


def _get_version(c: _Call) -> Any:
    return c.state.get_version(c.params["subject"], c.version(), deleted=c.flag("deleted"))


def _get_version_schema(c: _Call) -> Any:
    found = c.state.get_version(c.params["subject"], c.version(), deleted=c.flag("deleted"))
    return _RawSchema(found["schema"])


def _delete_subject(c: _Call) -> Any:
    return c.state.delete_subject(c.params["subject"], permanent=c.flag("permanent"))


def _delete_version(c: _Call) -> Any:
    return c.state.delete_version(c.params["subject"], c.version(), permanent=c.flag("permanent"))


def _compat_answer(c: _Call, details: list[str]) -> Any:
    answer: dict[str, Any] = {"is_compatible": not details}
    if c.flag("verbose"):
        answer["messages"] = details
    return answer


def _compat_version(c: _Call) -> Any:
    version = c.version()
    candidate = c.candidate()
    details = c.state.test_compatibility(
        c.params["subject"], candidate, version, all_versions=False
    )
    return _compat_answer(c, details)


def _compat_all(c: _Call) -> Any:
    candidate = c.candidate()
    details = c.state.test_compatibility(c.params["subject"], candidate, None, all_versions=True)
    return _compat_answer(c, details)


def _get_config(c: _Call) -> Any:
    level = c.state.get_level(c.params.get("subject"), default_to_global=c.flag("defaultToGlobal"))
    return {"compatibilityLevel": level}


def _put_config(c: _Call) -> Any:
    level = _level_from_body(c.body)
    c.state.set_level(c.params.get("subject"), level)
    return {"compatibility": level}


def _delete_config(c: _Call) -> Any:
    return {"compatibilityLevel": c.state.delete_level(c.params.get("subject"))}


@dataclass(frozen=True)
class _RawSchema:
    """A handler answer sent as the schema JSON itself rather than wrapped in an object."""

    text: str


# (method, path pattern) -> handler. Patterns are matched segment by segment on the *raw* path so
# that a subject containing an encoded "/" stays one segment.
_ROUTES: list[tuple[str, tuple[str, ...], Handler]] = [
    ("GET", (), _root),
    ("GET", ("schemas", "types"), _schema_types),
    ("GET", ("schemas", "ids", "{id}"), _schema_by_id),
    ("GET", ("schemas", "ids", "{id}", "schema"), _schema_text_by_id),
    ("GET", ("schemas", "ids", "{id}", "versions"), _id_versions),
    ("GET", ("schemas", "ids", "{id}", "subjects"), _id_subjects),
    ("GET", ("subjects",), _subjects),
    ("POST", ("subjects", "{subject}"), _lookup),
    ("DELETE", ("subjects", "{subject}"), _delete_subject),
    ("GET", ("subjects", "{subject}", "versions"), _versions),
    ("POST", ("subjects", "{subject}", "versions"), _register),
    ("GET", ("subjects", "{subject}", "versions", "{version}"), _get_version),
    ("DELETE", ("subjects", "{subject}", "versions", "{version}"), _delete_version),
    ("GET", ("subjects", "{subject}", "versions", "{version}", "schema"), _get_version_schema),
    ("POST", ("compatibility", "subjects", "{subject}", "versions"), _compat_all),
    ("POST", ("compatibility", "subjects", "{subject}", "versions", "{version}"), _compat_version),
    ("GET", ("config",), _get_config),
    ("PUT", ("config",), _put_config),
    ("DELETE", ("config",), _delete_config),
    ("GET", ("config", "{subject}"), _get_config),
    ("PUT", ("config", "{subject}"), _put_config),
    ("DELETE", ("config", "{subject}"), _delete_config),
    ("GET", ("mode",), _mode),
    ("GET", ("associations", "resources", "{namespace}", "{name}"), _associations),
]


def _match(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(pattern, segments, strict=True):
        if expected.startswith("{"):
            params[expected[1:-1]] = actual
        elif expected != actual:
            return None
    return params


def _error(status: int, error_code: int, message: str) -> Response:
    return JSONResponse(
        {"error_code": error_code, "message": message}, status_code=status, media_type=CONTENT_TYPE
    )


async def _read_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in _ACCEPTED_BODY_TYPES:
        raise _ApiError(415, "HTTP 415 Unsupported Media Type")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _ApiError(400, f"Unexpected request body, not JSON: {exc}") from exc


def _make_endpoint(state: _RegistryState) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
        matched = [(m, h, p) for m, pat, h in _ROUTES if (p := _match(pat, segments)) is not None]
        if not matched:
            return _error(404, 404, "HTTP 404 Not Found")
        chosen = next(((h, p) for m, h, p in matched if m == request.method), None)
        if chosen is None:
            return _error(405, 405, "HTTP 405 Method Not Allowed")
        handler, params = chosen
        try:
            body = await _read_body(request)
            call = _Call(state=state, params=params, query=request.query_params, body=body)
            result = handler(call)
        except _ApiError as exc:
            return _error(exc.status, exc.error_code, exc.message)
        if isinstance(result, _RawSchema):
            return Response(result.text, media_type=CONTENT_TYPE)
        return JSONResponse(result, media_type=CONTENT_TYPE)

    return endpoint


def create_registry_app() -> Starlette:
    """A fresh registry (empty, global compatibility BACKWARD) as an ASGI application."""
    state = _RegistryState()
    route = Route("/{path:path}", _make_endpoint(state), methods=["GET", "POST", "PUT", "DELETE"])
    app = Starlette(routes=[route])
    app.state.registry = state
    return app


# ----------------------------------------------------------------------------------------- server


class RegistryServer:
    """Serves a registry app with uvicorn on a background thread.

    :meth:`start` binds the listening socket itself before the server thread runs (port 0 picks a
    free port) and hands it to uvicorn, so :attr:`url` is known and nothing can take the port in
    between.

        with RegistryServer() as registry:
            client = SchemaRegistryClient({"url": registry.url})
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        app: Starlette | None = None,
        log_level: str = "warning",
    ) -> None:
        self.host = host
        self._requested_port = port
        self.app = app if app is not None else create_registry_app()
        self._log_level = log_level
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise StackError("the schema registry is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Bind, start serving and return once connections are accepted."""
        if self._thread is not None:
            raise StackError("the schema registry is already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
        # without it every keep-alive response waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise StackError(
                f"schema registry cannot bind {self.host}:{self._requested_port}: {exc}"
            ) from exc
        self._socket = sock
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            # None: leave the process's logging configuration alone; only the level is set.
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="schema-registry", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                reason = f": {self._failure}" if self._failure else ""
                raise StackError(f"the schema registry did not start{reason}")
            time.sleep(0.01)
        log.info("schema registry listening on %s", self.url)

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None  # set by start()
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # noqa: BLE001 - reported to start(), thread must not die loud
            self._failure = exc

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and release the port. Safe to call more than once."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._thread = None
        self._server = None

    def reset(self) -> None:
        """Forget every subject, schema id and setting, as if freshly started (for tests)."""
        state = self.app.state.registry
        assert isinstance(state, _RegistryState)
        state.reset()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
