"""Reading sessions back: columnar export (Parquet), and later the replay-and-verify engine and the
Gymnasium environments that fold the same state machines in-process."""
