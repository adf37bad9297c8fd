"""The bencoder: one canonical encoding per value, every non-canonical input refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.torrent.bencode import MAX_DEPTH, BencodeValue, decode, dict_spans, encode
from s3torrent.torrent.errors import BencodeError, TorrentError

values: st.SearchStrategy[BencodeValue] = st.recursive(
    st.integers() | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.binary(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"i0e"),
        (-42, b"i-42e"),
        (2**70, b"i1180591620717411303424e"),
        (b"", b"0:"),
        (b"spam", b"4:spam"),
        ("é", b"2:\xc3\xa9"),
        ([], b"le"),
        ([1, b"a", [b"b"]], b"li1e1:al1:bee"),
        ((1, 2), b"li1ei2ee"),
        ({}, b"de"),
        ({"cow": b"moo", b"spam": [b"a", b"b"]}, b"d3:cow3:moo4:spaml1:a1:bee"),
    ],
)
def test_encodes_known_values(value: object, encoded: bytes) -> None:
    assert encode(value) == encoded


@settings(database=None)  # no .hypothesis/ folder in the tree
@given(values)
def test_round_trips(value: BencodeValue) -> None:
    assert decode(encode(value)) == value


def test_keys_sorted_as_raw_bytes() -> None:
    # b"Z" (0x5a) < b"a" (0x61) < b"\xc3\xa9" ("é" in UTF-8): byte order, not alphabetical.
    encoded = encode({"a": 1, "é": 2, "Z": 3, b"\x00": 4})
    assert encoded == b"d1:\x00i4e1:Zi3e1:ai1e2:\xc3\xa9i2ee"
    assert list(decode(encoded)) == [b"\x00", b"Z", b"a", "é".encode()]  # type: ignore[arg-type]


def test_str_and_bytes_keys_mix_and_sort_together() -> None:
    assert encode({b"b": 1, "a": 2}) == b"d1:ai2e1:bi1ee"


def test_rejects_duplicate_keys_after_encoding() -> None:
    with pytest.raises(BencodeError, match="duplicate dict key after encoding: b'a'"):
        encode({"a": 1, b"a": 2})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "cannot encode a bool"),
        (1.5, "cannot encode a float"),
        (None, "cannot encode a NoneType"),
        ({1: b"x"}, "dict keys must be bytes or str, not int"),
        ([{"a": {False}}], "cannot encode a set"),
    ],
)
def test_encode_rejects(value: object, message: str) -> None:
    with pytest.raises(BencodeError, match=message):
        encode(value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"i03e", "offset 0: integer with leading zero b'03'"),
        (b"i-03e", "offset 0: integer with leading zero b'-03'"),
        (b"i-0e", "offset 0: negative zero integer"),
        (b"ie", "offset 0: invalid integer b''"),
        (b"i-e", "offset 0: invalid integer b'-'"),
        (b"i1x2e", "offset 0: invalid integer b'1x2'"),
        (b"i+1e", "offset 0: invalid integer b'\\+1'"),
        (b"i12", "offset 0: truncated integer"),
        (b"02:ab", "offset 0: string length with leading zero b'02'"),
        (b"5:abc", "offset 0: truncated string, 5 bytes declared, 3 available"),
        (b"3", "offset 0: truncated string length"),
        (b"-1:a", "offset 0: unexpected byte b'-'"),
        (b"l", "offset 1: truncated list"),
        (b"li1e", "offset 4: truncated list"),
        (b"d1:a", "offset 4: truncated input, expected a value"),
        (b"d1:ai1e", "offset 7: truncated dict"),
        (b"d1:bi1e1:ai2ee", "offset 7: unsorted dict key b'a' after b'b'"),
        (b"d1:ai1e1:ai2ee", "offset 7: duplicate dict key b'a'"),
        (b"di1ei2ee", "offset 1: dict key must be a byte string"),
        (b"i1ei2e", "trailing data at offset 3: 3 bytes after value"),
        (b"4:spamx", "trailing data at offset 6: 1 bytes after value"),
        (b"", "offset 0: truncated input, expected a value"),
        (b"x", "offset 0: unexpected byte b'x'"),
    ],
)
def test_decode_rejects(data: bytes, message: str) -> None:
    with pytest.raises(BencodeError, match=message):
        decode(data)


def test_decode_rejects_nesting_deeper_than_the_limit() -> None:
    ok = b"l" * MAX_DEPTH + b"e" * MAX_DEPTH
    assert decode(ok) is not None
    too_deep = b"l" * (MAX_DEPTH + 2) + b"e" * (MAX_DEPTH + 2)
    with pytest.raises(BencodeError, match=f"nesting deeper than {MAX_DEPTH}"):
        decode(too_deep)
    with pytest.raises(BencodeError, match=f"nesting deeper than {MAX_DEPTH}"):
        decode(b"l" * 100_000)


def test_encode_rejects_nesting_deeper_than_the_limit() -> None:
    value: list[object] = []
    for _ in range(MAX_DEPTH + 5):
        value = [value]
    with pytest.raises(BencodeError, match="nesting deeper"):
        encode(value)


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(BencodeError, match="can only decode bytes, not str"):
        decode("i1e")  # type: ignore[arg-type]


def test_unsorted_keys_accepted_only_when_asked() -> None:
    data = b"d1:bi1e1:ai2ee"
    assert decode(data, sorted_keys=False) == {b"b": 1, b"a": 2}
    with pytest.raises(BencodeError, match="duplicate dict key b'a'"):
        decode(b"d1:ai1e1:ai2ee", sorted_keys=False)


def test_dict_spans_give_values_as_they_appear() -> None:
    data = b"d4:infod1:xi1ee3:zzzi0ee"
    spans = dict_spans(data)
    assert {key: data[start:end] for key, (start, end) in spans.items()} == {
        b"info": b"d1:xi1ee",
        b"zzz": b"i0e",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"li1ee", "offset 0: expected a dict"),
        (b"d4:infoi1e", "offset 10: truncated dict"),
        (b"d4:infoi1eex", "trailing data at offset 11"),
        (b"d1:bi1e1:ai1ee", "unsorted dict key"),
        (b"di1ei1ee", "offset 1: dict key must be a byte string"),
    ],
)
def test_dict_spans_reject(data: bytes, message: str) -> None:
    with pytest.raises(BencodeError, match=message):
        dict_spans(data)


def test_bencode_error_is_an_engine_error_with_no_http_in_it() -> None:
    assert issubclass(BencodeError, TorrentError)
    assert not hasattr(BencodeError, "http_status")
