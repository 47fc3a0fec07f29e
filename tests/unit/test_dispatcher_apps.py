"""The app registry: config file, mounted-secrets directory, emulator env; secrets stay hidden."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dispatcher._apps import AppRegistry, Secret
from dispatcher._auth import ApnsTokenSigner
from pushline.emulators._tls import (
    ApnsCredentials,
    FcmCredentials,
    generate_apns_credentials,
    generate_fcm_credentials,
)
from pushline.errors import ConfigError


@pytest.fixture(scope="module")
def creds(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ApnsCredentials, FcmCredentials]:
    directory = tmp_path_factory.mktemp("creds")
    return (
        generate_apns_credentials(directory, topic="com.example.shop"),
        generate_fcm_credentials(directory, token_uri="https://127.0.0.1:1/token"),
    )


def secrets_of(creds: tuple[ApnsCredentials, FcmCredentials]) -> list[str]:
    apns, fcm = creds
    account = json.loads(fcm.service_account_file.read_text())
    # a line from the middle of each PEM: any leak of the key shows it
    return [
        apns.key_file.read_text().splitlines()[1],
        account["private_key"].splitlines()[1],
    ]


def write_apps_toml(tmp_path: Path, creds: tuple[ApnsCredentials, FcmCredentials]) -> Path:
    apns, fcm = creds
    keys = tmp_path / "keys"
    keys.mkdir()
    shutil.copy(apns.key_file, keys / "shop.p8")
    shutil.copy(fcm.service_account_file, keys / "shop-fcm.json")
    path = tmp_path / "apps.toml"
    path.write_text(
        f"""
[apps.shop.apns]
team_id = "{apns.team_id}"
key_id = "{apns.key_id}"
key_file = "keys/shop.p8"
topic = "com.example.shop"
environment = "development"

[apps.shop.fcm]
service_account_file = "keys/shop-fcm.json"

[apps.news.fcm]
service_account_file = "keys/shop-fcm.json"
project_id = "news-prod"
base_url = "https://fcm.example.test/"
ca_file = "ca.pem"
"""
    )
    return path


def test_from_file_resolves_paths_relative_to_the_file(
    tmp_path: Path, creds: tuple[ApnsCredentials, FcmCredentials]
) -> None:
    registry = AppRegistry.from_env({"PUSHLINE_APPS_FILE": str(write_apps_toml(tmp_path, creds))})
    assert set(registry.app_ids) == {"shop", "news"}
    shop_apns = registry.apns("shop")
    assert shop_apns is not None
    assert shop_apns.key_id == creds[0].key_id and shop_apns.team_id == creds[0].team_id
    assert shop_apns.url == "https://api.sandbox.push.apple.com"
    assert shop_apns.private_key.reveal() == creds[0].key_file.read_text()
    shop_fcm, news_fcm = registry.fcm("shop"), registry.fcm("news")
    assert shop_fcm is not None and news_fcm is not None
    assert shop_fcm.project_id == "pushline-test"  # from the service account
    assert shop_fcm.url == "https://fcm.googleapis.com"
    assert shop_fcm.service_account.token_uri == "https://127.0.0.1:1/token"
    assert news_fcm.project_id == "news-prod" and news_fcm.url == "https://fcm.example.test"
    assert news_fcm.ca_file == str(tmp_path / "ca.pem")
    assert registry.apns("news") is None and registry.get("nope") is None


def test_from_json_file(tmp_path: Path, creds: tuple[ApnsCredentials, FcmCredentials]) -> None:
    apns, _ = creds
    path = tmp_path / "apps.json"
    path.write_text(
        json.dumps(
            {
                "apps": {
                    "shop": {
                        "apns": {
                            "team_id": apns.team_id,
                            "key_id": apns.key_id,
                            "key_file": str(apns.key_file),
                            "topic": "com.example.shop",
                        }
                    }
                }
            }
        )
    )
    config = AppRegistry.from_file(path).apns("shop")
    assert config is not None and config.url == "https://api.push.apple.com"


def test_from_dir_reads_mounted_secrets(
    tmp_path: Path, creds: tuple[ApnsCredentials, FcmCredentials]
) -> None:
    apns, fcm = creds
    shop = tmp_path / "shop"
    shop.mkdir()
    shutil.copy(apns.key_file, shop / "apns.p8")
    (shop / "apns.json").write_text(
        json.dumps({"team_id": apns.team_id, "key_id": apns.key_id, "topic": "com.example.shop"})
    )
    shutil.copy(fcm.service_account_file, shop / "fcm-service-account.json")
    news = tmp_path / "news"
    news.mkdir()
    shutil.copy(fcm.service_account_file, news / "fcm-service-account.json")
    (news / "fcm.json").write_text(json.dumps({"project_id": "news-prod"}))
    (tmp_path / "..data").mkdir()  # Kubernetes' secret volume bookkeeping is skipped

    registry = AppRegistry.from_env({"PUSHLINE_APPS_DIR": str(tmp_path)})
    assert registry.app_ids == ("news", "shop")
    assert registry.apns("shop") is not None and registry.fcm("shop") is not None
    news_fcm = registry.fcm("news")
    assert registry.apns("news") is None and news_fcm is not None
    assert news_fcm.project_id == "news-prod"


def test_from_emulator_env_registers_default_and_listed_ids(
    creds: tuple[ApnsCredentials, FcmCredentials],
) -> None:
    apns, fcm = creds
    env = {
        "APNS_URL": "https://127.0.0.1:9/",
        "APNS_KEY_FILE": str(apns.key_file),
        "APNS_KEY_ID": apns.key_id,
        "APNS_TEAM_ID": apns.team_id,
        "APNS_TOPIC": apns.topic,
        "FCM_URL": "https://127.0.0.1:10",
        "FCM_TOKEN_URI": "https://127.0.0.1:10/token",
        "FCM_SERVICE_ACCOUNT_FILE": str(fcm.service_account_file),
        "FCM_PROJECT_ID": fcm.project_id,
        "PUSHLINE_CA_FILE": "/tmp/ca.pem",
        "PUSHLINE_DEFAULT_APP_ID": "main",
        "PUSHLINE_APP_IDS": "shop, news,,shop",
    }
    registry = AppRegistry.from_env(env)
    assert registry.app_ids == ("main", "shop", "news")
    for app_id in registry.app_ids:
        config = registry.apns(app_id)
        assert config is not None and config.url == "https://127.0.0.1:9"
        assert config.ca_file == "/tmp/ca.pem" and config.environment == "development"
        fcm_config = registry.fcm(app_id)
        assert fcm_config is not None
        assert fcm_config.service_account.token_uri == "https://127.0.0.1:10/token"
    assert AppRegistry.from_env({**env, "PUSHLINE_DEFAULT_APP_ID": ""}).app_ids[0] == "default"


def test_file_takes_precedence_over_emulator_env(
    tmp_path: Path, creds: tuple[ApnsCredentials, FcmCredentials]
) -> None:
    path = write_apps_toml(tmp_path, creds)
    registry = AppRegistry.from_env({"PUSHLINE_APPS_FILE": str(path), "APNS_URL": "https://x"})
    assert set(registry.app_ids) == {"shop", "news"}


def test_nothing_configured_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="PUSHLINE_APPS_FILE"):
        AppRegistry.from_env({})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda t: t.replace('key_file = "keys/shop.p8"', 'key_file = "keys/gone.p8"'),
            "does not exist",
        ),
        (
            lambda t: t.replace('environment = "development"', 'environment = "staging"'),
            "environment",
        ),
        (lambda t: t.replace('topic = "com.example.shop"\n', ""), "'topic' is required"),
        (lambda t: t.replace("[apps.shop.apns]", "[apps.shop.apn]"), "unknown keys"),
        (lambda t: t + "\n[[broken", "cannot be parsed"),
    ],
)
def test_invalid_file_errors_name_the_problem(
    tmp_path: Path, creds: tuple[ApnsCredentials, FcmCredentials], mutate: object, message: str
) -> None:
    path = write_apps_toml(tmp_path, creds)
    path.write_text(mutate(path.read_text()))  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message):
        AppRegistry.from_file(path)


def test_bad_team_id_is_refused(
    tmp_path: Path, creds: tuple[ApnsCredentials, FcmCredentials]
) -> None:
    path = write_apps_toml(tmp_path, creds)
    path.write_text(path.read_text().replace(creds[0].team_id, "short"))
    with pytest.raises(ConfigError, match="team_id must be 10"):
        AppRegistry.from_file(path)


def test_missing_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        AppRegistry.from_env({"PUSHLINE_APPS_FILE": str(tmp_path / "nope.toml")})
    with pytest.raises(ConfigError, match="not a directory"):
        AppRegistry.from_env({"PUSHLINE_APPS_DIR": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="no app sub-directories"):
        AppRegistry.from_dir(tmp_path)
    (tmp_path / "empty-app").mkdir()
    with pytest.raises(ConfigError, match=r"neither apns\.json nor fcm-service-account\.json"):
        AppRegistry.from_dir(tmp_path)


def test_wrong_key_types_are_refused_without_quoting_them(
    tmp_path: Path, creds: tuple[ApnsCredentials, FcmCredentials]
) -> None:
    apns, fcm = creds
    path = write_apps_toml(tmp_path, creds)
    # an RSA key where APNs needs P-256
    account = json.loads(fcm.service_account_file.read_text())
    (tmp_path / "keys" / "shop.p8").write_text(account["private_key"])
    with pytest.raises(ConfigError, match="expected EllipticCurvePrivateKey") as info:
        AppRegistry.from_file(path)
    assert account["private_key"].splitlines()[1] not in str(info.value)
    # a P-384 key
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "keys" / "shop.p8").write_bytes(p384)
    with pytest.raises(ConfigError, match="P-256"):
        AppRegistry.from_file(path)
    # not a key at all, and a service-account file that is not JSON
    (tmp_path / "keys" / "shop.p8").write_text("garbage that is secret")
    with pytest.raises(ConfigError, match="readable unencrypted PEM") as info:
        AppRegistry.from_file(path)
    assert "garbage" not in str(info.value)
    shutil.copy(apns.key_file, tmp_path / "keys" / "shop.p8")
    (tmp_path / "keys" / "shop-fcm.json").write_text('{"private_key": "secret-ish"')
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        AppRegistry.from_file(path)
    assert "secret-ish" not in str(info.value)


def test_secrets_never_appear_in_repr_or_str(
    tmp_path: Path, creds: tuple[ApnsCredentials, FcmCredentials]
) -> None:
    registry = AppRegistry.from_file(write_apps_toml(tmp_path, creds))
    shown = [repr(registry), str(registry)]
    for app_id in registry.app_ids:
        app = registry.get(app_id)
        shown += [repr(app), str(app)]
        for config in (registry.apns(app_id), registry.fcm(app_id)):
            shown += [repr(config), str(config)]
    text = "\n".join(shown)
    assert "shop" in text and creds[0].key_id in text  # the reprs do say something
    for secret in secrets_of(creds):
        assert secret not in text
    assert repr(Secret("hunter2")) == str(Secret("hunter2")) == "Secret('********')"
    assert f"{Secret('hunter2')}" == "Secret('********')"


def test_apns_token_signer_reuses_within_max_age(
    tmp_path: Path, creds: tuple[ApnsCredentials, FcmCredentials]
) -> None:
    config = AppRegistry.from_file(write_apps_toml(tmp_path, creds)).apns("shop")
    assert config is not None
    now = [1000.0]
    signer = ApnsTokenSigner(config, max_age=1200, monotonic=lambda: now[0])
    first = signer.token()
    now[0] += 1199
    assert signer.token() == first and signer.mints == 1
    now[0] += 1
    second = signer.token()
    assert signer.mints == 2
    # a refused old token does not force a mint when a newer one exists
    assert signer.refresh(first) == second and signer.mints == 2
    # a refused current token is replaced, but at most once a minute
    third = signer.refresh(second)
    assert signer.mints == 3
    assert signer.token() == third  # later sends use the replacement, not the refused one
    assert signer.refresh(third) == third and signer.mints == 3
    now[0] += 61
    signer.refresh(third)
    assert signer.mints == 4
    with pytest.raises(ConfigError, match="20-50 minutes"):
        ApnsTokenSigner(config, max_age=3600)
