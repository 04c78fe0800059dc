"""segmenter:kmeans in one process vs on a Dask cluster of local worker processes, on a VRT mosaic of the Kampala
sample (1 GPix by default), and a scaling estimate for a 1 TPix mosaic from the measured per-window costs.

    python bench/bench_dask.py [--sizes 1000] [--workers 2] [--memory-mb 256]

The mosaic is bench_memory.py's (copies of the bundled orthophoto, each under its own hard link, in one VRT).
Each run is a separate driver process (this machine's QGIS side: fit, sample, the single writer) measured with
wait4 (wall, peak RSS, CPU). For the cluster run a fresh `dask scheduler` and ``--workers`` `dask worker`
processes (one thread each, no nanny) are started on localhost; after the run their peak RSS (VmHWM), the bytes
the workers sent (dask's transfer_outgoing_bytes_total: results to the driver, copies between workers), the
bytes through the loopback interface during the run (all traffic of driver, scheduler and workers, and of
anything else on this machine), and the workers' time per task kind (dask's fine performance metrics: seconds
executing, CPU seconds) are read. Both runs' label files are compared byte for byte.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from bench_memory import measured, mosaic_vrt

from common import OUT, engine_command

DRIVER = """
import json, sys, time
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.runtime.progress import Progress
stages, notes, last = {{}}, [], [None, time.perf_counter()]
def report(fraction, message):
    stage = message.split(' (', 1)[0]
    if stage != last[0]:
        now = time.perf_counter()
        if last[0]:
            stages[last[0]] = stages.get(last[0], 0.0) + now - last[1]
        last[:] = [stage, now]
started = time.perf_counter()
result = segment_kmeans({source!r}, {output!r}, segments=8, block=4, memory_mb={memory_mb}, scheduler={scheduler!r},
                        progress=Progress(report=report, log=notes.append))
now = time.perf_counter()
stages[last[0]] = stages.get(last[0], 0.0) + now - last[1]
print(json.dumps(dict(stages=stages, windows=result.windows, seconds=now - started, notes=notes)))
"""


def driver_command(source, output, memory_mb, scheduler=None):
    return engine_command(DRIVER.format(source=str(source), output=str(output), memory_mb=memory_mb,
                                        scheduler=scheduler))


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def loopback_bytes():
    counters = psutil.net_io_counters(pernic=True).get("lo")
    return counters.bytes_sent if counters else 0


class LocalCluster:
    """A `dask scheduler` and ``workers`` `dask worker` processes (one thread each) on localhost."""

    def __init__(self, workers, folder):
        dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        scheduler_file = Path(folder) / "scheduler.json"
        self.log = open(Path(folder) / "cluster.log", "w")
        self.scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                           "--scheduler-file", str(scheduler_file)], stdout=self.log,
                                          stderr=subprocess.STDOUT, env=env, cwd=folder)
        while not scheduler_file.exists():
            time.sleep(0.1)
        time.sleep(0.2)
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.workers = [subprocess.Popen([dask, "worker", self.address, "--nthreads", "1", "--no-nanny",
                                          "--no-dashboard", "--host", "127.0.0.1", "--memory-limit", "0"],
                                         stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=folder)
                        for _ in range(workers)]
        from distributed import Client

        self.client = Client(self.address, timeout="60s", set_as_default=False)
        self.client.wait_for_workers(workers, timeout=120)
        self.client.run(os.getpid)  # every worker answers

    def worker_figures(self):
        """Per worker: bytes sent, and (seconds executing, CPU seconds) per task kind."""

        def figures(dask_worker):
            spent = {}
            for key, value in dask_worker.digests_total.items():  # ("execute", span, prefix, activity, unit)
                if isinstance(key, tuple) and len(key) == 5 and key[0] == "execute" and key[4] == "seconds":
                    kind, activity = str(key[2]), key[3]
                    if kind.startswith("segmenter-") and activity in ("thread-cpu", "thread-noncpu"):
                        entry = spent.setdefault(kind, {})
                        entry[activity] = entry.get(activity, 0.0) + value
            return dict(sent=dask_worker.transfer_outgoing_bytes_total, spent=spent)

        return self.client.run(figures)

    def close(self):
        """Workers first, then the scheduler; whatever still runs after 3 s is killed."""
        self.client.close()
        for group in (self.workers, [self.scheduler]):
            for process in group:
                process.terminate()
            for process in group:
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.log.close()


def same_bytes(first, second):
    with open(first, "rb") as a, open(second, "rb") as b:
        while True:
            x, y = a.read(1 << 24), b.read(1 << 24)
            if x != y:
                return False
            if not x:
                return True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1000], help="MPix")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-mb", type=int, default=256)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} (other work on this machine slows every "
          f"figure)", flush=True)
    for size in args.sizes:
        source = mosaic_vrt(size)
        local, remote = OUT / "dask_local.tif", OUT / "dask_cluster.tif"
        wall, peak, cpu, note = measured(driver_command(source, local, args.memory_mb), 1)
        alone = json.loads(note)
        folder = tempfile.mkdtemp(prefix="bench-dask-")
        cluster = LocalCluster(args.workers, folder)
        try:
            lo_before = loopback_bytes()
            c_wall, c_peak, c_cpu, c_note = measured(driver_command(source, remote, args.memory_mb, cluster.address), 1)
            moved = loopback_bytes() - lo_before
            spread = json.loads(c_note)
            figures = cluster.worker_figures()
            worker_rss = [peak_rss_mb(process.pid) for process in cluster.workers]
            scheduler_rss = peak_rss_mb(cluster.scheduler.pid)
        finally:
            cluster.close()
            shutil.rmtree(folder, ignore_errors=True)
        identical = same_bytes(local, remote)
        report(size, args, alone, (wall, peak, cpu), spread, (c_wall, c_peak, c_cpu), figures, worker_rss,
               scheduler_rss, moved, identical)
        for leftover in (local, remote):
            leftover.unlink(missing_ok=True)
            leftover.with_suffix(".qml").unlink(missing_ok=True)


def report(size, args, alone, local, spread, remote, figures, worker_rss, scheduler_rss, moved, identical):
    mpix = size
    windows = spread["windows"]
    print(f"\n{mpix:g} MPix, K = 8, block 4, MEMORY_MB {args.memory_mb}: {windows} windows; labels byte-identical: "
          f"{identical}")
    print(f"{'run':<28} {'wall s':>7} {'driver CPU s':>12} {'driver RSS MB':>13}  stages (driver wall s)")
    for name, figures_, run in (("one process (2 threads)", local, alone),
                                (f"cluster, {args.workers} workers x 1 thread", remote, spread)):
        stages = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in run["stages"].items() if seconds >= 0.05)
        print(f"{name:<28} {figures_[0]:7.1f} {figures_[2]:12.1f} {figures_[1]:13.0f}  {stages}")
    print(f"scheduler peak RSS {scheduler_rss:.0f} MB; workers' peak RSS "
          f"{', '.join(f'{rss:.0f}' for rss in worker_rss)} MB")
    sent = sum(worker["sent"] for worker in figures.values())
    print(f"bytes moved: workers sent {sent / 1e6:.0f} MB ({sent / (mpix * 1e6):.2f} B/px: results to the driver, "
          f"copies between workers); loopback interface during the run {moved / 1e6:.0f} MB "
          f"({moved / (mpix * 1e6):.2f} B/px, all traffic of driver, scheduler and workers)")
    kinds = {}
    for worker in figures.values():
        for kind, activities in worker["spent"].items():
            entry = kinds.setdefault(kind, {})
            for activity, seconds in activities.items():
                entry[activity] = entry.get(activity, 0.0) + seconds
    cpu_ms = wall_ms = 0.0
    for kind, activities in sorted(kinds.items()):
        total = sum(activities.values())
        cpu_ms += 1000 * activities.get("thread-cpu", 0.0) / mpix
        wall_ms += 1000 * total / mpix
        detail = ", ".join(f"{activity} {seconds:.1f}" for activity, seconds in sorted(activities.items()))
        print(f"worker time in {kind + ' tasks':<26} {total:7.1f} s = {1000 * total / mpix:6.1f} ms/MPix ({detail})")
    # Scaling: the workers' time per MPix spread over N worker threads; the driver cannot go below its own CPU
    # time per MPix (receiving results, the sample, writing and compressing the labels); the fit is one-off.
    fit = spread["stages"].get("Fitting centres", 0.0)
    measuring = spread["stages"].get("Measuring the raster", 0.0)
    driver_ms = 1000 * (remote[2] - fit) / mpix  # driver CPU per MPix, fit excluded
    tpix = 1e6  # MPix
    print("\nscaling estimate for a 1 TPix mosaic (1e6 MPix), from these per-window costs:")
    print(f"  workers: {cpu_ms:.0f} CPU ms per MPix of one worker thread (both passes, decoding the input included; "
          f"{wall_ms:.0f} ms of the thread's wall time here, where {os.cpu_count()} cores are shared); driver: "
          f"{driver_ms:.1f} CPU ms per MPix (receiving, sample, writing the labels), plus one-off: fit {fit:.1f} s, "
          f"measuring the raster and connecting {measuring:.1f} s")
    single = tpix * driver_ms / 1000
    for n in (1, 4, 16, 64, 256):
        compute = tpix * cpu_ms / 1000 / n
        limit = "the workers" if compute >= single else "the driver (single writer)"
        print(f"  {n:4d} worker threads (cores): >= {max(compute, single) / 3600:6.1f} h, limited by {limit}")
    print(f"  beyond about {cpu_ms / driver_ms:.0f} worker cores the single writer is the limit: "
          f"~{single / 3600:.1f} h for 1 TPix; the shared storage must then deliver "
          f"{2 * 3 * 1e6 / (single):.0f} MB/s of input pixels (3 B/px, read twice: pass 2 computes the descriptors "
          f"again) and take {1e6 / single:.0f} MPix/s of labels")


if __name__ == "__main__":
    sys.exit(main())
