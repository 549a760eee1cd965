"""Kalshi: the wire codec, request signing, and our REST and WebSocket clients.

* :mod:`.messages` — the wire format as msgspec Structs (what Kalshi's JSON looks like);
* :mod:`.convert` — wire messages <-> tape events, exactly, both directions (and the mappings used);
* :mod:`.codec` — WebSocket frames: :class:`WsDecoder` / :func:`decode_ws` (never raises), our commands,
  and :func:`encode_event` for the local exchange;
* :mod:`.rest` — REST bodies: V2 order requests, replies to events, and the exchange's replies;
* :mod:`.auth` — RSA-PSS request signing (:class:`Signer`, :func:`load_signer`) and :class:`Verifier`;
* :mod:`.http` — :class:`KalshiRest`, the signed, retrying REST client (:data:`HOSTS`);
* :mod:`.ws` — :class:`KalshiFeed`, the WebSocket client: batches of input events, resyncs, reconnects;
* :mod:`.tracker` — :class:`FeedTracker`, the feed's pure state: seq per sid, stale books, fill dedupe;
* :mod:`.bench` — ``codec_decode_mps`` for ``tape bench venue``.
"""

from .auth import AuthError, Signer, Verifier, load_signer
from .codec import TERMINAL_ERRORS, BadCommand, WsDecoder, WsFrame, decode_command, decode_ws, encode, encode_event
from .convert import WireError
from .http import HOSTS, KalshiApiError, KalshiError, KalshiMalformedReply, KalshiRest, KalshiUnavailable
from .rest import ApiError, CancelAck, OrderAck
from .tracker import FeedStats, FeedTracker
from .ws import KalshiFeed, KalshiFeedError

__all__ = [
    "HOSTS",
    "TERMINAL_ERRORS",
    "ApiError",
    "AuthError",
    "BadCommand",
    "CancelAck",
    "FeedStats",
    "FeedTracker",
    "KalshiApiError",
    "KalshiError",
    "KalshiFeed",
    "KalshiFeedError",
    "KalshiMalformedReply",
    "KalshiRest",
    "KalshiUnavailable",
    "OrderAck",
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
