"""Which rulebook rates which seller: one per deployment, or one per seller group.

A groups file (TOML) names a default rulebook and groups of sellers, by id or id prefix, each
rated by its own rulebook:

    default = "global-2023"

    [[group]]
    name = "cn-pilot"
    rulebook = "cn-2020"
    sellers = ["seller-00003", "seller-00007"]

    [[group]]
    name = "legacy"
    rulebook = "merchant-3star"
    prefixes = ["legacy-"]

The first group that matches wins; a seller in none gets the default. Membership is by seller
id only, fixed for the deployment: a seller's state has the shape its rulebook's model needs
(indicator facts or score facts), so moving a seller to another rulebook means re-rating it
from its raw events (`starcast replay`), not switching in the stream.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from streams.core.rulebook import AnyBook, RulebookError, load


@dataclass(frozen=True)
class SellerGroup:
    name: str
    rulebook: AnyBook
    sellers: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def matches(self, seller_id: str) -> bool:
        return seller_id in self.sellers or seller_id.startswith(self.prefixes)


class RulebookSelection:
    """seller id -> rulebook, per the deployment's default and its seller groups."""

    def __init__(self, default: AnyBook, groups: tuple[SellerGroup, ...] = ()):
        self.default = default
        self.groups = groups
        self._memo: dict[str, AnyBook] = {}

    @property
    def rulebooks(self) -> list[AnyBook]:
        """Every rulebook in use, the default first, each once (by name)."""
        seen: dict[str, AnyBook] = {self.default.name: self.default}
        for group in self.groups:
            seen.setdefault(group.rulebook.name, group.rulebook)
        return list(seen.values())

    def rulebook_for(self, seller_id: str) -> AnyBook:
        rulebook = self._memo.get(seller_id)
        if rulebook is None:
            rulebook = next((g.rulebook for g in self.groups if g.matches(seller_id)), self.default)
            if len(self._memo) >= 1_000_000:  # bounded: ids come from input
                self._memo.clear()
            self._memo[seller_id] = rulebook
        return rulebook


def load_groups(path: str, default: str | None = None) -> RulebookSelection:
    """A groups file; `default` (a rulebook name or path) applies when the file names none."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise RulebookError(f"{path}: cannot read the groups file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulebookError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"default", "group"}
    if unknown:
        raise RulebookError(f"{path}: unknown key {sorted(unknown)[0]!r} (expected default, [[group]])")
    default_name = data.get("default", default)
    if not isinstance(default_name, str):
        raise RulebookError(f"{path}: default: a rulebook name is required")
    groups = []
    names = set()
    for i, raw in enumerate(data.get("group", [])):
        where = f"{path}: group[{i}]"
        if not isinstance(raw, dict):
            raise RulebookError(f"{where}: must be a table")
        extra = set(raw) - {"name", "rulebook", "sellers", "prefixes"}
        if extra:
            raise RulebookError(f"{where}: unknown key {sorted(extra)[0]!r}")
        name, rulebook = raw.get("name"), raw.get("rulebook")
        if not isinstance(name, str) or not name or name in names:
            raise RulebookError(f"{where}.name: a unique, non-empty name is required")
        if not isinstance(rulebook, str):
            raise RulebookError(f"{where}.rulebook: a rulebook name is required")
        sellers, prefixes = raw.get("sellers", []), raw.get("prefixes", [])
        for key, values in (("sellers", sellers), ("prefixes", prefixes)):
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                raise RulebookError(f"{where}.{key}: a list of non-empty strings is required")
        if not sellers and not prefixes:
            raise RulebookError(f"{where}: sellers or prefixes is required (a group matching nobody)")
        names.add(name)
        try:
            book = load(rulebook)
        except RulebookError as exc:
            raise RulebookError(f"{where}.rulebook: {exc}") from None
        groups.append(SellerGroup(name, book, frozenset(sellers), tuple(prefixes)))
    try:
        default_book = load(default_name)
    except RulebookError as exc:
        raise RulebookError(f"{path}: default: {exc}") from None
    return RulebookSelection(default_book, tuple(groups))
