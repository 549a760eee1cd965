"""One module per concern: pure state machines (order books, cash pool, fill listener, execution,
orchestrator, broadcaster, venue gateway) and the one generic Ray actor shell that hosts them."""
