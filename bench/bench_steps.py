"""The post-processing steps (blur, merge, render, statistics, knn_refine) of this checkout beside those of another
revision, in the same rounds: medians of interleaved runs, start-up excluded.

    python bench/bench_steps.py --before REF [--mpix 25] [--repeats 3] [--steps blur,merge,...]

The input is a K-Means run (K = 8, with its feature raster) on the Kampala mosaic of bench/common.py, made once by
this checkout and cached in bench/out/steps-<mpix>mp/. Each run is a fresh process that imports the engine, then
times the one engine call the algorithm makes with its defaults (render: mean colours and the composite; statistics:
with IMAGE). ``--before REF`` exports the engine of git revision REF (``git archive``) to bench/out/before-REF/ and
runs it through PYTHONPATH; every round runs every step of both versions once, so load drifts hit all alike.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import ENGINE_MODULE, OUT, export_engine, mosaic

# step: (engine module, entry point, arguments after the input(s), as Python source)
STEPS = {
    "blur": ("blur", "blur_labels", "LABELS, OUT + '.tif'"),
    "blur gaussian": ("blur", "blur_labels", "LABELS, OUT + '.tif', method='gaussian', strength='high'"),
    "merge": ("merge", "merge_labels", "LABELS, OUT + '.tif', 3"),
    "render": ("render", "render_labels", "LABELS, OUT + '.tif', palette='mean_colour', image_path=IMAGE, "
               "composite_path=OUT + '_composite.tif'"),
    "statistics": ("statistics", "segment_statistics", "LABELS, OUT + '.csv', image_path=IMAGE"),
    "knn_refine": ("knn_refine", "refine_knn", "LABELS, FEATURES, OUT + '.tif'"),
}

# The module is looked up where the engine of either revision keeps it (common.ENGINE_MODULE).
CHILD = ENGINE_MODULE + """
import json, os, sys, time
module, function, arguments = sys.argv[1:4]
LABELS, FEATURES, IMAGE, OUT = sys.argv[4:8]
for leftover in (OUT + '.tif', OUT + '.qml', OUT + '.csv', OUT + '_composite.tif'):
    if os.path.exists(leftover):
        os.remove(leftover)
step = engine('steps.' + module)
start, cpu = time.perf_counter(), time.process_time()
eval(f'step.{function}({arguments})')
print(json.dumps([time.perf_counter() - start, time.process_time() - cpu]))
"""


def inputs(megapixels):
    """(labels, features, image): K-Means labels and features of the mosaic, made once by this checkout."""
    from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans

    image = str(mosaic(megapixels))
    folder = OUT / f"steps-{megapixels:g}mp"
    labels, features = folder / "labels.tif", folder / "features.tif"
    if not labels.exists():
        folder.mkdir(parents=True, exist_ok=True)
        segment_kmeans(image, str(labels), segments=8, features_path=str(features))
    return str(labels), str(features), image


def run(step, arguments, folder, pythonpath):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [pythonpath, os.environ.get("PYTHONPATH")])))
    completed = subprocess.run([sys.executable, "-c", CHILD, *step, *arguments, str(folder)], capture_output=True,
                               text=True, env=env)
    if completed.returncode != 0:
        raise SystemExit(f"{step} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision whose engine runs in the same rounds")
    parser.add_argument("--mpix", type=float, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of: {', '.join(STEPS)}")
    args = parser.parse_args()
    steps = [step.strip() for step in args.steps.split(",")]
    arguments = inputs(args.mpix)
    versions = {args.before: str(export_engine(args.before)), "this checkout": None}
    times = {(step, version): [] for step in steps for version in versions}
    for _ in range(args.repeats):
        for step in steps:
            for version, pythonpath in versions.items():
                folder = OUT / f"step-{step.replace(' ', '_')}-{'after' if pythonpath is None else 'before'}"
                times[step, version].append(run(STEPS[step], arguments, folder, pythonpath))
    print(f"{args.mpix:g} MPix, {args.repeats} rounds, medians (wall s / CPU s); load {os.getloadavg()[0]:.2f}")
    print(f"{'step':<16}{args.before:>20}{'this checkout':>20}{'after / before':>16}")
    for step in steps:
        before, after = (times[step, version] for version in versions)
        wall = [statistics.median(run[0] for run in runs) for runs in (before, after)]
        cpu = [statistics.median(run[1] for run in runs) for runs in (before, after)]
        print(f"{step:<16}{wall[0]:>12.2f} / {cpu[0]:<5.2f}{wall[1]:>12.2f} / {cpu[1]:<5.2f}{wall[1] / wall[0]:>14.2f}")


if __name__ == "__main__":
    main()
