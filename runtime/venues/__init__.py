"""Venues: the Kalshi protocol (codec, signing, clients) and the local exchange that speaks it.

Kept out of the pure state machines: a venue turns bytes from outside into tape events (stamped with
the receive time at the edge) and tape order intents into venue requests.
"""
