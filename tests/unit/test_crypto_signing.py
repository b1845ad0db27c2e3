"""Canonical JSON, Ed25519 signatures, recovery keys, the key file and the signature chain."""

from __future__ import annotations

import json
import stat

import canonicaljson
import pytest
import signedjson.key
import signedjson.sign
from unpaddedbase64 import decode_base64

from lotsenbot.matrix.crypto import (
    CrossSigningKeys,
    KeyFileError,
    KeyVault,
    SigningKey,
    _b58encode,
    b64decode,
    b64encode,
    canonical_json,
    check_chain,
    decode_recovery_key,
    encode_recovery_key,
    upload_body,
    verify_json,
)

USER = "@lotsenbot:stadt.example"
DEVICE = "BOTDEVICE"

# The signing example of the Matrix specification (appendices, "Signing JSON").
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"b": 2, "a": 1},
        {"nested": {"z": [3, 2, 1], "ä": "Straße 💡"}, "n": None, "t": True},
        {"long": 2**53 - 1, "neg": -17, "esc": 'quote " and \\ and \n'},
        {"日本": "語", "\u2028": "line separator"},
    ],
)
def test_canonical_json_matches_the_reference_library(value: dict[str, object]) -> None:
    assert canonical_json(value) == canonicaljson.encode_canonical_json(value)


def test_canonical_json_refuses_floats_that_are_not_numbers() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_signatures_match_the_examples_of_the_specification() -> None:
    key = SigningKey(decode_base64(SPEC_SEED))
    empty = key.sign_json({}, "domain", "ed25519:1")
    assert empty["signatures"]["domain"]["ed25519:1"] == (
        "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
    )
    simple = key.sign_json({"one": 1, "two": "Two"}, "domain", "ed25519:1")
    assert simple["signatures"]["domain"]["ed25519:1"] == (
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
    )


def test_signature_ignores_unsigned_keeps_other_signatures_and_verifies_elsewhere() -> None:
    reference = signedjson.key.generate_signing_key("1")
    key = SigningKey(reference.encode())
    value = {
        "user_id": USER,
        "keys": {"ed25519:X": "abc"},
        "unsigned": {"device_display_name": "Bot"},
        "signatures": {USER: {"ed25519:DEV": "earlier"}},
    }
    signed = key.sign_json(value, USER)
    assert signed["unsigned"] == value["unsigned"]
    assert signed["signatures"][USER]["ed25519:DEV"] == "earlier"
    assert "ed25519:1" not in value["signatures"][USER], "input must not be modified"
    # An independent implementation (Synapse's signedjson) accepts the signature.
    reference_copy = json.loads(json.dumps(signed))
    reference_copy["signatures"][USER]["ed25519:1"] = signed["signatures"][USER][key.key_id]
    signedjson.sign.verify_signed_json(
        reference_copy, USER, signedjson.key.get_verify_key(reference)
    )
    assert verify_json(signed, USER, key.key_id, key.public)
    # Changing unsigned data keeps the signature valid; changing signed data breaks it.
    assert verify_json({**signed, "unsigned": {"other": 1}}, USER, key.key_id, key.public)
    assert not verify_json({**signed, "keys": {"ed25519:X": "abd"}}, USER, key.key_id, key.public)
    assert not verify_json(signed, USER, key.key_id, SigningKey.generate().public)
    assert not verify_json(signed, "@other:stadt.example", key.key_id, key.public)


def test_base64_is_unpadded_and_tolerant_when_reading() -> None:
    assert b64encode(b"\x00\x01") == "AAE"
    assert b64decode("AAE") == b"\x00\x01"
    assert b64decode("AAE=") == b"\x00\x01"
    assert b64decode("-_8") == b64decode("+/8")


def test_recovery_key_round_trip_and_typo_detection() -> None:
    seed = bytes(range(32))
    text = encode_recovery_key(seed)
    groups = text.split(" ")
    assert all(len(g) == 4 for g in groups[:-1]) and 1 <= len(groups[-1]) <= 4
    assert decode_recovery_key(text) == seed
    assert decode_recovery_key(text.replace(" ", "") + "\n") == seed
    assert decode_recovery_key(encode_recovery_key(b"\0" * 32)) == b"\0" * 32
    flipped = text[:5] + ("2" if text[5] != "2" else "3") + text[6:]
    with pytest.raises(ValueError):
        decode_recovery_key(flipped)
    # An Element security key (prefix 0x8B 0x01) is a different thing and must be refused.
    element = b"\x8b\x01" + seed
    parity = 0
    for byte in element:
        parity ^= byte
    with pytest.raises(ValueError, match="kein Wiederherstellungsschlüssel"):
        decode_recovery_key(_b58encode(element + bytes([parity])))
    with pytest.raises(ValueError, match="nicht vor"):
        decode_recovery_key("0OIl")


def test_key_vault_round_trip_is_private_and_encrypted(tmp_path) -> None:
    keys = CrossSigningKeys.generate()
    vault = KeyVault(tmp_path / "cross_signing.json", "pickle-secret", USER)
    assert vault.load() is None and vault.public_keys() is None
    vault.save(keys)
    assert stat.S_IMODE(vault.path.stat().st_mode) == 0o600
    raw = vault.path.read_text("utf-8")
    for seed in (keys.master.seed, keys.self_signing.seed, keys.user_signing.seed):
        assert b64encode(seed) not in raw
        assert seed.hex() not in raw
    assert vault.public_keys() == keys.publics()
    loaded = vault.load()
    assert loaded is not None
    assert loaded.master.seed == keys.master.seed
    assert loaded.publics() == keys.publics()


def test_key_vault_refuses_wrong_pickle_key_other_account_and_tampering(tmp_path) -> None:
    path = tmp_path / "cross_signing.json"
    keys = CrossSigningKeys.generate()
    KeyVault(path, "right", USER).save(keys)
    with pytest.raises(KeyFileError, match="Pickle"):
        KeyVault(path, "wrong", USER).load()
    with pytest.raises(KeyFileError, match="gehört"):
        KeyVault(path, "right", "@other:stadt.example").load()
    record = json.loads(path.read_text("utf-8"))
    record["public"]["master"] = SigningKey.generate().public  # bound as associated data
    path.write_text(json.dumps(record), "utf-8")
    with pytest.raises(KeyFileError):
        KeyVault(path, "right", USER).load()
    path.write_text("{not json", "utf-8")
    with pytest.raises(KeyFileError, match="beschädigt"):
        KeyVault(path, "right", USER).load()


def _query_for(keys: CrossSigningKeys, device_key: SigningKey, *, sign_device: bool) -> dict:
    """A keys/query body as a homeserver returns it after a successful upload."""
    body = upload_body(USER, keys)
    device = {
        "user_id": USER,
        "device_id": DEVICE,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"ed25519:{DEVICE}": device_key.public, f"curve25519:{DEVICE}": "curve"},
    }
    device = device_key.sign_json(device, USER, f"ed25519:{DEVICE}")
    if sign_device:
        device = keys.self_signing.sign_json(device, USER)
    device["unsigned"] = {"device_display_name": "lotsenbot"}
    return {
        "device_keys": {USER: {DEVICE: device}},
        "master_keys": {USER: body["master_key"]},
        "self_signing_keys": {USER: body["self_signing_key"]},
        "user_signing_keys": {USER: body["user_signing_key"]},
    }


def test_upload_body_signs_sub_keys_with_the_master() -> None:
    keys = CrossSigningKeys.generate()
    body = upload_body(USER, keys)
    assert body["master_key"] == {
        "user_id": USER,
        "usage": ["master"],
        "keys": {keys.master.key_id: keys.master.public},
    }
    for name, usage, key in (
        ("self_signing_key", "self_signing", keys.self_signing),
        ("user_signing_key", "user_signing", keys.user_signing),
    ):
        assert body[name]["usage"] == [usage]
        assert body[name]["keys"] == {key.key_id: key.public}
        assert verify_json(body[name], USER, keys.master.key_id, keys.master.public)


def test_chain_check_accepts_a_complete_chain_and_finds_each_broken_link() -> None:
    keys, device_key = CrossSigningKeys.generate(), SigningKey.generate()
    good = check_chain(_query_for(keys, device_key, sign_device=True), USER, DEVICE)
    assert good.complete
    assert good.master == keys.master.public
    assert good.self_signing == keys.self_signing.public
    assert good.device_ed25519 == device_key.public

    unsigned = check_chain(_query_for(keys, device_key, sign_device=False), USER, DEVICE)
    assert unsigned.self_signing_valid and not unsigned.device_signed

    forged = _query_for(keys, device_key, sign_device=True)
    forged["self_signing_keys"][USER] = SigningKey.generate().sign_json(
        {k: v for k, v in forged["self_signing_keys"][USER].items() if k != "signatures"}, USER
    )
    broken = check_chain(forged, USER, DEVICE)
    assert not broken.self_signing_valid and not broken.device_signed

    swapped = _query_for(keys, device_key, sign_device=True)
    swapped["device_keys"][USER][DEVICE]["keys"][f"ed25519:{DEVICE}"] = "changed"
    assert not check_chain(swapped, USER, DEVICE).device_signed

    assert check_chain({}, USER, DEVICE).master is None
    other_device = check_chain(_query_for(keys, device_key, sign_device=True), USER, "OTHER")
    assert other_device.self_signing_valid and not other_device.device_signed
