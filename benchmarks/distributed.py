"""Data-parallel fitting (``distributed=True``) against the single-process fit of the same data:
the logistic simulation (seed 3), N individuals, 1 process x 1 thread against K processes x 1
thread started by torchrun on this machine (gloo), one after the other; seconds of the fit (the
data simulated in every process beforehand), peak RSS per process, and the largest relative
difference of the estimates, SEs and log-likelihood from the single process's.

    python -m benchmarks distributed                  # N = 10^6, 2 processes
    python -m benchmarks distributed --individuals 200000 --nproc 2 --out /tmp/b

Writes distributed.csv, distributed.json and distributed.md to --out (default benchmarks/results).

``--shards``: instead, the simulation written once to a Parquet file; one process reads it whole
(pandas), each of ``--nproc`` reads only its individuals' rows (pymixnn.read_shard, by range) and
fits with ``shards=True``; memory after reading (the table held) and the peak during the fit
(VmHWM reset after reading), rows read, seconds of the reading and of the fit. Writes
distributed_shards.{csv,json,md}.

``--genotypes G [G ...]`` (issue 25, point 3): instead, a genomic fit per G: G genotypes x 3
scenarios (3G growth curves, simulate_genomic, seed 6) with ``--markers`` markers (default 60,000;
simulate_markers, seed 5) on A (ridge prior), 1 process against ``--nproc``; the study simulated
once and loaded by each process (records and the float32 marker matrix), whose memory before the
fit and peak during it (VmHWM reset after loading) are reported. Writes
distributed_genomic.{csv,json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]


def _save_genomic(genotypes: int, markers: int, where: Path) -> None:
    """The study simulated once (here, not in every process): markers (.npy, float32) and records."""
    from pymixnn.simulate import simulate_genomic, simulate_markers

    matrix = simulate_markers(genotypes, markers, seed=5)
    simulate_genomic(matrix, n_scenarios=3, seed=6).to_pickle(where / "records.pkl")
    np.save(where / "markers.npy", matrix.to_numpy())
    (where / "names.json").write_text(json.dumps([list(matrix.index), list(matrix.columns)]))


def _load_genomic(where: Path):
    import pymixnn

    rows, cols = json.loads((where / "names.json").read_text())
    matrix = pd.DataFrame(np.load(where / "markers.npy"), index=pd.Index(rows, name="genotype"), columns=cols)
    kw = dict(
        covariates={"A": ["scenario"]},
        genotype="genotype",
        genomic=pymixnn.Genomic(matrix, params=["A"], prior="ridge"),
    )
    return pd.read_pickle(where / "records.pkl"), kw


def _status_mb(field: str) -> float:
    """A field of /proc/self/status (VmRSS: now, VmHWM: the peak since the last reset), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(n: int, results: str, data: str | None = None, table: str | None = None) -> None:
    """One process's fit (under torchrun when WORLD_SIZE is set): its record in ``results``."""
    import torch

    torch.set_num_threads(1)
    import pymixnn
    from pymixnn.simulate import simulate_logistic

    distributed = "WORLD_SIZE" in os.environ
    t_read = time.perf_counter()
    if data:
        df, kw = _load_genomic(Path(data))
    elif table:  # the whole file in one process, its own rows in each of several
        df = pymixnn.read_shard(table, "id") if distributed else pd.read_parquet(table)
        kw = dict(shards=True) if distributed else {}
    else:
        df, kw = simulate_logistic(n, seed=3), {}
    t_read = time.perf_counter() - t_read
    if data or table:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # the peak RSS from here on: the fit's
        rss_data = _status_mb("VmRSS")
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("gloo")
    t0 = time.perf_counter()
    res = pymixnn.fit(
        df, "logistic", id="id", x="t", y="y", seed=0, progress=False, threads=1, distributed=distributed,
        **kw,
    )  # fmt: skip
    out = dict(
        rank=int(os.environ.get("RANK", 0)),
        processes=int(os.environ.get("WORLD_SIZE", 1)),
        seconds=time.perf_counter() - t0,
        loglik=res.loglik,
        estimate=[r["estimate"] for r in res.estimation.table],
        se=[r["se"] for r in res.estimation.table],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        gear=res.run.gear,
    )
    if data:
        g, m = kw["genomic"].markers.shape
        out.update(genotypes=g, markers=m, individuals=len(res.individual_params()))
        # the records and marker matrix loaded, before the fit; the peak during the fit
        out.update(rss_mb_data=rss_data, peak_rss_mb_fit=_status_mb("VmHWM"))
    if table:
        held = dict(rss_mb_data=rss_data, peak_rss_mb_fit=_status_mb("VmHWM"))
        out.update(rows_read=len(df), seconds_read=t_read, **held)
    (Path(results) / f"rank{out['rank']}.json").write_text(json.dumps(out))
    if distributed:
        dist.destroy_process_group()


def _run(cmd: list[str]) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as results:
        done = subprocess.run(
            [*cmd, "--results", results], env=env, capture_output=True, text=True, check=False
        )
        rows = [json.loads(p.read_text()) for p in sorted(Path(results).glob("rank*.json"))]
    if done.returncode or not rows:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return sorted(rows, key=lambda r: r["rank"])


def _rel(a, b) -> float:
    return max(abs(x - y) / max(abs(y), 1e-300) for x, y in zip(a, b))


def _compare(me: list[str], nproc: int) -> list[dict]:
    """The worker ``me`` as one process, then as ``nproc`` under torchrun: rows with the speed-up
    and the largest relative differences from the single process."""
    single = _run(me)[0]
    torchrun = Path(sys.executable).with_name("torchrun")
    many = _run([str(torchrun), "--standalone", f"--nproc-per-node={nproc}", *me[1:]])
    rows = [dict(single, speedup=1.0)]
    for r in many:
        r.update(
            speedup=single["seconds"] / max(x["seconds"] for x in many),
            max_rel_diff_estimate=_rel(r["estimate"], single["estimate"]),
            max_rel_diff_se=_rel(r["se"], single["se"]),
            rel_diff_loglik=_rel([r["loglik"]], [single["loglik"]]),
        )
        rows.append(r)
    return rows


def _write(rows: list[dict], out: Path, stem: str, title: str, command: str, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([{k: v for k, v in r.items() if k not in ("estimate", "se")} for r in rows])
    table.to_csv(out / f"{stem}.csv", index=False)
    (out / f"{stem}.json").write_text(json.dumps(dict(meta=meta, records=rows), indent=2))
    lines = [
        f"# {title} ({meta['date']}; {meta['machine']})",
        "",
        f"`{command}`",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks distributed")
    ap.add_argument("--individuals", dest="n", type=int, default=1_000_000)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--genotypes", type=int, nargs="+", help="genomic fits of G genotypes x 3 scenarios")
    ap.add_argument("--markers", type=int, default=60_000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    ap.add_argument("--shards", action="store_true", help="each process reads its own rows of a Parquet file")
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--table", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.n, args.results, args.data, args.table)
    meta = dict(
        date=dt.datetime.now().isoformat(timespec="seconds"),
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        "1 torch thread per process",
    )
    me = [sys.executable, "-m", "benchmarks.distributed", "--worker"]
    if args.genotypes:
        rows = []
        for g in args.genotypes:
            with tempfile.TemporaryDirectory() as where:
                _save_genomic(g, args.markers, Path(where))
                rows += _compare([*me, "--data", where], args.nproc)
        title = f"Data-parallel genomic fit, G genotypes x 3 scenarios x {args.markers:,} markers"
        command = f"python -m benchmarks distributed --genotypes {' '.join(map(str, args.genotypes))}"
        return _write(rows, Path(args.out), "distributed_genomic", title, command, meta)
    meta["n_individuals"] = args.n
    if args.shards:
        from pymixnn.simulate import simulate_logistic

        with tempfile.TemporaryDirectory() as where:
            path = Path(where) / "logistic.parquet"
            frame = simulate_logistic(args.n, seed=3)
            frame.attrs = {}
            frame.to_parquet(path, index=False)
            del frame
            rows = _compare([*me, "--table", str(path)], args.nproc)
        title = f"Data-parallel fit from shards of a Parquet file, logistic N = {args.n:,}"
        command = "python -m benchmarks distributed --shards"
        return _write(rows, Path(args.out), "distributed_shards", title, command, meta)
    rows = _compare([*me, "--individuals", str(args.n)], args.nproc)
    title = f"Data-parallel fit, logistic N = {args.n:,}"
    _write(rows, Path(args.out), "distributed", title, "python -m benchmarks distributed", meta)


if __name__ == "__main__":
    main()
