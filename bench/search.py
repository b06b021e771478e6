"""Search service benchmark: /search over HTTP against the bare text encoder, side by side, in one run.

    .venv/bin/python bench/search.py [--clips 10000 100000] [--models ViT-B-32:random toy] [--queries 40]

For each model and index size: synthetic clips (clustered like real embeddings: ``bench/synthetic.py``) are
upserted straight into an embedded store, then ``videoseek serve`` runs in a subprocess on that data directory and
this process acts as the clients. Reported per configuration (milliseconds, p50/p95):

* ``encoder_ms``: the bare text encoder (this process, same model, same queries, one at a time), through the
  same forward the server uses (``LoadedClip.encode_text``: cut at the last token), without the adapter bank;
* ``search_ms``: ``POST /search`` with never-seen queries (embedding + ANN + exact re-ranking + HTTP);
  target ``search p50 <= 1.3 x encoder p50 + 5 ms``;
* ``cached_ms``: the same query repeated (query-embedding cache hit); target p50 <= 5 ms;
* ``throughput``: queries/s with 1 client and with 8 concurrent clients (distinct queries, so micro-batching
  is what helps), in alternating rounds; target median ratio >= 1.5.

``--floor-cost`` measures instead what the candidate rules cost: three servers on copies of one index, with
the default MaxSim stage (``search.maxsim_prefetch``, ``search.maxsim_candidates``), with the pooled floor alone
(``search.min_candidates``, the default before MaxSim) and with neither (``limit x oversample`` only), the same
never-seen and repeated queries sent to each in turn; ``maxsim_vs_floor_*_p50_ratio`` are MaxSim / floor,
``search_p50_ratio`` and ``cached_p50_ratio`` floor / no floor.

Prints one JSON object. Absolute numbers depend on the machine; the ratios are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from synthetic import clustered_clips
from videoseek.model_spec import ModelSpec
from videoseek.store.edge import EdgeClipStore

COLLECTION = "bench"
FRAMES = 8
BATCH = 1000
LIMIT = 10
THROUGHPUT_ROUNDS = 3
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "grey")
THINGS = ("ball", "cube", "dog", "car", "bird", "kite", "boat", "tree", "lamp", "chair", "train", "horse")
ACTIONS = ("bounces", "spins", "moves left", "moves right", "falls", "rises", "stops", "appears", "shrinks")


def queries(n: int, salt: int) -> list[str]:
    """``n`` distinct, plausible queries (``salt`` keeps sets from different phases apart: no cache hits)."""
    out = []
    for i in range(n):
        k = i + salt * 100_003
        out.append(
            f"a {COLORS[k % 10]} {THINGS[(k // 10) % 12]} {ACTIONS[(k // 120) % 9]} near object {k // 1080}"
        )
    return out


def build_index(data_dir: Path, n: int, dim: int, fingerprint: str) -> float:
    store = EdgeClipStore(data_dir / "qdrant")
    started = time.perf_counter()
    store.create_collection(COLLECTION, dim, model=fingerprint)
    # Frames scaled by 10: projected features are not unit-norm.
    for batch in clustered_clips(n, dim, FRAMES, batch=BATCH, scale=10.0):
        store.upsert(COLLECTION, batch)
    store.optimize(COLLECTION)
    store.close()
    return time.perf_counter() - started


def pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
    }


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


class Server:
    """``videoseek serve`` in a subprocess (the clients must not share its interpreter and GIL)."""

    def __init__(
        self,
        data_dir: Path,
        model: str,
        port: int,
        threads: int,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOSEEK_")}
        env.update(VIDEOSEEK_DATA_DIR=str(data_dir), VIDEOSEEK_MODEL=model, VIDEOSEEK_DEVICE="cpu")
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        env.update(VIDEOSEEK_SEARCH__ENCODER_WORKERS=str(workers), **(extra_env or {}))
        self.url = f"http://127.0.0.1:{port}"
        self.log = (data_dir / "server.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "videoseek", "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def search_once(client: httpx.Client, query: str, stages: list[dict[str, float]] | None = None) -> None:
    """One ``/search``; ``stages`` collects the server's own per-stage timings (``timings_ms``)."""
    response = client.post("/search", json={"collection": COLLECTION, "query": query, "limit": LIMIT})
    response.raise_for_status()
    if stages is not None:
        stages.append(response.json()["timings_ms"])


def stage_medians(stages: list[dict[str, float]], wall_ms: list[float]) -> dict[str, float]:
    """Median server time per stage, and what is left of the client's wall time (HTTP, routing, JSON)."""
    names = sorted({name for timing in stages for name in timing})
    out = {name: round(statistics.median(t.get(name, 0.0) for t in stages), 3) for name in names}
    rest = [wall - sum(t.values()) for wall, t in zip(wall_ms, stages, strict=True)]
    out["outside_stages"] = round(statistics.median(rest), 3)
    return out


def throughput(url: str, clients: int, per_client: int, salt: int) -> float:
    texts = queries(clients * per_client, salt)
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def run(part: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            search_once(client, "warm up the connection " + part[0])
            barrier.wait()
            try:
                for text in part:
                    search_once(client, text)
            except BaseException as exc:
                errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(texts[i * per_client : (i + 1) * per_client],))
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return round(len(texts) / elapsed, 2)


def bench_config(model: str, n: int, n_queries: int, port: int, threads: int, workers: int) -> dict[str, Any]:
    import torch

    from videoseek.clip import get_clip

    clip = get_clip(ModelSpec.parse(model), "cpu")
    with tempfile.TemporaryDirectory(prefix="videoseek-bench-") as tmp:
        data_dir = Path(tmp)
        index_s = build_index(data_dir, n, clip.embed_dim, clip.identity.fingerprint)
        server = Server(data_dir, model, port, threads, workers)
        try:
            server.wait_ready()
            with httpx.Client(base_url=server.url, timeout=60) as client, torch.inference_mode():
                for text in queries(5, salt=9):  # warm-up: first forward passes, connections, page cache
                    search_once(client, text)
                    clip.encode_text(clip.tokenize([text], 32))
                # Interleaved, so both see the same machine load: the bare encoder (this process, same
                # thread count, the server idle meanwhile) and then /search, for each never-seen query.
                encoder, search, search_stages = [], [], []
                for text in queries(n_queries, salt=1):
                    encoder.append(timed(lambda t=text: clip.encode_text(clip.tokenize([t], 32))))
                    search.append(timed(lambda t=text: search_once(client, t, search_stages)))
                repeated = queries(1, salt=1)[0]
                cached_stages: list[dict[str, float]] = []
                cached = [
                    timed(lambda: search_once(client, repeated, cached_stages)) for _ in range(n_queries)
                ]
            per_client = max(4, n_queries // 4)
            rounds = []  # 1 client, then 8, a few times over: the median ratio resists load swings
            for r in range(THROUGHPUT_ROUNDS):
                qps_1 = throughput(server.url, 1, per_client * 2, salt=10 + 2 * r)
                qps_8 = throughput(server.url, 8, per_client, salt=11 + 2 * r)
                rounds.append((qps_1, qps_8))
        finally:
            server.stop()
    enc, srch = pct(encoder), pct(search)
    ratio = round(statistics.median(q8 / q1 for q1, q8 in rounds), 3)
    budget = round(1.3 * enc["p50"] + 5.0, 3)
    return {
        "model": model,
        "clips": n,
        "index_build_s": round(index_s, 1),
        "encoder_ms": enc,
        "search_ms": srch,
        "search_stage_ms_p50": stage_medians(search_stages, search),
        "search_over_encoder_p50": round(srch["p50"] / enc["p50"], 3),
        "search_over_encoder_p95": round(srch["p95"] / enc["p95"], 3),
        "search_p50_budget_ms": budget,
        "search_p50_within_budget": srch["p50"] <= budget,
        "cached_ms": pct(cached),
        "cached_stage_ms_p50": stage_medians(cached_stages, cached),
        "cached_p50_within_5ms": pct(cached)["p50"] <= 5.0,
        "qps_1_client": [q1 for q1, _ in rounds],
        "qps_8_clients": [q8 for _, q8 in rounds],
        "throughput_ratio_8_vs_1": ratio,
        "throughput_target_met": ratio >= 1.5,
    }


def cost_variants(floor: int, prefetch: int, candidates: int) -> dict[str, dict[str, str]]:
    """The servers ``--floor-cost`` compares, as their search settings: the MaxSim stage (the default), the
    pooled floor alone (the default before MaxSim) and neither (``limit x oversample`` only)."""
    return {
        "maxsim": {
            "VIDEOSEEK_SEARCH__MAXSIM_PREFETCH": str(prefetch),
            "VIDEOSEEK_SEARCH__MAXSIM_CANDIDATES": str(candidates),
        },
        "floor": {"VIDEOSEEK_SEARCH__MAXSIM_PREFETCH": "0", "VIDEOSEEK_SEARCH__MIN_CANDIDATES": str(floor)},
        "no_floor": {"VIDEOSEEK_SEARCH__MAXSIM_PREFETCH": "0", "VIDEOSEEK_SEARCH__MIN_CANDIDATES": "0"},
    }


def p50_ratio(result: dict[str, Any], what: str, num: str, den: str) -> float:
    return round(result[num][what]["p50"] / result[den][what]["p50"], 3)


def floor_cost(
    model: str, n: int, n_queries: int, port: int, threads: int, variants: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """What each candidate rule costs: one server per variant (``cost_variants``) on copies of one index, the
    same queries sent to each in turn (the order rotating, so none always goes first). Ratios of medians."""
    from videoseek.clip import get_clip

    clip = get_clip(ModelSpec.parse(model), "cpu")
    with tempfile.TemporaryDirectory(prefix="videoseek-bench-") as tmp:
        names = list(variants)
        dirs = {k: Path(tmp) / k for k in names}
        dirs[names[0]].mkdir()
        build_index(dirs[names[0]], n, clip.embed_dim, clip.identity.fingerprint)
        for k in names[1:]:
            shutil.copytree(dirs[names[0]], dirs[k])
        servers = {
            k: Server(dirs[k], model, port + i, threads, extra_env=variants[k]) for i, k in enumerate(names)
        }
        try:
            for server in servers.values():
                server.wait_ready()
            clients = {k: httpx.Client(base_url=s.url, timeout=60) for k, s in servers.items()}
            new: dict[str, list[float]] = {k: [] for k in servers}
            cached: dict[str, list[float]] = {k: [] for k in servers}
            stages: dict[str, list[dict[str, float]]] = {k: [] for k in servers}
            for text in queries(5, salt=9):  # warm-up
                for client in clients.values():
                    search_once(client, text)
            for i, text in enumerate(queries(n_queries, salt=3)):
                for k in names[i % len(names) :] + names[: i % len(names)]:
                    new[k].append(timed(lambda t=text, c=clients[k], st=stages[k]: search_once(c, t, st)))
            repeated = queries(1, salt=3)[0]
            for i in range(n_queries):
                for k in names[i % len(names) :] + names[: i % len(names)]:
                    cached[k].append(timed(lambda c=clients[k]: search_once(c, repeated)))
            for client in clients.values():
                client.close()
        finally:
            for server in servers.values():
                server.stop()
    result: dict[str, Any] = {"model": model, "clips": n, "variants": variants}
    for k in servers:
        result[k] = {
            "search_ms": pct(new[k]),
            "cached_ms": pct(cached[k]),
            "search_stage_ms_p50": stage_medians(stages[k], new[k]),
        }
    if "floor" in result and "no_floor" in result:  # the floor's own cost, as measured before MaxSim
        result["search_p50_ratio"] = p50_ratio(result, "search_ms", "floor", "no_floor")
        result["cached_p50_ratio"] = p50_ratio(result, "cached_ms", "floor", "no_floor")
    if "maxsim" in result and "floor" in result:  # the new default against the old one
        result["maxsim_vs_floor_search_p50_ratio"] = p50_ratio(result, "search_ms", "maxsim", "floor")
        result["maxsim_vs_floor_cached_p50_ratio"] = p50_ratio(result, "cached_ms", "maxsim", "floor")
    if "maxsim" in result and "no_floor" in result:
        result["maxsim_vs_no_floor_cached_p50_ratio"] = p50_ratio(result, "cached_ms", "maxsim", "no_floor")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--models", nargs="+", default=["ViT-B-32:random", "toy"])
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads for the server and the bare encoder (0: torch default)",
    )
    parser.add_argument("--encoder-workers", type=int, default=1, help="the server's search.encoder_workers")
    parser.add_argument(
        "--floor-cost",
        action="store_true",
        help="instead: the latency of the default candidate rule (the MaxSim stage) against the pooled floor "
        "(search.min_candidates, the default before it) and against neither, side by side on three servers "
        "(docs/benchmarks.md, ranking recall)",
    )
    parser.add_argument(
        "--floor", type=int, default=None, help="--floor-cost's floor (default: the setting's)"
    )
    parser.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="--floor-cost's MaxSim prefetch (default: search.maxsim_prefetch)",
    )
    parser.add_argument(
        "--maxsim-candidates",
        type=int,
        default=None,
        help="--floor-cost's MaxSim survivors (default: search.maxsim_candidates)",
    )
    args = parser.parse_args()
    # Like `videoseek serve`, before torch loads: a spinning OpenMP team here would take the server's cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    if args.floor_cost:
        from videoseek.settings import SearchSettings

        settings = SearchSettings()
        variants = cost_variants(
            settings.min_candidates if args.floor is None else args.floor,
            settings.maxsim_prefetch if args.prefetch is None else args.prefetch,
            settings.maxsim_candidates if args.maxsim_candidates is None else args.maxsim_candidates,
        )
        costs = [
            floor_cost(m, n, args.queries, args.port, threads, variants)
            for m in args.models
            for n in args.clips
        ]
        print(
            json.dumps(
                {
                    "benchmark": "search_floor_cost",
                    "torch_threads": threads,
                    "cpus": os.cpu_count(),
                    "load_average_1m": round(os.getloadavg()[0], 2),
                    "results": costs,
                },
                indent=2,
            )
        )
        return
    results = [
        bench_config(m, n, args.queries, args.port, threads, args.encoder_workers)
        for m in args.models
        for n in args.clips
    ]
    print(
        json.dumps(
            {
                "benchmark": "search",
                "torch_threads": threads,
                "encoder_workers": args.encoder_workers,
                "cpus": os.cpu_count(),
                # Other processes on the machine distort every number: report how busy it was.
                "load_average_1m": round(os.getloadavg()[0], 2),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
