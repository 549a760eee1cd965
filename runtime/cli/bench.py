"""``tape bench``: benchmarks that print figures (never assertions)."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from config import LogSettings, Settings, settings_hash

from ..ids import new_session_id
from ..log import EventLog, FileLog, SessionMeta, create_log, open_log
from ..log import segments as fmt
from ..synthetic import market_events
from ..venues.sim.session import EPOCH_NS
from ..version import code_version
from .progress import Status

BATCH = 10_000


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="measure this machine: print figures (not pass/fail)",
                                description="Benchmarks. Each prints figures measured side by side in one run.")
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    p = sub.add_parser(
        "log", help="event-log append and read rates against msgspec's raw ceiling",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Append N synthetic market events in batches of 10,000 to a file log with fsync per batch "
        "(file_append_eps), read and decode them back (file_read_eps), and measure msgspec's raw encode/decode "
        "rate on the same records (msgspec_encode_eps, msgspec_decode_eps: the ceiling). With --dsn the same "
        "against PostgreSQL (pg_append_eps, pg_read_eps). Each figure is the median of --repeat runs; read_vs_decode is the median of the per-run ratios, each run measuring the ceiling and the file log back to back.",
        epilog="keys of --json: events, batch, repeat, file_append_eps, file_read_eps, msgspec_encode_eps,\n"
        "msgspec_decode_eps, read_vs_decode, [pg_append_eps, pg_read_eps], machine\n\n"
        "example:\n  tape bench log --events 1000000 --json")
    p.add_argument("--events", type=int, default=1_000_000, metavar="N", help="events per run (default 1,000,000)")
    p.add_argument("--repeat", type=int, default=3, metavar="R", help="runs per figure; the median is shown (default 3)")
    p.add_argument("--log", metavar="DIR", help="keep the file log of the last run in this new run directory "
                   "(default: a temporary directory, removed afterwards)")
    p.add_argument("--dsn", metavar="DSN", help="also measure PostgreSQL at this postgresql:// DSN")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=bench_log)

    b = sub.add_parser(
        "book", help="order-book delta rates: per-event path and batch (columnar) path",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Apply the same seeded stream of N realistic Kalshi book deltas (16 markets) to the order books "
        "twice in one run: one decoded event at a time through handle() (book_event_dps), and as numpy columns "
        "through apply_deltas_by_market() (book_batch_dps). nautilus_dps is added when nautilus_trader is "
        "installed. Each figure is the median of --repeat runs; actors/bench.py says exactly what is timed.",
        epilog="keys of --json: deltas, markets, seed, repeat, book_event_dps, book_batch_dps,\n"
        "[nautilus_dps or nautilus_error], paths_agree, inconsistencies, machine\n\n"
        "example:\n  tape bench book --deltas 1000000 --json")
    b.add_argument("--deltas", type=int, default=1_000_000, metavar="N", help="deltas per run (default 1,000,000)")
    b.add_argument("--repeat", type=int, default=3, metavar="R", help="runs per figure; the median is shown (default 3)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(handler=bench_book)

    v = sub.add_parser(
        "venue", help="Kalshi codec rate: WebSocket frames decoded to tape events per second",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Decode N Kalshi WebSocket frames (a seeded realistic mix: about 90%% orderbook_delta, 10%% trade, "
        "an orderbook_snapshot in 250) to tape events on one core (codec_decode_mps); then start the local exchange "
        "server in its own process with 32 markets running flat out and count the frames one raw WebSocket client "
        "receives over loopback for --server-seconds (server_mps; --server-seconds 0 skips it); then the REST "
        "requests per second that server answers one client signing every request with RSA-PSS, four in flight, "
        "unpaced (rest_rps, for --rest-seconds; 0 skips it). Each codec figure is "
        "the median of --repeat runs; runtime/venues/kalshi/bench.py and runtime/venues/sim/bench.py say exactly "
        "what is timed.",
        epilog="keys of --json: messages, repeat, seed, mix, bytes_per_message, codec_decode_mps, events,\n"
        "malformed, [server_mps, server_frames, server_bytes_per_frame, server_behind_s], [rest_rps, rest_requests],\n"
        "machine\n\n"
        "example:\n  tape bench venue --messages 1000000 --json")
    v.add_argument("--messages", type=int, default=500_000, metavar="N", help="frames per run (default 500,000)")
    v.add_argument("--repeat", type=int, default=3, metavar="R", help="runs per figure; the median is shown (default 3)")
    v.add_argument("--server-seconds", type=float, default=5.0, metavar="S",
                   help="how long to count the exchange server's frames (default 5; 0 skips server_mps)")
    v.add_argument("--rest-seconds", type=float, default=3.0, metavar="S",
                   help="how long to count signed REST replies (default 3; 0 skips rest_rps)")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(handler=bench_venue)

    r = sub.add_parser(
        "runtime", help="the runtime: tick-to-order latency, event throughput at 10 and 300 markets, replay rate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="latency_p50_ms / latency_p99_ms: a real paper session (the local exchange on loopback, every "
        "market tight, 10 markets, the topology on Ray actors taking batches over their channels, fsync per batch, the "
        "seeded random baseline policies so that most decisions place an order): a book update's receive stamp to the "
        "order intent it caused being durable in the log; decision_latency_* the same for every policy decision a "
        "book update caused (more samples); *_inprocess_* the same with the machines in process. "
        "throughput_eps_10 / throughput_eps_300: --events prebuilt market events submitted as fast as the sequencer "
        "takes them, in batches of --batch, through every node on Ray (records/s, derived included). replay_eps: "
        "tape replay verify on the 300-market session, its segments between checkpoints on every core (replay_jobs "
        "processes, replay_segments segments); replay_eps_serial: on one. runtime/bench.py says exactly what is timed.",
        epilog="keys of --json: events, batch, latency_p50_ms, latency_p99_ms, latency_samples,\n"
        "decision_latency_p50_ms, decision_latency_p99_ms, decision_latency_samples, the same with _inprocess,\n"
        "throughput_eps_10, nodes_10, throughput_eps_300, nodes_300, replay_eps, replay_eps_serial, replay_jobs,\n"
        "replay_segments, machine\n\n"
        "example:\n  tape bench runtime --json")
    r.add_argument("--events", type=int, default=100_000, metavar="N",
                   help="market events per throughput run (default 100,000)")
    r.add_argument("--batch", type=int, default=1_000, metavar="B", help="inputs per submit (default 1,000)")
    r.add_argument("--latency-seconds", type=float, default=20.0, metavar="S",
                   help="length of each latency session (default 20)")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(handler=bench_runtime)

    e = sub.add_parser(
        "env", help="the RL environments: steps/s alone, and RLlib PPO sampling on the trading env vs a trivial one",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="env_sps: the single-agent trading environment's steps per second in this process (seeded random "
        "actions, synthetic tapes: 8 tight markets x 600 s, episodes reset as they end); ma_env_sps: the same for the "
        "multi-agent environment with the four roles training (agent steps). rllib_sps_trading / rllib_sps_trivial: "
        "RLlib PPO's env-runner sampling throughput (env steps/s, the local env runner with one environment, "
        "RLlib's default; the default model) on the "
        "trading environment and on a trivial one with the same spaces and episode length, side by side in one run; "
        "rllib_overhead = 1 - trading/trivial; rllib8_*: the same with 8 environments per env runner, as tape train "
        "samples by default. policies/bench.py says exactly what is timed.",
        epilog="keys of --json: env_sps, env_episodes, ma_env_sps, ma_env_episodes, rllib_sps_trading,\n"
        "rllib_sps_trivial, rllib_overhead, rllib8_sps_trading, rllib8_sps_trivial, rllib8_overhead,\n"
        "episode_steps, machine\n\nexample:\n  tape bench env --json")
    e.add_argument("--seconds", type=float, default=3.0, metavar="S", help="length of each in-process run (default 3)")
    e.add_argument("--rllib-steps", type=int, default=4_000, metavar="N",
                   help="env steps RLlib samples per environment (default 4,000)")
    e.add_argument("--no-rllib", action="store_true", help="only the in-process figures (no Ray, no RLlib)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(handler=bench_env)

    t = sub.add_parser(
        "train", help="wall minutes a default training run takes to match the flow baseline on held-out sessions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write --train-sessions and --heldout-sessions synthetic sessions (--markets markets x --duration "
        "seconds each, seeds --data-seed and --data-seed + 1) into a temporary directory with tape synth's own code, "
        "fair-value sidecars included (data_seconds; --data and --heldout take existing sessions instead); play flow "
        "and the oracle on the held-out tapes once (flow_pnl, oracle_pnl; baseline_seconds); then run the training "
        "tape train runs with its defaults (four roles, staged, 8 environments per env runner, sampling and learning "
        "in this process, --train-batch env steps an iteration) for --iterations, measuring the held-out PnL every "
        "--eval-every iterations and after the last (curve: iteration, minutes, heldout_pnl).\n\n"
        "minutes_to_flow: wall minutes from the start of training (Ray's start excluded) to the end of the first "
        "held-out measurement at least flow's PnL, or null; it includes the held-out evaluations before it (the user "
        "waits for them too), whose wall time over the whole training is eval_seconds. train_env_sps: env steps per "
        "second of training less eval_seconds. final_pnl: the held-out PnL after the last iteration; share_of_oracle: "
        "final_pnl / oracle_pnl when the oracle made money, else null. minutes_total: the training's wall minutes. "
        "PnL in dollars. Progress (data, baselines, each iteration) goes to stderr. policies/bench_train.py says "
        "exactly what is timed.",
        epilog="keys of --json: minutes_to_flow, iterations_to_flow, flow_pnl, oracle_pnl, final_pnl,\n"
        "share_of_oracle, train_env_sps, env_steps, iterations, eval_every, train_batch, seed, minutes_total,\n"
        "eval_seconds, baseline_seconds, train_tapes, heldout_tapes, version, curve, train_sessions,\n"
        "heldout_sessions, markets, duration_s, data_seed, data_seconds, machine\n\n"
        "example:\n  tape bench train --json")
    t.add_argument("--iterations", type=int, default=30, metavar="N", help="PPO iterations (default 30)")
    t.add_argument("--eval-every", type=int, default=5, metavar="K",
                   help="held-out PnL every K iterations and after the last (default 5)")
    t.add_argument("--seed", type=int, default=0, metavar="S", help="the training's seed, as tape train --seed (default 0)")
    t.add_argument("--train-batch", type=int, default=4_000, metavar="STEPS",
                   help="env steps per iteration, as tape train --train-batch (default 4000)")
    t.add_argument("--train-sessions", type=int, default=8, metavar="N", help="synthetic training sessions (default 8)")
    t.add_argument("--heldout-sessions", type=int, default=3, metavar="N", help="synthetic held-out sessions (default 3)")
    t.add_argument("--markets", type=int, default=8, metavar="M", help="markets per synthetic session (default 8)")
    t.add_argument("--duration", type=float, default=1_800.0, metavar="SECONDS",
                   help="event time per synthetic session (default 1800)")
    t.add_argument("--data-seed", type=int, default=1, metavar="S",
                   help="tape synth --seed of the training sessions; the held-out ones get S + 1 (default 1)")
    t.add_argument("--data", nargs="+", default=None, metavar="LOG_OR_DIR",
                   help="train on these sessions instead of writing synthetic ones (with --heldout)")
    t.add_argument("--heldout", nargs="+", default=None, metavar="LOG_OR_DIR",
                   help="measure on these sessions instead (with --data); the oracle plays only if every one has its "
                   "fair-value sidecar")
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.set_defaults(handler=bench_train, pinned_hash=True)

    d = sub.add_parser(
        "dashboard", help="the dashboard: the staleness its clients see, and what it costs the tick-to-order latency",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Two paper sessions in one run on the local exchange (--markets tight markets at --speed x, the "
        "machines in process, the seeded random baselines): without the dashboard, then with it served as tape paper "
        "--dashboard serves it and --clients WebSocket clients in another process reading everything. stream_p99_ms: "
        "the p99 staleness of what a client sees (receive time less the edge's receive stamp of the newest record a "
        "delta reflects); latency_ratio: tick-to-order p50 with the dashboard on over off (latency_ratio_p99 at p99). "
        "runtime/dashboard/bench.py says exactly what is timed.",
        epilog="keys of --json: markets, clients, seconds, speed, stream_p50_ms, stream_p99_ms, stream_deltas,\n"
        "stream_snapshots, stream_gaps, latency_off_p50_ms, latency_off_p99_ms, orders_off, latency_on_p50_ms,\n"
        "latency_on_p99_ms, orders_on, latency_ratio, latency_ratio_p99, records_per_s_off, records_per_s_on, machine\n\n"
        "example:\n  tape bench dashboard --json")
    d.add_argument("--markets", type=int, default=300, metavar="M", help="markets (default 300)")
    d.add_argument("--clients", type=int, default=10, metavar="N", help="WebSocket clients (default 10)")
    d.add_argument("--seconds", type=float, default=15.0, metavar="S", help="length of each session (default 15)")
    d.add_argument("--speed", type=float, default=50.0, metavar="X", help="the exchange's event time per second (default 50)")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(handler=bench_dashboard)

    c = sub.add_parser(
        "cluster", help="a real 3-node Ray cluster on this machine (namespaced hosts, ray up): sampling scaling, "
        "cross-node tick-to-order latency",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Brings up Ray clusters with ray up of config/cluster-onprem.yaml on hosts made of Linux "
        "namespaces on this machine (runtime/testbed: root, Debian's openssh-server and rsync): the head and one "
        "worker, then the head and two. RLlib sampling with two env runners per worker on 1 worker and on 2 "
        "(sampling_scaling), beside the same in processes on one node (local_scaling: the hosts share this "
        "machine's cores); tick-to-order latency of a paper session with its books and orchestrator on the workers "
        "against all on the head; a node lost under a paper session: what its recovery took; ray up and ray down "
        "seconds. runtime/testbed/bench.py says what is timed.",
        epilog="keys of --json: cores, cluster_up_s, cluster_down_s, sampling_sps_1_worker, sampling_nodes_1,\n"
        "sampling_sps_2_workers, sampling_nodes_2, sampling_scaling, local_sps_2_runners, local_sps_4_runners,\n"
        "local_scaling, latency_p50_ms, latency_p99_ms, decision_p50_ms, decision_p99_ms, the same with _one_node,\n"
        "node_loss_machines_rebuilt, node_loss_recovery_s, node_loss_records_replayed, node_loss_rest_of_session_s,\n"
        "node_loss_log_identical, machine\n\nexample:\n  tape bench cluster --json")
    c.add_argument("--steps", type=int, default=2_000, metavar="N",
                   help="env steps each env runner samples per round (default 2,000)")
    c.add_argument("--latency-seconds", type=float, default=20.0, metavar="S",
                   help="length of each latency session (default 20)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(handler=bench_cluster)

    f = sub.add_parser(
        "fidelity", help="paper against true on held-out fidelity sessions, default and calibrated profiles; the "
        "matcher's orders/s under each",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Records --sessions fidelity sessions (tape fidelity: live orders on a local exchange in this "
        "process, the paper matcher shadowing them; seeds from --seed, away from the seeds calibrated-sim was chosen "
        "on), or takes --logs, re-folds each under the default and the calibrated-sim paper profiles and prints the "
        "passive fill rate's error (percentage points) and the PnL's error (percent), paper minus true over every "
        "session; then the paper matcher's orders/s under each profile on the same order stream and their ratio "
        "(matcher_ops). runtime/fidelity/bench.py says what is timed.",
        epilog="keys of --json: sessions, logs, fill_rate_error_pp_default, fill_rate_error_pp_calibrated,\n"
        "pnl_error_pct_default, pnl_error_pct_calibrated, pnl_abs_error_pct_* (session by session), pnl_true,\n"
        "pnl_paper_*, passive_fill_rate_*,\n"
        "matcher_ops_default, matcher_ops_calibrated, matcher_ops, calibrated_profile, machine\n\n"
        "example:\n  tape bench fidelity --json")
    f.add_argument("--sessions", type=int, default=4, metavar="N", help="fidelity sessions to record (default 4)")
    f.add_argument("--seconds", type=float, default=90.0, metavar="S", help="wall seconds per session (default 90)")
    f.add_argument("--markets", type=int, default=16, metavar="N", help="markets per session (default 16)")
    f.add_argument("--speed", type=float, default=10.0, metavar="X", help="the exchange's speed (default 10)")
    f.add_argument("--seed", type=int, default=9_001, metavar="S", help="the first session's seed (default 9001)")
    f.add_argument("--policies", default="rule", metavar="rule|flow|random[:SEED]|MODEL_DIR",
                   help="what trades (default rule)")
    f.add_argument("--logs", nargs="+", default=None, metavar="LOG", help="measure these fidelity sessions instead")
    f.add_argument("--log", default="runs", metavar="DIR", help="where the sessions go (default runs)")
    f.add_argument("--cash", type=float, default=10_000.0, metavar="DOLLARS", help="starting cash (default 10000)")
    f.add_argument("--repeat", type=int, default=3, metavar="N", help="matcher timing runs; the median (default 3)")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(handler=bench_fidelity)

    m = sub.add_parser(
        "sim", help="the local exchange: matching-engine operations/s and order-flow model events/s",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="engine_ops_per_s: a seeded stream of --ops engine commands (about half limit orders around the "
        "touch from 20 owners, a third cancels, the rest immediate-or-cancel takes) applied to one matching engine. "
        "model_events_per_s: events per second the order-flow model yields for --markets markets over --duration "
        "seconds of event time (engines, participants and the merge; no log). runtime/venues/sim/bench.py says "
        "exactly what is timed.",
        epilog="keys of --json: engine_ops, engine_ops_per_s, markets, duration_s, model_events,\n"
        "model_events_per_s, machine\n\nexample:\n  tape bench sim --ops 500000 --json")
    m.add_argument("--ops", type=int, default=500_000, metavar="N", help="engine commands (default 500,000)")
    m.add_argument("--markets", type=int, default=20, metavar="M", help="markets of the model session (default 20)")
    m.add_argument("--duration", type=float, default=3_600.0, metavar="SECONDS",
                   help="event time of the model session (default 3600)")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(handler=bench_sim)


def _rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def _machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True), "msgspec": msgspec.__version__}


async def _append_run(log: EventLog, entries: list, note: Callable[[int], None]) -> float:
    start = time.perf_counter()
    for lo in range(0, len(entries), BATCH):
        await log.append(entries[lo : lo + BATCH])
        note(lo + BATCH)
    await log.close()
    return time.perf_counter() - start


async def _read_run(open_reader: Callable[[], Awaitable[EventLog]]) -> tuple[float, int]:
    reader = await open_reader()
    start = time.perf_counter()
    n = 0
    async for batch in reader.read():
        n += len(batch)
    seconds = time.perf_counter() - start
    await reader.close()
    return seconds, n


async def bench_log(args: argparse.Namespace, settings: Settings) -> int:
    from . import UsageError, new_directory

    if args.events < BATCH:
        raise UsageError(f"--events must be at least {BATCH:,}")
    _check_repeat(args.repeat)
    if args.log and Path(args.log).exists():
        raise UsageError(f"--log {args.log} already exists; name a new run directory")
    if args.log:
        new_directory(args.log, "--log")
    say = Status().line if not args.json else (lambda *a: None)
    n, repeat = args.events, args.repeat
    say(f"generating {n:,} synthetic market events …")
    entries = market_events(n, markets=16, seed=1, start_ns=EPOCH_NS)
    records = [(i + 1, ts, ev) for i, (ts, ev) in enumerate(entries)]
    batches = [records[lo : lo + BATCH] for lo in range(0, n, BATCH)]

    # Each repeat measures the raw msgspec ceiling and the file log back to back, so their ratio is
    # taken under the same machine conditions; every figure is the median over the repeats.
    file_settings = LogSettings(sync="batch")
    scratch = Path(tempfile.mkdtemp(prefix="tape-bench-"))
    enc, dec, appends, reads, ratios = [], [], [], [], []
    try:
        for i in range(repeat):
            t = time.perf_counter()
            blobs = [fmt.ENCODER.encode(b) for b in batches]
            enc.append(time.perf_counter() - t)
            for blob in blobs:  # an untimed warm-up pass, so the timed decode below does not run cold
                fmt.RECORDS.decode(blob)
            t = time.perf_counter()
            for blob in blobs:
                fmt.RECORDS.decode(blob)
            dec.append(time.perf_counter() - t)

            meta = SessionMeta(session_id=new_session_id("bench"), mode="bench", venue="synthetic",
                               config_hash=settings_hash(settings), code_version=code_version(),
                               created_ns=time.time_ns())
            keep = args.log and i == repeat - 1
            root = Path(args.log) if keep else scratch / f"run{i}"
            say(f"run {i + 1}/{repeat}: msgspec ceiling, then the file log at {root} (fsync per batch) …")
            log = FileLog.create(root, meta, file_settings)
            appends.append(await _append_run(log, entries, lambda _: None))
            seconds, got = await _read_run(lambda root=root: open_log(root, settings=file_settings))
            assert got == n, f"read back {got} of {n} events"
            reads.append(seconds)
            ratios.append(dec[-1] / seconds)
            if not keep:
                shutil.rmtree(root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result: dict[str, object] = {
        "events": n, "batch": BATCH, "repeat": repeat,
        "file_append_eps": round(_rate(n, statistics.median(appends))),
        "file_read_eps": round(_rate(n, statistics.median(reads))),
        "msgspec_encode_eps": round(_rate(n, statistics.median(enc))),
        "msgspec_decode_eps": round(_rate(n, statistics.median(dec))),
        "read_vs_decode": round(statistics.median(ratios), 3),
        "bytes_per_event": round(sum(len(b) for b in blobs) / n, 1),
    }

    if args.dsn:
        from ..log.postgres import drop_session

        pg_settings = msgspec.structs.replace(settings.log, sync="batch")
        appends, reads = [], []
        for i in range(repeat):
            meta = SessionMeta(session_id=new_session_id("bench"), mode="bench", venue="synthetic",
                               config_hash=settings_hash(settings), code_version=code_version(),
                               created_ns=time.time_ns())
            say(f"postgresql run {i + 1}/{repeat}: appending session {meta.session_id} …")
            log = await create_log(args.dsn, meta, pg_settings)
            appends.append(await _append_run(log, entries, lambda _: None))
            seconds, got = await _read_run(lambda sid=meta.session_id: open_log(args.dsn, session=sid, settings=pg_settings))
            assert got == n, f"read back {got} of {n} events"
            reads.append(seconds)
            await drop_session(args.dsn, meta.session_id, pg_settings)
        result["pg_append_eps"] = round(_rate(n, statistics.median(appends)))
        result["pg_read_eps"] = round(_rate(n, statistics.median(reads)))
    return _report(args, f"tape bench log: {n:,} events, batches of {BATCH:,}, median of {repeat} run(s)", result)


def bench_book(args: argparse.Namespace, settings: Settings) -> int:
    from actors.bench import matcher_ops, run_book_bench

    from . import UsageError

    if args.deltas < 1:
        raise UsageError("--deltas must be at least 1")
    _check_repeat(args.repeat)
    say = Status().line if not args.json else (lambda m: None)
    result = run_book_bench(args.deltas, repeat=args.repeat, say=say, measures={"matcher_ops": matcher_ops})
    return _report(args, f"tape bench book: {args.deltas:,} deltas, median of {result['repeat']} run(s)", result)


async def bench_venue(args: argparse.Namespace, settings: Settings) -> int:
    from ..venues.kalshi.bench import run_codec_bench
    from ..venues.sim.bench import measure_rest, measure_server
    from . import UsageError

    if args.messages < 1:
        raise UsageError("--messages must be at least 1")
    _check_repeat(args.repeat)
    if args.server_seconds < 0 or args.rest_seconds < 0:
        raise UsageError(f"--server-seconds and --rest-seconds must be >= 0, got {args.server_seconds:g} and "
                         f"{args.rest_seconds:g}")
    say = Status().line if not args.json else (lambda m: None)
    result = run_codec_bench(args.messages, repeat=args.repeat, say=say)
    if args.server_seconds > 0:
        say(f"local exchange server: counting frames to one client for {args.server_seconds:g} s …")
        server = await measure_server(args.server_seconds)
        result.update(server_mps=server["server_mps"], server_frames=server["frames"],
                      server_bytes_per_frame=server["bytes_per_frame"], server_behind_s=server["behind_s"])
    if args.rest_seconds > 0:
        say(f"local exchange server: signed REST requests from one client for {args.rest_seconds:g} s …")
        rest = await measure_rest(args.rest_seconds)
        result.update(rest_rps=rest["rest_rps"], rest_requests=rest["requests"])
    return _report(args, f"tape bench venue: {args.messages:,} frames, median of {result['repeat']} run(s)", result)


def bench_sim(args: argparse.Namespace, settings: Settings) -> int:
    from ..venues.sim.bench import bench_engine, bench_model
    from . import UsageError

    if args.ops < 1 or args.markets < 1 or not args.duration > 0:
        raise UsageError("--ops and --markets must be at least 1 and --duration positive")
    say = Status().line if not args.json else (lambda m: None)
    say(f"matching engine: {args.ops:,} commands …")
    ops_per_s = bench_engine(args.ops)
    say(f"order-flow model: {args.markets} markets x {args.duration:g} s …")
    events, events_per_s = bench_model(args.markets, args.duration)
    result: dict[str, object] = {"engine_ops": args.ops, "engine_ops_per_s": round(ops_per_s), "markets": args.markets,
                                 "duration_s": args.duration, "model_events": events,
                                 "model_events_per_s": round(events_per_s)}
    return _report(args, "tape bench sim: the local exchange's matching engine and order-flow model", result)


async def bench_runtime(args: argparse.Namespace, settings: Settings) -> int:
    from policies.registry import PROVIDER

    from ..bench import run_runtime_bench
    from . import UsageError

    if args.events < 2 * args.batch or args.batch < 1 or not args.latency_seconds > 0:
        raise UsageError("--events must be at least twice --batch (>= 1), and --latency-seconds positive")
    say = Status().line if not args.json else (lambda m: None)
    result = await run_runtime_bench(policies=PROVIDER, events=args.events, latency_s=args.latency_seconds,
                                     batch=args.batch, say=say)
    return _report(args, f"tape bench runtime: {args.events:,} events per throughput run, batches of {args.batch:,}",
                   result)


async def bench_env(args: argparse.Namespace, settings: Settings) -> int:
    from policies.bench import run_env_bench

    from . import UsageError

    if not args.seconds > 0 or args.rllib_steps < 100:
        raise UsageError("--seconds must be positive and --rllib-steps at least 100")
    if not args.no_rllib:
        import ray

        if not ray.is_initialized():
            ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    say = Status().line if not args.json else (lambda m: None)
    result = run_env_bench(seconds=args.seconds, rllib_steps=args.rllib_steps, rllib=not args.no_rllib, say=say)
    return _report(args, "tape bench env: the RL environments", result)


async def bench_train(args: argparse.Namespace, settings: Settings) -> int:
    from policies.bench_train import run_train_bench

    from . import UsageError
    from .cluster import connect
    from .rl import _tapes

    if args.iterations < 1 or args.eval_every < 1 or args.train_batch < 1:
        raise UsageError("--iterations, --eval-every and --train-batch must be at least 1")
    if (args.data is None) != (args.heldout is None):
        raise UsageError("--data and --heldout go together: the sessions to train on and those to measure on")
    generate = args.data is None
    if generate and (args.train_sessions < 1 or args.heldout_sessions < 1 or args.markets < 1
                     or not args.duration > 0 or args.data_seed < 0):
        raise UsageError("--train-sessions, --heldout-sessions and --markets must be at least 1, --duration positive "
                         "and --data-seed >= 0")
    say = Status().line
    with tempfile.TemporaryDirectory(prefix="tape-bench-train-") as scratch:
        started = time.perf_counter()
        if generate:
            data, heldout = [str(Path(scratch) / "train")], [str(Path(scratch) / "heldout")]
            for root, sessions, seed in ((data[0], args.train_sessions, args.data_seed),
                                         (heldout[0], args.heldout_sessions, args.data_seed + 1)):
                say(f"writing {sessions} synthetic session(s) of {args.markets} market(s) x {args.duration:g} s, "
                    f"seed {seed} …")
                await _synth(Path(root), seed, sessions, args.markets, args.duration, settings)
        else:
            data, heldout = list(args.data), list(args.heldout)
        tapes = await _tapes(data, None)
        held = await _tapes(heldout, None)
        data_seconds = time.perf_counter() - started
        connect()
        result = run_train_bench(tapes, held, data=data, iterations=args.iterations, eval_every=args.eval_every,
                                 seed=args.seed, train_batch=args.train_batch, say=say)
    result.update(train_sessions=len({t.session for t in tapes}), heldout_sessions=len({t.session for t in held}),
                  markets=args.markets if generate else None, duration_s=args.duration if generate else None,
                  data_seed=args.data_seed if generate else None, data_seconds=round(data_seconds, 1))
    title = (f"tape bench train: {args.iterations} iterations of {args.train_batch:,} env steps, held-out PnL every "
             f"{args.eval_every}")
    if args.json:
        return _report(args, title, result)
    curve = result.pop("curve")
    share = result["share_of_oracle"]
    _report(args, title, {**{k: "-" if v is None else v for k, v in result.items()},
                          "share_of_oracle": "-" if share is None else f"{share:.1%}"})
    print(f"  held-out PnL (flow ${result['flow_pnl']:+,.2f}):")
    for point in curve:
        mark = "  >= flow" if point["heldout_pnl"] >= result["flow_pnl"] else ""
        print(f"    iteration {point['iteration']:>4}  {point['minutes']:7.2f} min  ${point['heldout_pnl']:+,.2f}{mark}")
    return 0


async def _synth(root: Path, seed: int, sessions: int, markets: int, duration_s: float, settings: Settings) -> None:
    """The sessions ``tape synth --sessions N --markets M --duration D --seed S --log ROOT`` writes, fair-value
    sidecars included, written by its own code (byte for byte the same)."""
    from ..venues.sim import derive_seed
    from .synth import _Plan, _Progress, _write

    progress = _Progress(sessions)
    for k in range(sessions):
        plan = _Plan(root, f"synth-{seed}-{k:04d}", derive_seed(seed, "session", k), markets, duration_s)
        records, events = await _write(plan, settings, progress)
        progress.session(plan.session_id, records, events)


async def bench_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from policies.registry import PROVIDER

    from ..dashboard.bench import run_dashboard_bench
    from . import UsageError

    if args.markets < 1 or args.clients < 1 or not args.seconds > 0 or not args.speed > 0:
        raise UsageError("--markets and --clients must be at least 1, --seconds and --speed positive")
    say = Status().line if not args.json else (lambda m: None)
    result = await run_dashboard_bench(policies=PROVIDER, markets=args.markets, clients=args.clients,
                                       seconds=args.seconds, speed=args.speed, say=say)
    return _report(args, f"tape bench dashboard: {args.markets} markets, {args.clients} clients", result)


async def bench_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from ..testbed import TestbedError
    from ..testbed.bench import run_cluster_bench
    from ..testbed.hosts import require
    from . import UsageError

    if args.steps < 100 or not args.latency_seconds > 0:
        raise UsageError("--steps must be at least 100 and --latency-seconds positive")
    try:
        require()
    except TestbedError as exc:
        raise UsageError(str(exc)) from None
    say = Status().line if not args.json else (lambda m: None)
    result = run_cluster_bench(provider="policies.registry:PROVIDER", steps=args.steps,
                               latency_s=args.latency_seconds, say=say)
    return _report(args, "tape bench cluster: three namespaced hosts on this machine, ray up", result)


async def bench_fidelity(args: argparse.Namespace, settings: Settings) -> int:
    from config.profiles import SHIPPED

    from ..fidelity.bench import run_fidelity_bench
    from ..fidelity.session import FidelityError
    from . import UsageError
    from .fidelity import _load, record
    from .paper import _policies

    _check_repeat(args.repeat)
    say = Status().line if not args.json else (lambda m: None)
    logs = args.logs
    if logs is None:
        logs = await record(args.policies, _policies(args.policies)[0], args, profile=SHIPPED["default"],
                            profile_name="default", say=say)
    try:
        result = run_fidelity_bench(await _load(logs), repeat=args.repeat, say=say)
    except FidelityError as exc:
        raise UsageError(str(exc)) from None
    return _report(args, f"tape bench fidelity: {len(logs)} held-out session(s)", result)


def _check_repeat(repeat: int) -> None:
    from . import UsageError

    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {repeat}")


def _report(args: argparse.Namespace, title: str, result: dict[str, object]) -> int:
    """Print ``result`` (plus the machine) as one JSON object with ``--json``, else as an aligned table."""
    result["machine"] = _machine()
    if args.json:
        print(msgspec.json.encode(result).decode())
        return 0
    print(title)
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key == "machine":
            continue
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        print(f"  {key:<{width}}  {shown}")
    print("  machine: " + ", ".join(f"{k}={v}" for k, v in result["machine"].items()))  # type: ignore[union-attr]
    return 0
