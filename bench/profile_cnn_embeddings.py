"""Where the CPU time of segmenter:cnn's embedding stage goes: thread CPU seconds and page faults per function.

    python bench/profile_cnn_embeddings.py [--mpix 25] [--repeats 3] [--before REV]

Each run is a fresh process that wraps the functions of the inference pass (reading tiles, preparing the network
input, the network itself, cutting out the cores, writing the features, offering the sample) and runs
``segment_cnn`` with the shipped model and its defaults; it reports, per function, the CPU seconds of the threads
that ran it (``time.thread_time``) and their minor page faults (``RUSAGE_THREAD``), and the stage's wall time, CPU
time (all threads) and faults. A function the engine no longer has is left out. Medians over the runs; with
``--before REV`` the engine of git revision REV (common.export_engine) runs in the same rounds.

The network's share (``LoadedModel._run``) against the rest is what keeps the stage from ONNX Runtime's speed on a
machine whose cores the network fills (bench_cnn_vs_kmeans.py prints that ceiling).
"""

import argparse
import os
import statistics

from bench_cnn_vs_kmeans import MODEL, engines, python_child

from common import ENGINE_MODULE, mosaic

CHILD = ENGINE_MODULE + """
import collections, json, resource, sys, threading, time
cnn_segmentation, sampling = engine('segmentation.cnn_segmentation'), engine('segmentation.sampling')
feature_raster, onnx_runtime = engine('rasters.feature_raster'), engine('backends.onnx_runtime')
progress = engine('runtime.progress')
seconds, faults, calls = collections.Counter(), collections.Counter(), collections.Counter()
lock = threading.Lock()
WRAPPED = [(cnn_segmentation.CnnEmbeddings, "read", "read tiles (GDAL)"),
           (cnn_segmentation.TileReader, "prepare", "prepare network input"),
           (onnx_runtime.LoadedModel, "_run", "network (ONNX Runtime)"),
           (cnn_segmentation, "embedding_cells", "cut out cores, sample rows"),
           (feature_raster.FeatureRaster, "write", "write features"),
           (sampling.BlockSample, "offer", "offer to the sample (merges included)"),
           (sampling.BlockSample, "_merge", "  of which merges"),
           (progress, "release_freed", "give freed memory back")]

def wrap(owner, name, label):
    function = getattr(owner, name, None)
    if function is None:
        return
    def wrapped(*arguments, **keywords):
        start, before = time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        try:
            return function(*arguments, **keywords)
        finally:
            spent = time.thread_time() - start
            faulted = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
            with lock:
                seconds[label] += spent
                faults[label] += faulted
                calls[label] += 1
    setattr(owner, name, wrapped)

for owner, name, label in WRAPPED:
    wrap(owner, name, label)
marks = []
def mark(stage):
    marks.append((stage, time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt))
def report(fraction, message):
    stage = message.split(" (")[0]
    if not marks or marks[-1][0] != stage:
        mark(stage)
source, output, model = sys.argv[1:4]
cnn_segmentation.segment_cnn(source, output, model, progress=progress.Progress(report=report))
mark("end")
stage = next(index for index, mark in enumerate(marks) if mark[0] == "Computing embeddings")
(_, wall0, cpu0, faults0), (_, wall1, cpu1, faults1) = marks[stage], marks[stage + 1]
print(json.dumps(dict(wall=wall1 - wall0, cpu=cpu1 - cpu0, faults=faults1 - faults0,
                      functions={label: [seconds[label], faults[label], calls[label]] for label in seconds})))
"""


def run(source, output, pythonpath=None):
    return python_child(CHILD, [source, output, MODEL], pythonpath, "the profiled run failed", output)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mpix", type=float, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", help="git revision whose engine runs in the same rounds (e.g. main)")
    args = parser.parse_args()
    source = mosaic(args.mpix)
    versions = engines(args.before)
    results = {version: [] for version in versions}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for version, path in versions.items():
            results[version].append(run(source, source.parent / "profile_cnn.tif", path))
        loads.append(os.getloadavg()[0])
    print(f"{source.name}: {args.mpix:g} MPix, model {MODEL.name}; {os.cpu_count()} CPUs; load average "
          f"{min(loads):.1f}-{max(loads):.1f}; medians of {args.repeats} interleaved runs")
    for version, runs in results.items():
        wall, cpu = (statistics.median(r[key] for r in runs) for key in ("wall", "cpu"))
        faults = statistics.median(r["faults"] for r in runs)
        print(f"{version}: embedding stage {wall:.3f} s wall, {cpu:.3f} CPU s (all threads), {faults:.0f} page "
              f"faults")
        labels = list(dict.fromkeys(label for r in runs for label in r["functions"]))
        for label in labels:
            values = [r["functions"].get(label, [0, 0, 0]) for r in runs]
            print(f"  {label:<40} {statistics.median(v[0] for v in values):6.3f} CPU s "
                  f"{statistics.median(v[1] for v in values):7.0f} faults  {values[0][2]:4d} calls")


if __name__ == "__main__":
    main()
