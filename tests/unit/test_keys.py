"""Composite keys (devicehooks.store.keys): reversible, and no two tuples of parts make one key."""

from __future__ import annotations

from itertools import product

from devicehooks.store.keys import SEP, escape, join, split, unescape

TRICKY = ["", "#", "%", "%23", "%25", "%2523", "#%", "a#b", "a%23b", "a%b", "T#acme", "#V#", "d#V#e", "~", "é#"]


def test_an_escaped_part_holds_no_separator_and_comes_back_as_it_was() -> None:
    for part in TRICKY:
        assert SEP not in escape(part)
        assert unescape(escape(part)) == part


def test_labels_and_times_are_left_as_they_are() -> None:
    for part in ("T", "E", "D", "H", "V", "2026-03-01T12", "2026-03-01T12:00:00.123000Z", "-", "device-provisioned"):
        assert escape(part) == part


def test_distinct_tuples_make_distinct_keys_and_split_back() -> None:
    seen: dict[str, tuple[str, ...]] = {}
    for size in (1, 2, 3):
        for parts in product(TRICKY, repeat=size):
            key = join(*parts)
            assert seen.setdefault(key, parts) == parts, (key, parts)
            assert tuple(split(key)) == parts


def test_a_prefix_ending_in_the_separator_matches_only_its_own_part() -> None:
    for a, b in product(TRICKY, repeat=2):
        if a != b:
            assert not join("H", b, "2026-03-01T12").startswith(join("H", a) + SEP), (a, b)
