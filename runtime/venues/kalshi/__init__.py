"""Kalshi's protocol: the wire codec (WebSocket frames and REST bodies <-> tape events) and request signing.

* :mod:`.messages` — the wire format as msgspec Structs (what Kalshi's JSON looks like);
* :mod:`.convert` — wire messages <-> tape events, exactly, both directions (and the mappings used);
* :mod:`.codec` — WebSocket frames: :class:`WsDecoder` / :func:`decode_ws` (never raises), our commands,
  and :func:`encode_event` for the local exchange;
* :mod:`.rest` — REST bodies: V2 order requests, replies to events, and the exchange's replies;
* :mod:`.auth` — RSA-PSS request signing (:class:`Signer`, :func:`load_signer`) and :class:`Verifier`;
* :mod:`.bench` — ``codec_decode_mps`` for ``tape bench venue``.
"""

from .auth import AuthError, Signer, Verifier, load_signer
from .codec import TERMINAL_ERRORS, BadCommand, WsDecoder, WsFrame, decode_command, decode_ws, encode, encode_event
from .convert import WireError

__all__ = [
    "TERMINAL_ERRORS",
    "AuthError",
    "BadCommand",
    "Signer",
    "Verifier",
    "WireError",
    "WsDecoder",
    "WsFrame",
    "decode_command",
    "decode_ws",
    "encode",
    "encode_event",
    "load_signer",
]
