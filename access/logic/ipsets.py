"""A set of IP networks (an `ip_list`) answering "is this address in it?" in O(log n): the networks of each family are
merged into disjoint, sorted [first, last] integer ranges, and an address is found by bisection. Overlapping and
nested networks merge; an IPv4 address is never inside an IPv6 network or the reverse (as `ipaddress` has it)."""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Ranges:
    __slots__ = ("firsts", "lasts")

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for first, last in sorted(ranges):
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        self.firsts = [first for first, _ in merged]
        self.lasts = [last for _, last in merged]

    def __contains__(self, value: int) -> bool:
        position = bisect_right(self.firsts, value) - 1
        return position >= 0 and value <= self.lasts[position]

    def __len__(self) -> int:
        return len(self.firsts)


class IPSet:
    """Membership of addresses in a fixed collection of networks, by binary search per address family."""

    __slots__ = ("networks", "v4", "v6")

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks = tuple(networks)
        spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for network in self.networks:
            spans[network.version].append((int(network.network_address), int(network.broadcast_address)))
        self.v4 = _Ranges(spans[4])
        self.v6 = _Ranges(spans[6])

    def __contains__(self, address: object) -> bool:
        if isinstance(address, ipaddress.IPv4Address):
            return int(address) in self.v4
        if isinstance(address, ipaddress.IPv6Address):
            return int(address) in self.v6
        return False

    def __len__(self) -> int:
        return len(self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)
