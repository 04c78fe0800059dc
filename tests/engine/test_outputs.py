"""Issue 10, "nothing lost, nothing left behind": what every engine entry point writes, where, and when.

An output never replaces an input or another output, nor a style file that is not ours; a failed run leaves
every destination as it was; write errors are reported; extensions and folders are checked before any work;
long names work; and what a killed run leaves behind is removed by the next run.
"""

import errno
import os
import re
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from onnx_builders import SHIPPED
from osgeo import gdal

from map_segmenter.engine.runtime.errors import Cancelled, OutputError
from map_segmenter.engine.runtime.progress import Progress
from map_segmenter.engine.segmentation.cnn_segmentation import segment_cnn
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.steps.blur import blur_labels
from map_segmenter.engine.steps.knn_refine import refine_knn
from map_segmenter.engine.steps.render import render_labels

from helpers import read_array, write_raster

try:
    import resource
except ImportError:  # not POSIX
    resource = None

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scene(path, size=96, seed=0):
    """A 3-band Byte raster of four flat-ish quadrants with noise: K-Means finds them at any K <= 4."""
    rng = np.random.default_rng(seed)
    quadrant = (np.arange(size)[:, None] >= size // 2) * 2 + (np.arange(size)[None, :] >= size // 2)
    colours = np.array([[40, 60, 50], [200, 190, 170], [90, 140, 60], [150, 80, 70]])
    pixels = colours[quadrant].transpose(2, 0, 1) + rng.normal(0, 6, (3, size, size))
    return write_raster(path, np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """An image, K-Means labels and features of it (shared, never written to by the tests)."""
    folder = tmp_path_factory.mktemp("outputs")
    image = scene(folder / "image.tif")
    labels, features = str(folder / "labels.tif"), str(folder / "features.tif")
    segment_kmeans(image, labels, segments=4, block=4, features_path=features)
    return image, labels, features


def snapshot(*paths):
    return {str(path): open(path, "rb").read() for path in paths}


def unchanged(before):
    return all(open(path, "rb").read() == content for path, content in before.items())


def leftovers(folder):
    return sorted(name for name in os.listdir(folder) if "partial" in name)


def warnings_into(messages):
    return Progress(warn=messages.append)


# ------------------------------------------------------------------ 1. outputs never replace inputs


def test_no_output_replaces_the_reference(tmp_path, made):
    image, labels, _ = made
    reference = tmp_path / "reference.tif"
    reference.write_bytes(open(labels, "rb").read())
    before = snapshot(reference, image)
    with pytest.raises(OutputError, match=r"OUTPUT '.*reference\.tif' is also an input \(REFERENCE '"):
        segment_kmeans(image, str(reference), reference_path=str(reference))
    with pytest.raises(OutputError, match=r"FEATURES '.*reference\.tif' is also an input \(REFERENCE '"):
        segment_kmeans(image, str(tmp_path / "out.tif"), features_path=str(reference), reference_path=str(reference))
    with pytest.raises(OutputError, match=r"OUTPUT '.*reference\.tif' is also an input \(REFERENCE '"):
        segment_cnn(image, str(reference), str(SHIPPED), reference_path=str(reference))
    with pytest.raises(OutputError, match=r"FEATURES '.*reference\.tif' is also an input \(REFERENCE '"):
        segment_cnn(image, str(tmp_path / "out.tif"), str(SHIPPED), features_path=str(reference),
                    reference_path=str(reference))
    assert unchanged(before)
    assert sorted(os.listdir(tmp_path)) == ["reference.tif"]


def test_links_to_an_input_are_the_input(tmp_path, made):
    image, labels, features = made
    own = tmp_path / "labels.tif"
    own.write_bytes(open(labels, "rb").read())
    before = snapshot(own, image, labels, features)
    (tmp_path / "soft.tif").symlink_to(own)
    os.link(own, tmp_path / "hard.tif")
    with pytest.raises(OutputError, match=r"OUTPUT '.*soft\.tif' is also an input \(REFERENCE '"):
        segment_kmeans(image, str(tmp_path / "soft.tif"), reference_path=str(own))
    with pytest.raises(OutputError, match=r"COMPOSITE '.*hard\.tif' is also an input \(INPUT '"):
        render_labels(str(own), str(tmp_path / "styled.tif"), image_path=image,
                      composite_path=str(tmp_path / "hard.tif"))
    with pytest.raises(OutputError, match=r"OUTPUT '.*hard\.tif' is also an input \(LABELS '"):
        refine_knn(str(own), features, str(tmp_path / "hard.tif"))
    with pytest.raises(OutputError, match=r"OUTPUT '.*hard\.tif' is also an input \(INPUT '"):
        blur_labels(str(own), str(tmp_path / "hard.tif"))
    assert unchanged(before)
    assert sorted(os.listdir(tmp_path)) == ["hard.tif", "labels.tif", "soft.tif"]


def test_two_outputs_of_one_run_are_never_the_same_file(tmp_path, made):
    image, labels, _ = made
    out = tmp_path / "out.tif"
    out.write_bytes(b"earlier")
    (tmp_path / "link.tif").symlink_to(out)
    with pytest.raises(OutputError, match=r"FEATURES '.*link\.tif' is the same file as OUTPUT '.*out\.tif'"):
        segment_kmeans(image, str(out), features_path=str(tmp_path / "link.tif"))
    with pytest.raises(OutputError, match=r"COMPOSITE '.*link\.tif' is the same file as OUTPUT '.*out\.tif'"):
        render_labels(labels, str(out), image_path=image, composite_path=str(tmp_path / "link.tif"))
    assert out.read_bytes() == b"earlier"


def test_the_style_sidecar_never_replaces_an_input(tmp_path, made):
    # GDAL opens by content: a GeoTIFF named labels.qml is a valid INPUT, and OUTPUT labels.tif's style would
    # go to that very file.
    _, labels, _ = made
    disguised = tmp_path / "labels.qml"
    disguised.write_bytes(open(labels, "rb").read())
    before = snapshot(disguised)
    with pytest.raises(OutputError, match=r"style sidecar of OUTPUT '.*labels\.qml' is also an input \(INPUT '"):
        blur_labels(str(disguised), str(tmp_path / "labels.tif"))
    assert unchanged(before)
    assert sorted(os.listdir(tmp_path)) == ["labels.qml"]


# ------------------------------------------------------------------ 2. the .qml sidecar


def test_a_style_file_we_did_not_write_is_left_alone(tmp_path, made):
    image, _, _ = made
    photo = tmp_path / "ortho.jpg"
    gdal.Translate(str(photo), image, format="JPEG")
    mine = tmp_path / "ortho.qml"
    mine.write_text("<!DOCTYPE qgis><qgis><!-- the user's own style of ortho.jpg --></qgis>\n")
    warnings = []
    segment_kmeans(str(photo), str(tmp_path / "ortho.tif"), segments=3, progress=warnings_into(warnings))
    assert mine.read_text() == "<!DOCTYPE qgis><qgis><!-- the user's own style of ortho.jpg --></qgis>\n"
    assert len(warnings) == 1 and str(mine) in warnings[0] and "colour table" in warnings[0]
    dataset = gdal.Open(str(tmp_path / "ortho.tif"))
    assert dataset.GetRasterBand(1).GetRasterColorTable().GetCount() >= 4  # still styled by its colour table
    assert not leftovers(tmp_path)


def test_the_style_of_an_input_is_left_alone(tmp_path, made):
    # render labels.tif into labels.tiff: labels.qml is the style of the INPUT, not of the output
    _, labels, _ = made
    own = tmp_path / "labels.tif"
    own.write_bytes(open(labels, "rb").read())
    blur_labels(str(own), str(tmp_path / "other.tif"))  # any run writes our style for other.tif ...
    style = tmp_path / "labels.qml"
    style.write_text((tmp_path / "other.qml").read_text())  # ... here as the input's own style, ours
    before = snapshot(style)
    warnings = []
    render_labels(str(own), str(tmp_path / "labels.tiff"), palette="ramp", progress=warnings_into(warnings))
    assert unchanged(before)
    assert len(warnings) == 1 and str(style) in warnings[0] and "INPUT" in warnings[0]


def test_our_own_style_file_is_replaced_and_marked(tmp_path, made):
    image, _, _ = made
    out = tmp_path / "labels.tif"
    segment_kmeans(image, str(out), segments=4)
    first = (tmp_path / "labels.qml").read_text()
    assert "map_segmenter" in first and first.count("<paletteEntry") == 4
    warnings = []
    segment_kmeans(image, str(out), segments=3, progress=warnings_into(warnings))
    assert (tmp_path / "labels.qml").read_text().count("<paletteEntry") == 3 and not warnings
    # a style written by an earlier version (the same template without the marker) is ours too
    legacy = "".join(line for line in first.splitlines(True) if "map_segmenter" not in line)
    (tmp_path / "labels.qml").write_text(legacy)
    segment_kmeans(image, str(out), segments=3, progress=warnings_into(warnings))
    assert (tmp_path / "labels.qml").read_text().count("<paletteEntry") == 3 and not warnings


# ------------------------------------------------------------------ 3. all outputs or none


def test_a_cancelled_composite_leaves_the_earlier_output_untouched(tmp_path, made):
    image, labels, _ = made
    styled, composite = tmp_path / "styled.tif", tmp_path / "composite.tif"
    render_labels(labels, str(styled), palette="ramp")
    before = snapshot(styled, tmp_path / "styled.qml")
    seen = []
    progress = Progress(report=lambda fraction, message: seen.append(message),
                        is_cancelled=lambda: "Writing composite" in seen)
    with pytest.raises(Cancelled):
        render_labels(labels, str(styled), image_path=image, composite_path=str(composite), progress=progress)
    assert unchanged(before)
    assert sorted(os.listdir(tmp_path)) == ["styled.qml", "styled.tif"]


def limited(code, limit, tmp_path):
    """Run ``code`` in a Python whose files may not grow beyond ``limit`` bytes (RLIMIT_FSIZE, SIGXFSZ
    ignored, so writes fail with EFBIG); returns the completed process."""
    prelude = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        f"sys.path[:0] = [{TESTS!r}]\n"
        "from map_segmenter.engine.runtime.errors import OutputError\n"
        "try:\n"
    )
    body = "".join(f"    {line}\n" for line in code.strip().splitlines())
    script = prelude + body + "except OutputError as error:\n    print('OutputError:', error)\n    sys.exit(3)\n"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", TMPDIR=str(tmp_path))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)


needs_rlimit = pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE") or not hasattr(signal, "SIGXFSZ"),
                                  reason="needs RLIMIT_FSIZE and SIGXFSZ (POSIX)")


def many_labels(path, segments=200):
    """64 x 64 px of smooth ids 1..``segments`` (compresses to little; its .qml has ``segments`` entries)."""
    ids = (np.arange(64 * 64).reshape(64, 64) * segments // (64 * 64) + 1).astype(np.uint8)
    return write_raster(path, ids, nodata=0)


@needs_rlimit
def test_a_style_that_cannot_be_written_leaves_the_earlier_output_untouched(tmp_path):
    labels = many_labels(tmp_path / "ids.tif")
    out = tmp_path / "styled.tif"
    out.write_bytes(b"earlier labels")
    (tmp_path / "styled.qml").write_text("<qgis><!-- map_segmenter: earlier style --></qgis>\n")
    before = snapshot(out, tmp_path / "styled.qml", labels)
    done = limited(f"""
from map_segmenter.engine.steps.render import render_labels
render_labels({labels!r}, {str(out)!r})
""", 12_000, tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"QGIS style '{tmp_path / 'styled.qml'}'" in done.stdout and "file size limit" in done.stdout
    assert unchanged(before)
    assert sorted(os.listdir(tmp_path)) == ["ids.tif", "styled.qml", "styled.tif"]


@pytest.fixture
def full_disk(tmp_path):
    """A tiny tmpfs filled to the last byte (root with CAP_SYS_ADMIN only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        with open(mount / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError as error:
                assert error.errno == errno.ENOSPC
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_quicklook_on_a_full_disk_fails_and_leaves_every_output_untouched(tmp_path, made, full_disk):
    image, labels, _ = made
    styled, composite, quicklook = tmp_path / "styled.tif", tmp_path / "composite.tif", full_disk / "look.png"
    render_labels(labels, str(styled), image_path=image, composite_path=str(composite))
    before = snapshot(styled, composite, tmp_path / "styled.qml")
    with pytest.raises(OutputError) as error:
        render_labels(labels, str(styled), palette="ramp", image_path=image, composite_path=str(composite),
                      quicklook_path=str(quicklook))
    message = str(error.value)
    assert f"Could not write QUICKLOOK '{quicklook}'" in message and "the disk is full" in message
    assert re.search(r"needs about \d+(\.\d+)? (bytes|kB|MB)", message), message
    assert unchanged(before)
    assert sorted(os.listdir(tmp_path)) == ["composite.tif", "disk", "styled.qml", "styled.tif"]
    assert sorted(os.listdir(full_disk)) == ["filler"]


# ------------------------------------------------------------------ 4. write errors are reported


# GDAL >= 3.8 raises what closing a failed file meets from the dataset's destructor, which Python can only print
# ("Exception ignored in ..."): the abort path must not let it.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_labels_on_a_full_disk_name_the_path(tmp_path, made, full_disk):
    image, _, _ = made
    out = full_disk / "labels.tif"
    with pytest.raises(OutputError) as error:
        segment_kmeans(image, str(out), segments=4)
    message = str(error.value)
    assert f"OUTPUT '{out}'" in message and "the disk is full" in message and "needs about" in message
    assert sorted(os.listdir(full_disk)) == ["filler"]


def test_scratch_features_on_a_full_disk_name_the_scratch_and_leave_nothing(tmp_path, made, full_disk,
                                                                          monkeypatch):
    image, _, _ = made
    monkeypatch.setattr(tempfile, "tempdir", str(full_disk))
    out = tmp_path / "labels.tif"
    with pytest.raises(OutputError) as error:
        segment_kmeans(image, str(out), segments=4)
    message = str(error.value)
    assert re.match(rf"Could not write the scratch feature raster '{full_disk}/segmenter-[^']+/features.f32': "
                    r"the disk is full\. It needs about \d+(\.\d+)? kB", message), message
    assert sorted(os.listdir(full_disk)) == ["filler"] and os.listdir(tmp_path) == ["disk"]


@needs_rlimit
def test_a_file_size_limit_is_reported_for_the_output_it_stops(tmp_path, made):
    image, _, _ = made
    done = limited(f"""
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
segment_kmeans({image!r}, {str(tmp_path / 'labels.tif')!r}, segments=4, block=1,
               features_path={str(tmp_path / 'features.tif')!r})
""", 20_000, tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert f"FEATURES '{tmp_path / 'features.tif'}'" in done.stdout and "file size limit" in done.stdout
    assert "needs about" in done.stdout
    assert os.listdir(tmp_path) == []


@needs_rlimit
def test_a_quicklook_cut_short_is_an_error_not_an_empty_png(tmp_path):
    rng = np.random.default_rng(1)
    noisy = write_raster(tmp_path / "noisy.tif", rng.integers(1, 200, (300, 300)).astype(np.uint8), nodata=0)
    done = limited(f"""
from map_segmenter.engine.steps.render import render_labels
render_labels({noisy!r}, {str(tmp_path / 'styled.tif')!r}, quicklook_path={str(tmp_path / 'look.png')!r})
""", 150_000, tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"QUICKLOOK '{tmp_path / 'look.png'}'" in done.stdout and "file size limit" in done.stdout
    assert sorted(os.listdir(tmp_path)) == ["noisy.tif"]


# ------------------------------------------------------------------ 5, 9, 10. destinations checked up front


def no_work():
    """A Progress that fails the test when the run gets as far as its first stage."""
    def report(fraction, message):
        raise AssertionError(f"work started ({message}) before the destination was refused")
    return Progress(report=report)


@pytest.mark.parametrize("name", ["x.png", "x.jpg", "x.gpkg", "x", "x.tif.zip"])
def test_raster_outputs_must_be_geotiff_files(tmp_path, made, name):
    image, labels, features = made
    target = str(tmp_path / name)
    fragment = re.escape(f"'{target}'") + r".*\.tif or \.tiff"
    with pytest.raises(OutputError, match="OUTPUT " + fragment):
        segment_kmeans(image, target, progress=no_work())
    with pytest.raises(OutputError, match="FEATURES " + fragment):
        segment_kmeans(image, str(tmp_path / "ok.tif"), features_path=target, progress=no_work())
    with pytest.raises(OutputError, match="OUTPUT " + fragment):
        blur_labels(labels, target, progress=no_work())
    with pytest.raises(OutputError, match="OUTPUT " + fragment):
        refine_knn(labels, features, target, progress=no_work())
    with pytest.raises(OutputError, match="COMPOSITE " + fragment):
        render_labels(labels, str(tmp_path / "ok.tif"), image_path=image, composite_path=target, progress=no_work())
    with pytest.raises(OutputError, match="OUTPUT " + fragment):
        segment_cnn(image, target, str(SHIPPED), progress=no_work())
    assert os.listdir(tmp_path) == []


def test_the_quicklook_must_be_a_png_and_tiff_names_are_fine(tmp_path, made):
    _, labels, _ = made
    target = str(tmp_path / "look.jpg")
    with pytest.raises(OutputError, match="QUICKLOOK " + re.escape(f"'{target}'") + r".*\.png"):
        render_labels(labels, str(tmp_path / "ok.tif"), quicklook_path=target, progress=no_work())
    assert os.listdir(tmp_path) == []
    render_labels(labels, str(tmp_path / "upper.TIFF"), quicklook_path=str(tmp_path / "look.PNG"))
    assert sorted(os.listdir(tmp_path)) == ["look.PNG", "upper.TIFF", "upper.qml"]


def test_an_existing_folder_is_refused_before_any_work(tmp_path, made):
    image, labels, _ = made
    folder = tmp_path / "out.tif"
    folder.mkdir()
    message = rf"'{re.escape(str(folder))}' is a folder"
    with pytest.raises(OutputError, match="OUTPUT " + message):
        segment_kmeans(image, str(folder), progress=no_work())
    with pytest.raises(OutputError, match="FEATURES " + message):
        segment_kmeans(image, str(tmp_path / "ok.tif"), features_path=str(folder), progress=no_work())
    with pytest.raises(OutputError, match="OUTPUT " + message):
        blur_labels(labels, str(folder), progress=no_work())
    (tmp_path / "look.png").mkdir()
    with pytest.raises(OutputError, match="QUICKLOOK '.*look.png' is a folder"):
        render_labels(labels, str(tmp_path / "ok.tif"), quicklook_path=str(tmp_path / "look.png"),
                      progress=no_work())
    assert sorted(os.listdir(tmp_path)) == ["look.png", "out.tif"] and os.listdir(folder) == []


def test_a_long_output_name_is_written(tmp_path, made):
    image, labels, _ = made
    name = "segments_of_a_long_descriptive_name_" + "x" * 200 + ".tif"
    assert len(name) == 240
    segment_kmeans(image, str(tmp_path / name), segments=4, features_path=str(tmp_path / ("f" + name[1:])))
    blur_labels(str(tmp_path / name), str(tmp_path / ("b" + name[1:])))
    render_labels(labels, str(tmp_path / ("r" + name[1:])), quicklook_path=str(tmp_path / ("q" + name[1:-4] + ".png")))
    assert np.array_equal(read_array(tmp_path / name), read_array(labels))
    assert sorted(os.listdir(tmp_path)) == sorted([
        name, name[:-4] + ".qml", "f" + name[1:], "b" + name[1:], "b" + name[1:-4] + ".qml", "r" + name[1:],
        "r" + name[1:-4] + ".qml", "q" + name[1:-4] + ".png"])


def test_a_name_longer_than_the_file_system_allows_is_refused_as_such(tmp_path, made):
    image, _, _ = made
    name = "x" * 300 + ".tif"
    with pytest.raises(OutputError, match=r"OUTPUT's file name is 304 bytes long; .* allows at most 255"):
        segment_kmeans(image, str(tmp_path / name), progress=no_work())


# ------------------------------------------------------------------ 13. leftovers of killed runs

KILLED_RUN = """
import time
from map_segmenter.engine.segmentation.kmeans_segmentation import segment_kmeans
from map_segmenter.engine.runtime.progress import Progress

def report(fraction, message):
    if message.startswith("Assigning segments"):
        print("assigning", flush=True)
        time.sleep(300)

segment_kmeans({image!r}, {out!r}, segments=4, progress=Progress(report=report))
"""


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run_and_live_ones_kept(tmp_path, made, monkeypatch):
    image, _, _ = made
    folder, scratch = tmp_path / "out", tmp_path / "scratch"
    folder.mkdir()
    scratch.mkdir()
    out = folder / "labels.tif"
    code = KILLED_RUN.format(image=image, out=str(out))
    run = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ, TMPDIR=str(scratch), PYTHONDONTWRITEBYTECODE="1"))
    try:
        assert run.stdout.readline().strip() == "assigning"
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    partial = leftovers(folder)
    stale_scratch = os.listdir(scratch)
    assert len(partial) == 1 and partial[0].startswith(".labels.tif.") and not out.exists()
    assert len(stale_scratch) == 1 and stale_scratch[0].startswith("segmenter")
    assert re.search(rf"\.ms-{run.pid}-", partial[0]) and re.search(rf"-ms-{run.pid}-", stale_scratch[0])

    # the same files of live processes: this one, and another still running
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        live = []
        for pid in (os.getpid(), sleeper.pid):
            live.append(re.sub(r"\.ms-\d+-", f".ms-{pid}-", partial[0]))
            (folder / live[-1]).write_bytes(b"a live run's partial output")
            live.append(re.sub(r"-ms-\d+-", f"-ms-{pid}-", stale_scratch[0]))
            (scratch / live[-1]).mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(scratch))
        logged = []
        segment_kmeans(image, str(out), segments=4, progress=Progress(log=logged.append))
        assert sorted(os.listdir(folder)) == sorted(["labels.qml", "labels.tif", live[0], live[2]])
        assert sorted(os.listdir(scratch)) == sorted([live[1], live[3]])
        assert any("Removed 2 leftovers of runs that were stopped" in message for message in logged), logged
    finally:
        sleeper.kill()
        sleeper.wait()


# ------------------------------------------------------------------ GDAL 3.6 to 3.11 say it in other words

FULL, LIMITED, ROOMY = "full", "limited", "roomy"


@pytest.mark.parametrize(("message", "state", "reason"), [
    # GDAL 3.6 (Debian 12): the system's reason reaches the message
    ("_TIFFVSIWriteProc:No space left on device / TIFFAppendToStrip:Write error at scanline 0", FULL,
     "the disk is full"),
    ("Free disk space available is 0 bytes, whereas 9216 are at least necessary.", FULL, "the disk is full"),
    ("_TIFFVSIWriteProc:File too large", LIMITED, "file size limit"),
    ("Disk quota exceeded", ROOMY, "the disk quota is exceeded"),
    # GDAL 3.10 (Debian 13): only libtiff's call is named; the state of the machine tells why
    ("TIFFWriteDirectoryTagData:IO error writing tag data", FULL, "the disk is full"),
    ("TIFFAppendToStrip:Write error at scanline 0", LIMITED, "file size limit"),
    ("An error occurred while writing a dirty block from GDALRasterBand::IRasterIO", FULL, "the disk is full"),
    # neither the words nor the machine say why: GDAL's words are shown
    ("TIFFAppendToStrip:Write error at scanline 0", ROOMY,
     "the data could not be written (TIFFAppendToStrip:Write error at scanline 0)"),
    ("Permission denied", FULL, "the data could not be written (Permission denied)"),
])
def test_write_failures_are_told_apart_in_the_words_of_every_gdal(tmp_path, monkeypatch, message, state, reason):
    from map_segmenter.engine.runtime import outputs

    assert outputs.is_write_failure(message) or "denied" in message or "quota" in message
    free = {FULL: 0, LIMITED: 10**12, ROOMY: 10**12}[state]
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: type("Usage", (), {"free": free})())
    monkeypatch.setattr(outputs, "file_size_limit", lambda: 20_000 if state == LIMITED else None)
    error = outputs.write_failure([("OUTPUT", str(tmp_path / "labels.tif"))], message, 221_000, compressed=True)
    assert str(error).startswith(f"Could not write OUTPUT '{tmp_path / 'labels.tif'}': ")
    assert reason in str(error), str(error)


def test_a_file_size_limit_is_read_from_the_process(tmp_path):
    done = limited("from map_segmenter.engine.runtime.outputs import file_size_limit\n"
                   "print('limit', file_size_limit())",
                   12_345, tmp_path)
    assert "limit 12345" in done.stdout, done.stdout + done.stderr
