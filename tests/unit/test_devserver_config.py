"""The generated Synapse configuration: loopback only, no federation, limits as asked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
from pathlib import Path
from typing import Any

import pytest

from lotsenbot.devserver import (
    build_config,
    deep_merge,
    free_port,
    make_signing_key,
    rate_limit_config,
    registration_mac,
    relaxed_rate_limits,
)


def _config(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    return build_config(
        tmp_path,
        server_name="lotsen.test",
        port=18008,
        registration_shared_secret="s1",
        macaroon_secret_key="s2",
        form_secret="s3",
        **kwargs,
    )


def test_listens_on_loopback_only_and_serves_no_federation(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (listener,) = config["listeners"]
    assert listener["bind_addresses"] == ["127.0.0.1"]
    assert listener["port"] == 18008
    resources = [name for resource in listener["resources"] for name in resource["names"]]
    assert resources == ["client"]
    assert config["federation_domain_whitelist"] == []
    assert config["trusted_key_servers"] == []
    assert config["enable_registration"] is False
    assert config["report_stats"] is False
    assert config["presence"] == {"enabled": False}


def test_all_files_live_in_the_folder(tmp_path: Path) -> None:
    config = _config(tmp_path)
    paths = [
        config["database"]["args"]["database"],
        config["log_config"],
        config["media_store_path"],
        config["signing_key_path"],
    ]
    for path in paths:
        assert Path(path).parent == tmp_path.resolve()
    assert config["database"]["name"] == "sqlite3"


def test_relaxed_limits_cover_nested_keys(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config["rc_message"]["per_second"] >= 1000
    assert config["rc_login"]["address"]["burst_count"] >= 1000
    assert config["rc_login"]["failed_attempts"]["burst_count"] >= 1000
    assert config["rc_joins"]["local"]["per_second"] >= 1000
    assert config["rc_invites"]["per_user"]["burst_count"] >= 1000
    assert config["rc_room_creation"]["burst_count"] >= 1000
    assert "rc_login.address" not in config


def test_default_limits_leave_synapse_alone(tmp_path: Path) -> None:
    config = _config(tmp_path, rate_limits="default")
    assert not [key for key in config if key.startswith("rc_")]


def test_dict_limits_override_one_limiter_and_keep_the_rest_relaxed() -> None:
    limits = rate_limit_config({"rc_message": {"burst_count": 2}, "rc_login": {"account": {}}})
    relaxed = relaxed_rate_limits()
    assert limits["rc_message"] == {
        "per_second": relaxed["rc_message"]["per_second"],
        "burst_count": 2,
    }
    assert limits["rc_login"]["address"] == relaxed["rc_login"]["address"]
    assert limits["rc_room_creation"] == relaxed["rc_room_creation"]


def test_unknown_rate_limit_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="rate_limits"):
        rate_limit_config("strict")  # type: ignore[arg-type]


def test_extra_config_is_merged_last(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        extra_config={"presence": {"enabled": True}, "database": {"args": {"cp_max": 1}}},
    )
    assert config["presence"] == {"enabled": True}
    assert config["database"]["args"]["cp_max"] == 1
    assert config["database"]["args"]["database"].endswith("homeserver.db")


def test_deep_merge_does_not_modify_inputs() -> None:
    base = {"a": {"b": 1, "c": 2}}
    override = {"a": {"b": 3}, "d": [1]}
    merged = deep_merge(base, override)
    assert merged == {"a": {"b": 3, "c": 2}, "d": [1]}
    assert base == {"a": {"b": 1, "c": 2}}
    merged["d"].append(2)
    assert override["d"] == [1]


def test_registration_mac_matches_the_documented_layout() -> None:
    expected = hmac.new(b"geheim", b"n0nce\x00anna\x00pw\x00notadmin", hashlib.sha1).hexdigest()
    assert registration_mac("geheim", "n0nce", "anna", "pw", admin=False) == expected
    as_admin = hmac.new(b"geheim", b"n0nce\x00anna\x00pw\x00admin", hashlib.sha1).hexdigest()
    assert registration_mac("geheim", "n0nce", "anna", "pw", admin=True) == as_admin


def test_signing_key_line_has_synapse_format() -> None:
    algorithm, version, seed = make_signing_key().split()
    assert algorithm == "ed25519"
    assert version.startswith("a_")
    assert len(base64.b64decode(seed + "=" * (-len(seed) % 4))) == 32
    assert make_signing_key() != make_signing_key()


def test_free_port_prefers_the_wish_and_avoids_busy_ports() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        chosen = free_port(preferred=taken)
        assert chosen != taken
    wish = free_port()
    assert free_port(preferred=wish) == wish
