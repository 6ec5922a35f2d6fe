"""Storage quotas: the disk one identity, and one address, may fill with clips and recordings.

Identities are free (a guest is one request away), so a per-identity limit alone does not keep a
stranger from filling the disk; addresses are not free, so every charge is made against both.
A quota is a byte budget in the same shared token buckets as the rate limits (`LiveState.take_token`
with a cost in bytes: cluster-wide, in Redis when many processes share it), full at first and
refilled evenly over the recording retention period. What is stored is deleted after that period,
so an identity (or an address) can never hold more than about twice its budget on disk, however
long it keeps at it; an honest host or clipper never notices it.

What is charged, and when (always before anything is written, so a refusal leaves nothing behind):
- a clip: its length at the recording's bitrate (`clip_cost`), to the clipper and their address;
- a recorded Space: one hour of recording at creation (`RECORDING_RESERVE_S`), to the host and
  their address; then, while it records, every byte past that hour to the host and that same
  address (kept with the Space: `state.recording_accounts`), and the recording stops when either
  budget is used up (`node.recording_meter`).

A refusal is `QuotaExceeded`: 429 `quota_exceeded` + Retry-After (when the budget will have
refilled enough). When the second of the two charges is refused the first is given back.
"""

from __future__ import annotations

from dataclasses import dataclass

from townhall.ratelimit.table import Limit, QuotaExceeded, TokenStore, take

DAY_S = 86_400
# How long a recorded Space may record before the media node charges its host again: one hour is
# paid at creation, so a short recorded Space costs one charge.
RECORDING_RESERVE_S = 3600.0
# The container's share of a clip beyond the audio (moov, moof per part): generous on purpose.
CLIP_OVERHEAD = 1.1
CLIP_FIXED_BYTES = 4096


def clip_cost(seconds: float, bitrate: int) -> int:
    """What a clip of `seconds` of audio at `bitrate` bits/s takes on disk, rounded up."""
    return int(seconds * bitrate / 8 * CLIP_OVERHEAD) + CLIP_FIXED_BYTES


def recording_cost(seconds: float, bitrate: int) -> int:
    """What `seconds` of a recording at `bitrate` bits/s take on disk (parts and their index)."""
    return int(seconds * bitrate / 8 * CLIP_OVERHEAD)


@dataclass(frozen=True)
class StorageQuota:
    """The storage budgets of one deployment; a None budget is no quota."""

    per_identity: Limit | None
    per_address: Limit | None

    @classmethod
    def from_config(cls, identity_mb: int, address_mb: int, retention_days: int) -> StorageQuota:
        """Budgets of `identity_mb` / `address_mb` (0: none) refilled over the retention period
        (30 days when recordings are kept forever: a budget that never refilled would be a
        lifetime cap, which an honest regular host would reach)."""
        period = (retention_days if retention_days > 0 else 30) * DAY_S

        def limit(name: str, mb: int, whose: str) -> Limit | None:
            if mb <= 0:
                return None
            return Limit(
                name,
                mb * 1_000_000 / period,
                mb * 1_000_000,
                f"{whose} clips and recordings have used their storage quota ({mb} MB); "
                "it refills over time",
                "disk: clips and recordings",
            )

        return cls(
            limit("storage-person", identity_mb, "your"),
            limit("storage-address", address_mb, "your address's"),
        )

    @property
    def enabled(self) -> bool:
        return self.per_identity is not None or self.per_address is not None

    async def charge(
        self, store: TokenStore, *, identity: str, address: str | None, size: int, now: float
    ) -> None:
        """Charge `size` bytes to the identity and (if given) the address, or raise
        `QuotaExceeded` with nothing charged."""
        if self.per_identity is not None:
            await take(store, self.per_identity, identity, now, cost=size, refusal=QuotaExceeded)
        if self.per_address is not None and address is not None:
            try:
                await take(store, self.per_address, address, now, cost=size, refusal=QuotaExceeded)
            except QuotaExceeded:
                await self.refund(store, identity=identity, address=None, size=size, now=now)
                raise

    async def refund(
        self, store: TokenStore, *, identity: str, address: str | None, size: int, now: float
    ) -> None:
        """Give back a charge whose file was not written after all (a failed export)."""
        if self.per_identity is not None:
            await take(store, self.per_identity, identity, now, cost=-size)
        if self.per_address is not None and address is not None:
            await take(store, self.per_address, address, now, cost=-size)


NO_STORAGE_QUOTA = StorageQuota(None, None)
