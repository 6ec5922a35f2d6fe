"""Capability URLs: how a private Space's media is reached by those who hold its invite, and by
nobody else, through any HTTP cache.

Theory of operation. A private Space's listener path carries a *media key* in its URL:
`/live/{space}/{key}/index.m3u8` and everything below it (the playlists name their objects
relative to themselves, so every request a player makes carries the key). The key is
HMAC-SHA256(server secret, space id + the Space's current invite code), cut to 128 bits: nobody
can make it without the secret, it needs no stored column (the invite code is already one), and
it changes when the host gives the Space a new invite code (`SpaceControl.rotate_invite`), which
ends every old link and every old media URL at once. An HTTP cache or CDN keys on the URL, so it
keeps serving the audience from one origin request per object exactly as for a public Space, and
never hands a private object to a request without the key (a different URL). The plain path
`/live/{space}/…` of a private Space answers what a Space that does not exist answers (see
`delivery.access`).

A clip of a private Space gets a key of its own, HMAC(secret, clip id + invite code): a clip link
opens that clip only, not the Space's stream, and stops working on the same rotation.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from townhall.spaces.model import Space, Visibility

KEY_BYTES = 16  # 128 bits: beyond guessing, short enough for a URL


class MediaKeys:
    """Makes and checks the media and clip keys of private Spaces with one server secret."""

    def __init__(self, secret: str) -> None:
        # A key of its own, so that a media key never equals any other HMAC the secret makes.
        self._key = hmac.new(secret.encode(), b"townhall media key", hashlib.sha256).digest()

    def _derive(self, purpose: str, subject: str, invite_code: str) -> str:
        message = f"{purpose}\n{subject}\n{invite_code}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:KEY_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def media_key(self, space_id: str, invite_code: str) -> str:
        """The key in a private Space's media URLs, for its current invite code."""
        return self._derive("media", space_id, invite_code)

    def clip_key(self, clip_id: str, invite_code: str) -> str:
        """The key in the links of one clip of a private Space."""
        return self._derive("clip", clip_id, invite_code)

    def media_path(self, space: Space) -> str:
        """Where the Space's listener media lives: `/live/{id}` for a public or unlisted Space,
        `/live/{id}/{key}` for a private one (only for those who may know it)."""
        if space.visibility is not Visibility.PRIVATE:
            return f"/live/{space.id}"
        return f"/live/{space.id}/{self.media_key(space.id, space.invite_code)}"

    def clip_query(self, space: Space, clip_id: str) -> str:
        """What a clip's links carry after the path: `?key=…` for a private Space, else nothing."""
        if space.visibility is not Visibility.PRIVATE:
            return ""
        return f"?key={self.clip_key(clip_id, space.invite_code)}"


def clip_open(keys: MediaKeys, space: Space | None, clip_id: str, shown_key: str | None) -> bool:
    """Whether a request for a clip (its file or its page) may have it: always for a public or
    unlisted Space's clip (its unguessable id is the link), for a private Space's only with the
    clip's current key."""
    if space is None or space.visibility is not Visibility.PRIVATE:
        return True
    return matches(shown_key, keys.clip_key(clip_id, space.invite_code))


def matches(shown: str | None, expected: str) -> bool:
    """Whether a key shown in a request is the expected one (in constant time)."""
    return shown is not None and hmac.compare_digest(shown.encode(), expected.encode())
