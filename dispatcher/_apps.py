"""The app registry: which APNs team/key/topic and which FCM project/service account an app id uses.

Three sources, picked by :meth:`AppRegistry.from_env`:

1. ``PUSHLINE_APPS_FILE`` — one TOML (or ``.json``) file; key file paths are relative to it::

       [apps.shop.apns]
       team_id = "ABCDE12345"                      # 10 characters
       key_id = "KEY1234567"                       # 10 characters
       key_file = "keys/AuthKey_KEY1234567.p8"     # the .p8 Apple hands out
       topic = "com.example.shop"                  # bundle id; push-type suffixes are added per push
       environment = "production"                  # or "development" (sandbox host)
       # base_url = "https://..."   (overrides the host: an emulator)  ca_file = "ca.pem"

       [apps.shop.fcm]
       service_account_file = "keys/shop-firebase.json"
       # project_id = "..."   (default: the service account's project_id)  base_url, ca_file

2. ``PUSHLINE_APPS_DIR`` — a directory of mounted secrets, one sub-directory per app id::

       <dir>/<app_id>/apns.json                  {"team_id", "key_id", "topic", "environment",
                                                  optional "key_file" (default apns.p8),
                                                  "base_url", "ca_file"}
       <dir>/<app_id>/apns.p8                    the signing key
       <dir>/<app_id>/fcm-service-account.json   the Google service-account file
       <dir>/<app_id>/fcm.json                   optional {"project_id", "base_url", "ca_file"}

   Entries starting with ``.`` are skipped (Kubernetes' ``..data`` links).

3. The emulator variables of ``pushline emulate stack`` (``APNS_URL``, ``FCM_URL``, ...), registered
   under ``PUSHLINE_DEFAULT_APP_ID`` (default ``default``) and every id in ``PUSHLINE_APP_IDS``.

Private keys are held in :class:`Secret`, whose repr and str never show the value.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushline.errors import ConfigError

__all__ = [
    "APNS_HOSTS",
    "FCM_DEFAULT_URL",
    "FCM_TOKEN_URI",
    "ApnsAppConfig",
    "AppConfig",
    "AppRegistry",
    "FcmAppConfig",
    "FcmServiceAccount",
    "Secret",
]

APNS_HOSTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "production": "https://api.push.apple.com",
        "development": "https://api.sandbox.push.apple.com",
    }
)
FCM_DEFAULT_URL: Final = "https://fcm.googleapis.com"
FCM_TOKEN_URI: Final = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret

_TEN_CHARS = re.compile(r"[A-Z0-9]{10}")
_ENVIRONMENTS = {"production": "production", "development": "development", "sandbox": "development"}


class Secret:
    """A secret string. ``repr``/``str`` print a mask; :meth:`reveal` is the only way to the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ApnsAppConfig:
    """Token-auth credentials and target of one app on APNs."""

    team_id: str
    key_id: str
    private_key: Secret = field(repr=False)
    """The .p8 (PKCS#8 PEM) ES256 signing key."""
    topic: str
    environment: Literal["production", "development"] = "production"
    base_url: str | None = None
    """Overrides the environment's host (an emulator); no trailing slash."""
    ca_file: str | None = None
    """Trust only this CA (an emulator's); None: the system trust store."""

    @property
    def url(self) -> str:
        return (self.base_url or APNS_HOSTS[self.environment]).rstrip("/")


@dataclass(frozen=True, slots=True)
class FcmServiceAccount:
    """The fields of a Google service-account JSON file the OAuth2 flow needs."""

    client_email: str
    private_key: Secret = field(repr=False)
    private_key_id: str
    token_uri: str = FCM_TOKEN_URI
    project_id: str | None = None


@dataclass(frozen=True, slots=True)
class FcmAppConfig:
    """One app's FCM project and the service account that may send for it."""

    project_id: str
    service_account: FcmServiceAccount
    base_url: str | None = None
    ca_file: str | None = None

    @property
    def url(self) -> str:
        return (self.base_url or FCM_DEFAULT_URL).rstrip("/")


@dataclass(frozen=True, slots=True)
class AppConfig:
    app_id: str
    apns: ApnsAppConfig | None = None
    fcm: FcmAppConfig | None = None


# --- loading helpers (each error names the file, never its contents) ---------------------------


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {type(exc).__name__}") from None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(_read_text(path, what))
    except json.JSONDecodeError as exc:
        # the position only: the message of a decode error can quote the (secret) text
        raise ConfigError(f"{what} {path} is not valid JSON (line {exc.lineno})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{what} {path} must hold a JSON object")
    return document


def _str(d: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = d.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key!r} is required and must be a non-empty string")
    return value.strip()


def _opt_str(d: Mapping[str, Any], key: str, where: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    return value.strip()


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _check_private_key(pem: str, kind: type[Any], source: str) -> Secret:
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{source} does not hold a readable unencrypted PEM private key"
        ) from None
    if not isinstance(key, kind):
        raise ConfigError(f"{source} holds a {type(key).__name__}, expected {kind.__name__}")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name != "secp256r1":
        raise ConfigError(f"{source} is on curve {key.curve.name}; APNs needs P-256 (ES256)")
    return Secret(pem)


def load_apns_key(path: Path) -> Secret:
    return _check_private_key(
        _read_text(path, "APNs key file"), ec.EllipticCurvePrivateKey, f"APNs key file {path}"
    )


def make_apns_config(
    d: Mapping[str, Any], where: str, base: Path, default_key_file: str | None = None
) -> ApnsAppConfig:
    team_id = _str(d, "team_id", where)
    key_id = _str(d, "key_id", where)
    for name, value in (("team_id", team_id), ("key_id", key_id)):
        if not _TEN_CHARS.fullmatch(value):
            raise ConfigError(f"{where}: {name} must be 10 upper-case letters or digits")
    raw_env = _str(d, "environment", where, "production").lower()
    environment = _ENVIRONMENTS.get(raw_env)
    if environment is None:
        raise ConfigError(
            f"{where}: environment must be production or development, not {raw_env!r}"
        )
    key_file = _resolve(base, _str(d, "key_file", where, default_key_file))
    assert key_file is not None
    return ApnsAppConfig(
        team_id=team_id,
        key_id=key_id,
        private_key=load_apns_key(Path(key_file)),
        topic=_str(d, "topic", where),
        environment=environment,  # type: ignore[arg-type]
        base_url=_opt_str(d, "base_url", where),
        ca_file=_resolve(base, _opt_str(d, "ca_file", where)),
    )


def load_service_account(path: Path, token_uri: str | None = None) -> FcmServiceAccount:
    """Read a Google service-account file; ``token_uri`` overrides the file's."""
    where = f"service-account file {path}"
    document = _read_json(path, "service-account file")
    if document.get("type", "service_account") != "service_account":
        raise ConfigError(f"{where}: type must be service_account")
    pem = _str(document, "private_key", where)
    return FcmServiceAccount(
        client_email=_str(document, "client_email", where),
        private_key=_check_private_key(pem, rsa.RSAPrivateKey, where),
        private_key_id=_str(document, "private_key_id", where),
        token_uri=token_uri or _str(document, "token_uri", where, FCM_TOKEN_URI),
        project_id=_opt_str(document, "project_id", where),
    )


def make_fcm_config(
    d: Mapping[str, Any], where: str, base: Path, default_account_file: str | None = None
) -> FcmAppConfig:
    account_file = _resolve(base, _str(d, "service_account_file", where, default_account_file))
    assert account_file is not None
    account = load_service_account(Path(account_file), _opt_str(d, "token_uri", where))
    project_id = _opt_str(d, "project_id", where) or account.project_id
    if project_id is None:
        raise ConfigError(f"{where}: project_id is missing (and the service account has none)")
    return FcmAppConfig(
        project_id=project_id,
        service_account=account,
        base_url=_opt_str(d, "base_url", where),
        ca_file=_resolve(base, _opt_str(d, "ca_file", where)),
    )


# --- the registry -------------------------------------------------------------------------------


class AppRegistry:
    """app_id → :class:`AppConfig`. Immutable once built; safe to share."""

    def __init__(self, apps: Iterable[AppConfig]) -> None:
        table: dict[str, AppConfig] = {}
        for app in apps:
            if app.app_id in table:
                raise ConfigError(f"app id {app.app_id!r} is configured twice")
            if app.apns is None and app.fcm is None:
                raise ConfigError(f"app {app.app_id!r} has neither apns nor fcm credentials")
            table[app.app_id] = app
        self._apps: Mapping[str, AppConfig] = MappingProxyType(table)

    def __repr__(self) -> str:
        platforms = {
            a.app_id: [p for p, c in (("apns", a.apns), ("fcm", a.fcm)) if c is not None]
            for a in self._apps.values()
        }
        return f"AppRegistry({platforms})"

    def __len__(self) -> int:
        return len(self._apps)

    @property
    def app_ids(self) -> tuple[str, ...]:
        return tuple(self._apps)

    def get(self, app_id: str) -> AppConfig | None:
        return self._apps.get(app_id)

    def apns(self, app_id: str) -> ApnsAppConfig | None:
        app = self._apps.get(app_id)
        return None if app is None else app.apns

    def fcm(self, app_id: str) -> FcmAppConfig | None:
        app = self._apps.get(app_id)
        return None if app is None else app.fcm

    # --- sources ----------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> AppRegistry:
        """A TOML file (or JSON, by the ``.json`` suffix) with an ``apps`` table; see the module doc."""
        path = Path(path)
        text = _read_text(path, "apps file")
        try:
            document: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"apps file {path} cannot be parsed: {exc}") from None
        apps = document.get("apps") if isinstance(document, dict) else None
        if not isinstance(apps, dict) or not apps:
            raise ConfigError(f"apps file {path} has no [apps.<app_id>] entries")
        base = path.parent
        configs = []
        for app_id, entry in apps.items():
            where = f"{path}: apps.{app_id}"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where} must be a table")
            unknown = set(entry) - {"apns", "fcm"}
            if unknown:
                raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (expected apns, fcm)")
            apns, fcm = entry.get("apns"), entry.get("fcm")
            if apns is not None and not isinstance(apns, dict):
                raise ConfigError(f"{where}.apns must be a table")
            if fcm is not None and not isinstance(fcm, dict):
                raise ConfigError(f"{where}.fcm must be a table")
            configs.append(
                AppConfig(
                    app_id,
                    None if apns is None else make_apns_config(apns, f"{where}.apns", base),
                    None if fcm is None else make_fcm_config(fcm, f"{where}.fcm", base),
                )
            )
        return cls(configs)

    @classmethod
    def from_dir(cls, directory: str | Path) -> AppRegistry:
        """A directory of mounted secrets, one sub-directory per app id; see the module doc."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ConfigError(f"apps directory {directory} does not exist or is not a directory")
        configs = []
        for app_dir in sorted(directory.iterdir()):
            if app_dir.name.startswith(".") or not app_dir.is_dir():
                continue
            apns = fcm = None
            if (app_dir / "apns.json").exists():
                apns_file = app_dir / "apns.json"
                apns = make_apns_config(
                    _read_json(apns_file, "APNs config"), str(apns_file), app_dir, "apns.p8"
                )
            account = app_dir / "fcm-service-account.json"
            if account.exists() or (app_dir / "fcm.json").exists():
                fcm_file = app_dir / "fcm.json"
                extra = _read_json(fcm_file, "FCM config") if fcm_file.exists() else {}
                fcm = make_fcm_config(extra, str(fcm_file), app_dir, account.name)
            if apns is None and fcm is None:
                raise ConfigError(f"{app_dir} has neither apns.json nor fcm-service-account.json")
            configs.append(AppConfig(app_dir.name, apns, fcm))
        if not configs:
            raise ConfigError(f"apps directory {directory} holds no app sub-directories")
        return cls(configs)

    @classmethod
    def from_emulator_env(cls, env: Mapping[str, str]) -> AppRegistry:
        """The credentials ``pushline emulate stack`` prints, under the default and listed app ids."""
        apns = fcm = None
        if env.get("APNS_URL"):
            missing = [
                k
                for k in ("APNS_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID", "APNS_TOPIC")
                if not env.get(k)
            ]
            if missing:
                raise ConfigError(f"APNS_URL is set but {', '.join(missing)} is not")
            apns = ApnsAppConfig(
                team_id=env["APNS_TEAM_ID"],
                key_id=env["APNS_KEY_ID"],
                private_key=load_apns_key(Path(env["APNS_KEY_FILE"])),
                topic=env["APNS_TOPIC"],
                environment="development",
                base_url=env["APNS_URL"].rstrip("/"),
                ca_file=env.get("PUSHLINE_CA_FILE") or None,
            )
        if env.get("FCM_URL"):
            if not env.get("FCM_SERVICE_ACCOUNT_FILE"):
                raise ConfigError("FCM_URL is set but FCM_SERVICE_ACCOUNT_FILE is not")
            account = load_service_account(
                Path(env["FCM_SERVICE_ACCOUNT_FILE"]), env.get("FCM_TOKEN_URI") or None
            )
            project_id = env.get("FCM_PROJECT_ID") or account.project_id
            if not project_id:
                raise ConfigError("FCM_URL is set but FCM_PROJECT_ID is not")
            fcm = FcmAppConfig(
                project_id=project_id,
                service_account=account,
                base_url=env["FCM_URL"].rstrip("/"),
                ca_file=env.get("PUSHLINE_CA_FILE") or None,
            )
        default = env.get("PUSHLINE_DEFAULT_APP_ID", "").strip() or "default"
        extra = [a.strip() for a in env.get("PUSHLINE_APP_IDS", "").split(",") if a.strip()]
        app_ids = list(dict.fromkeys([default, *extra]))
        return cls(AppConfig(app_id, apns, fcm) for app_id in app_ids)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AppRegistry:
        """``PUSHLINE_APPS_FILE``, else ``PUSHLINE_APPS_DIR``, else the emulator variables."""
        if env.get("PUSHLINE_APPS_FILE"):
            return cls.from_file(env["PUSHLINE_APPS_FILE"])
        if env.get("PUSHLINE_APPS_DIR"):
            return cls.from_dir(env["PUSHLINE_APPS_DIR"])
        if env.get("APNS_URL") or env.get("FCM_URL"):
            return cls.from_emulator_env(env)
        raise ConfigError(
            "no push credentials configured: set PUSHLINE_APPS_FILE or PUSHLINE_APPS_DIR "
            "(or APNS_URL / FCM_URL from `pushline emulate stack`)"
        )
