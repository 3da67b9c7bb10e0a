"""Framing primitives: the encoder, masking and close payloads (RFC 6455 5, 7.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ws_pair import close_payload, frame

from lfws_core.close_codes import CloseCode
from lfws_core.ws._frames import (
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameError,
    apply_mask,
    decode_close_payload,
    encode_close_payload,
    encode_frame,
    is_valid_close_code,
)


def test_rfc_examples() -> None:
    # RFC 6455 section 5.7: unmasked and masked "Hello", and an unmasked ping.
    assert encode_frame(OP_TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert encode_frame(OP_TEXT, b"Hello", b"\x37\xfa\x21\x3d") == bytes.fromhex(
        "818537fa213d7f9f4d5158"
    )
    assert encode_frame(OP_PING, b"Hello") == bytes.fromhex("890548656c6c6f")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_length_encodings_match_an_independent_encoder(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    assert encode_frame(OP_TEXT, payload) == frame(OP_TEXT, payload)
    key = b"\xaa\x55\x0f\xf0"
    assert encode_frame(OP_TEXT, payload, key) == frame(OP_TEXT, payload, mask=key)


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_masking_is_its_own_inverse(data: bytes, key: bytes) -> None:
    masked = apply_mask(data, key)
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert apply_mask(masked, key) == data


@pytest.mark.parametrize("size", [16 * 1024 - 1, 16 * 1024, 16 * 1024 + 3, 100_001])
def test_masking_long_payloads(size: int) -> None:
    # Long payloads take another code path; it must agree byte for byte.
    data = bytes(i * 7 % 256 for i in range(size))
    key = b"\x9a\x01\xff\x3c"
    masked = apply_mask(data, key)
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert apply_mask(masked, key) == data


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        (999, False),
        (1000, True),
        (1003, True),
        (1004, False),
        (1005, False),
        (1006, False),
        (1007, True),
        (1014, True),
        (1015, False),
        (1016, False),
        (2999, False),
        (3000, True),
        (4999, True),
        (5000, False),
    ],
)
def test_close_code_validity(code: int, valid: bool) -> None:
    assert is_valid_close_code(code) is valid


def test_close_payloads() -> None:
    assert encode_close_payload(1000, "bye") == close_payload(1000, "bye")
    assert encode_close_payload(CloseCode.NO_STATUS, "ignored") == b""
    assert decode_close_payload(b"") == (CloseCode.NO_STATUS, "")
    assert decode_close_payload(close_payload(4001, "é")) == (4001, "é")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", CloseCode.PROTOCOL_ERROR),
        (close_payload(1005), CloseCode.PROTOCOL_ERROR),
        (close_payload(999), CloseCode.PROTOCOL_ERROR),
        (close_payload(1000) + b"\xff", CloseCode.INVALID_PAYLOAD),
    ],
)
def test_bad_close_payloads(payload: bytes, code: CloseCode) -> None:
    with pytest.raises(FrameError) as raised:
        decode_close_payload(payload)
    assert raised.value.code == code


def test_close_opcode_frame() -> None:
    assert encode_frame(OP_CLOSE, close_payload(1000)) == b"\x88\x02\x03\xe8"
