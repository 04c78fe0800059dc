"""Check a plugin zip the way plugins.qgis.org does before a release: prints every finding, exits 1 on any error.

    python scripts/check_package.py                                  # builds dist/map_segmenter-<version>.zip first
    python scripts/check_package.py dist/map_segmenter-0.2.0.zip     # or checks a zip you have

What the plugin repository does with an upload (qgis/QGIS-Plugins-Website: plugins/validator.py, then the
security scan of plugins/security_scanner.py; https://plugins.qgis.org/docs/security-scanning):

* refuses it outright ("structure" and "metadata" here): over 25,000,000 bytes; a name with ``..``, a leading
  ``/`` or ``.pyc`` in it; a ``__pycache__``, ``.git`` or ``__MACOSX`` folder; no single top folder holding
  ``__init__.py``, ``metadata.txt`` and ``LICENSE``; metadata without name, qgisMinimumVersion, description,
  about, version, author, email, repository or tracker; repository/tracker/homepage that are not URLs (it also
  fetches them: they must exist, which this offline check cannot see);
* then scans it and blocks the version on any finding of Bandit (``bandit -r <dir> -t <the tests it enables>``,
  ``# nosec`` honoured) or detect-secrets (``detect-secrets scan --all-files``) ("bandit", "secrets" here);
* reports hidden files, binaries and scripts (.exe .dll .so .dylib .bat .sh .ps1 .cmd), executable files and
  Flake8 results without blocking.

Stricter where that costs nothing: Bandit runs all its tests; each ``# nosec`` must name its test, be justified
by a comment naming that test and still suppress a finding; a ``.bandit`` that skips tests is an error, since
the repository's Bandit then stops ("Non-exclusive include/exclude test sets") instead of scanning. detect-secrets
also scans metadata.txt. Compiled, hidden and executable files are errors; homepage is required and every URL
must be https; the version must equal the changelog's first entry and pyproject.toml's version. "qgis-lint" runs
flake8-qgis's QGIS rules (QGS1xx: QGIS 3 API use, QGS4xx: Qt 6 readiness). Notes, never errors: flake8-qgis's
experimental QGS2xx return-value rules, the Flake8 codes the repository reports, and what this check cannot
decide (a no-reply email address).

Needs bandit, detect-secrets, flake8 and flake8-qgis in this Python (scripts/setup.sh installs them).
"""

import argparse
import configparser
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple
from urllib.parse import urlparse

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "map_segmenter"
CHECKS = ("structure", "metadata", "bandit", "secrets", "qgis-lint")
MAX_BYTES = 25_000_000  # the repository's PLUGIN_MAX_UPLOAD_SIZE ("25 MB")
TOP_FOLDER = re.compile(r"^[a-z_][a-z0-9_]*$")  # what the repository requires of a new plugin's folder (PEP 8)
REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                     "repository", "tracker", "homepage")  # the repository's required fields, and homepage
URL_FIELDS = ("homepage", "repository", "tracker")
PLACEHOLDER_HOSTS = {"bugs", "repo", "homepage", "example.com", "example.org", "example.net", "localhost"}
REQUIRED_FILES = ("__init__.py", "metadata.txt", "LICENSE")
FORBIDDEN_FOLDERS = {"__pycache__", ".git", "__MACOSX"}
COMPILED = {".pyc", ".pyo", ".pyd", ".so", ".dll", ".exe", ".dylib", ".o", ".a", ".lib", ".class", ".jar"}
SCRIPTS = {".bat", ".sh", ".ps1", ".cmd"}  # the repository's other "suspicious" extensions
# flake8-qgis rules left out, per file, with the reason:
# QGS105 (iface passed as an argument): QGIS calls classFactory(iface) and the plugin class keeps it; flake8-qgis
# itself says the rule "can be excluded safely ... passing iface as an argument is the documented way".
QGS_IGNORES = {"processing_provider/plugin.py": "QGS105"}
# Notes only: flake8-qgis's experimental QGS2xx, and the Flake8 codes plugins.qgis.org enables (its page shows
# them, they never block; --max-line-length=120 as it runs them).
ADVISORY_FLAKE8 = ("QGS2,E101,E711,E712,E713,E714,E721,E722,E731,E741,E742,E743,E901,E902,E999,W605,F402,F403,F404,"
                   "F405,F811,F821,F822,F823,F831,F901,C901")
TIMEOUT = 600


class Finding(NamedTuple):
    check: str
    message: str
    blocking: bool = True

    def __str__(self):
        return f"{'ERROR' if self.blocking else 'note'} [{self.check}] {self.message}"


def check_package(zip_path, pyproject=None, only=None):
    """Every finding about the plugin zip at ``zip_path``: a list of Finding (``blocking`` False: a note).
    ``pyproject``: a pyproject.toml whose version must equal the plugin's; ``only``: the CHECKS to run."""
    only = set(CHECKS if only is None else only)
    unknown = only - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; choose among {CHECKS}")
    zip_path = Path(zip_path)
    findings = []
    try:
        archive = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as error:
        return [Finding("structure", f"{zip_path.name} is not a zip file ({error})")]
    with archive, tempfile.TemporaryDirectory(prefix="check-package-") as scratch:
        names = archive.namelist()
        if "structure" in only:
            findings += _structure(zip_path, archive)
        if "metadata" in only:
            findings += _metadata(archive, pyproject)
        tools = only & {"bandit", "secrets", "qgis-lint"}
        if tools and _safe_names(names):
            archive.extractall(scratch)
            root = Path(scratch)
            if "bandit" in only:
                findings += _bandit(root)
            if "secrets" in only:
                findings += _secrets(root)
            if "qgis-lint" in only:
                findings += _qgis_lint(root)
        elif tools:
            findings.append(Finding("structure", "unsafe names in the zip: the code was not extracted and scanned"))
    return findings


def _safe_names(names):
    return all(".." not in PurePosixPath(name).parts and not name.startswith("/") and "\\" not in name
               for name in names)


def _structure(zip_path, archive):
    findings = []

    def error(message):
        findings.append(Finding("structure", message))

    size = zip_path.stat().st_size
    if size > MAX_BYTES:
        error(f"{zip_path.name} is {size:,} bytes: the plugin repository refuses more than {MAX_BYTES:,}")
    bad = archive.testzip()
    if bad:
        error(f"{bad} is damaged in the zip (CRC error)")
    infos = archive.infolist()
    if not infos:
        error("the zip is empty")
        return findings
    tops = sorted({info.filename.split("/")[0] for info in infos})
    if tops != [PACKAGE] or "/" not in infos[0].filename:
        error(f"the zip must hold one top folder {PACKAGE}/ and nothing beside it; it holds {', '.join(tops)}")
    elif not TOP_FOLDER.match(PACKAGE):
        error(f"the top folder {PACKAGE}/ is not a PEP 8 package name, which the repository requires")
    for required in REQUIRED_FILES:
        if f"{PACKAGE}/{required}" not in archive.namelist():
            error(f"{PACKAGE}/{required} is missing: the repository refuses a plugin without it")
    for info in infos:
        name = info.filename
        path = PurePosixPath(name)
        parts = path.parts
        inside = parts[1:]
        if ".." in parts or name.startswith("/") or "\\" in name:
            error(f"{name}: path information (.., a leading / or a backslash) is refused by the repository")
            continue
        if ".pyc" in name:
            error(f"{name}: the repository refuses any name containing .pyc (compiled Python)")
        folders = FORBIDDEN_FOLDERS.intersection(parts[:-1] if not info.is_dir() else parts)
        if folders:
            error(f"{name}: a {sorted(folders)[0]} folder, which the repository refuses")
        suffix = path.suffix.lower()
        if suffix in COMPILED and ".pyc" not in name:
            error(f"{name}: a compiled file ({suffix}); the repository forbids shipping compiled code")
        if suffix in SCRIPTS:
            error(f"{name}: a {suffix} script, which the repository's scan flags as suspicious")
        hidden = [part for part in inside if part.startswith(".") and part not in FORBIDDEN_FOLDERS]
        if hidden:
            error(f"{name}: a hidden file or folder ({hidden[0]}), which the repository's scan reports")
        mode = info.external_attr >> 16
        if not info.is_dir() and mode & 0o111:
            error(f"{name}: stored executable (mode {mode & 0o777:o}); plugin files are ordinary files")
    return findings


def _metadata(archive, pyproject):
    findings = []

    def error(message):
        findings.append(Finding("metadata", message))

    try:
        text = archive.read(f"{PACKAGE}/metadata.txt").decode("utf-8")
    except KeyError:
        return [Finding("metadata", f"{PACKAGE}/metadata.txt is missing")]
    except UnicodeDecodeError as problem:
        return [Finding("metadata", f"metadata.txt is not UTF-8 ({problem})")]
    parser = configparser.ConfigParser()  # as the repository reads it: '%' must be written '%%'
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    try:
        parser.read_string(text)
        general = dict(parser.items("general"))
    except (configparser.Error, ValueError) as problem:
        return [Finding("metadata", f"metadata.txt cannot be read as the repository reads it: {problem}")]
    for field in REQUIRED_METADATA:
        if not general.get(field, "").strip():
            error(f"metadata.txt has no {field}" + (" (required by the repository)" if field != "homepage" else ""))
    for field in URL_FIELDS:
        value = general.get(field, "").strip()
        if value:
            url = urlparse(value)
            if url.scheme != "https" or not url.netloc:
                error(f"metadata.txt {field}={value} is not an https:// URL")
            elif url.hostname in PLACEHOLDER_HOSTS or (url.hostname or "").endswith((".example", ".invalid")):
                error(f"metadata.txt {field}={value} is a placeholder, not the project's address")
    email = general.get("email", "").strip()
    if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        error(f"metadata.txt email={email} is not an email address")
    elif "noreply" in email.replace("-", "").lower():
        findings.append(Finding("metadata", f"email={email} is a no-reply address: plugins.qgis.org sends the "
                                "plugin's confirmation email there and approval waits for it", blocking=False))
    if "/" in general.get("author", ""):
        error("metadata.txt author contains a slash, which the repository refuses")
    for field in ("qgisMinimumVersion", "qgisMaximumVersion"):
        value = general.get(field, "").strip()
        if value and not re.fullmatch(r"\d+\.\d+(\.\d+)?", value):
            error(f"metadata.txt {field}={value} is not a QGIS version like 3.22")
    icon = general.get("icon", "").strip().removeprefix("./")
    if icon and f"{PACKAGE}/{icon}" not in archive.namelist():
        error(f"metadata.txt icon={icon} is not in the zip")
    version = general.get("version", "").strip()
    changelog = general.get("changelog", "").strip()
    if not changelog:
        error("metadata.txt has no changelog")
    elif version:
        first = re.match(r"v?(\d+(?:\.\d+)*[0-9A-Za-z.+-]*)", changelog.split("\n", 1)[0].strip())
        if first is None:
            error("the changelog must begin with its newest version (e.g. '0.2.0', then that version's items)")
        elif first.group(1) != version:
            error(f"metadata.txt version={version} but the changelog's first entry is {first.group(1)}")
    if pyproject is not None and version:
        project_version = tomllib.loads(Path(pyproject).read_text(encoding="utf-8")).get("project", {}).get("version")
        if project_version != version:
            error(f"metadata.txt version={version} but {Path(pyproject).name} has version {project_version}")
    return findings


def _run(arguments, cwd=None):
    return subprocess.run(arguments, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def _json_output(check, tool, completed):
    """The tool's JSON report, or a Finding saying why there is none."""
    try:
        return json.loads(completed.stdout), None
    except json.JSONDecodeError:
        if "No module named" in completed.stderr:
            return None, Finding(check, f"{tool} is not installed in {sys.executable}: run scripts/setup.sh "
                                        f"(pip install bandit detect-secrets flake8 flake8-qgis)")
        tail = (completed.stderr.strip() or completed.stdout.strip())[-600:]
        return None, Finding(check, f"{tool} failed (exit {completed.returncode}): {tail}")


NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)$")
JUSTIFICATION_LINES = 25  # a "# nosec BXXX" is justified by a comment naming BXXX within this many lines above


def _bandit(root):
    """Bandit over the extracted zip as the repository runs it (``bandit -r``, ``# nosec`` honoured); then with
    ``--ignore-nosec``, to see that each ``# nosec`` names its test, is justified and still suppresses something."""
    command = [sys.executable, "-m", "bandit", "-r", str(root), "-f", "json", "-q"]
    report, failure = _json_output("bandit", "bandit", _run(command))
    if failure:
        return _bandit_config(root) + [failure]
    findings = _bandit_config(root)
    for result in report.get("results", []):
        findings.append(Finding("bandit", f"{_relative(result['filename'], root)}:{result['line_number']} "
                                          f"{result['test_id']} ({result['issue_severity'].lower()} severity): "
                                          f"{result['issue_text']}"))
    for problem in report.get("errors", []):
        findings.append(Finding("bandit", f"{_relative(problem['filename'], root)} was not scanned: "
                                          f"{problem['reason']}"))
    exceptions = _nosec_comments(root)
    if not exceptions:
        return findings
    unsuppressed, failure = _json_output("bandit", "bandit", _run(command + ["--ignore-nosec"]))
    if failure:
        return findings + [failure]
    suppressed = {(_relative(result["filename"], root), line, result["test_id"])
                  for result in unsuppressed.get("results", [])
                  for line in result.get("line_range") or [result["line_number"]]}
    for path, line, tests, justified in exceptions:
        where = f"{path}:{line}"
        if not tests:
            findings.append(Finding("bandit", f"{where} has a bare '# nosec': name the test it excepts "
                                              f"(# nosec B608) and say why in a comment above"))
            continue
        for test in tests:
            if test not in justified:
                findings.append(Finding("bandit", f"{where} '# nosec {test}' has no justification: say in a "
                                                  f"comment above (naming {test}) why it does not apply"))
            if (path, line, test) not in suppressed:
                findings.append(Finding("bandit", f"{where} '# nosec {test}' suppresses nothing: remove it"))
    return findings


def _relative(filename, root):
    return Path(filename).resolve().relative_to(Path(root).resolve()).as_posix()


def _nosec_comments(root):
    """(path, line, tests named, tests justified) of every '# nosec' comment in the plugin's Python files."""
    exceptions = []
    for file in sorted(Path(root).rglob("*.py")):
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, start=1):
            match = NOSEC.search(line)
            if match is None:
                continue
            tests = re.findall(r"\bB\d{3}\b", match.group("rest"))
            after = re.sub(r"[\sB\d,:;.-]+", " ", match.group("rest")).strip()
            above = [text.split("#", 1)[1] for text in lines[max(0, number - 1 - JUSTIFICATION_LINES) : number - 1]
                     if "#" in text and not NOSEC.search(text)]
            justified = {test for test in tests if len(after.split()) >= 3 or any(test in text for text in above)}
            exceptions.append((_relative(file, root), number, tests, justified))
    return exceptions


def _bandit_config(root):
    """A bundled .bandit that skips tests breaks the repository's scan: it runs ``bandit -r <dir> -t <the tests it
    enables>``, and Bandit stops ("Non-exclusive include/exclude test sets") when a skipped test is also selected."""
    findings = []
    for config in sorted(Path(root).rglob(".bandit")):
        parser = configparser.ConfigParser()
        try:
            parser.read(config, encoding="utf-8")
            skips = parser.get("bandit", "skips", fallback="")
        except configparser.Error as problem:
            findings.append(Finding("bandit", f"{_relative(config, root)} cannot be read: {problem}"))
            continue
        if skips.strip():
            findings.append(Finding("bandit", f"{_relative(config, root)} skips {skips.strip()}: plugins.qgis.org "
                                              f"runs bandit -t with its own tests, and Bandit then stops with "
                                              f"'Non-exclusive include/exclude test sets' instead of scanning; "
                                              f"except a finding on its line (# nosec BXXX) with a justification"))
    return findings


def _secrets(root):
    """detect-secrets over every extracted file, as the repository runs it (it leaves metadata.txt out)."""
    completed = _run([sys.executable, "-m", "detect_secrets", "scan", "--all-files", "."], cwd=root)
    report, failure = _json_output("secrets", "detect-secrets", completed)
    if failure:
        return [failure]
    return [Finding("secrets", f"{name}:{secret['line_number']} {secret['type']}: remove it (a real secret "
                               f"must be revoked too)")
            for name, secrets in sorted(report.get("results", {}).items()) for secret in secrets]


def _flake8(root, *options):
    completed = _run([sys.executable, "-m", "flake8", "--isolated", *options, PACKAGE], cwd=root)
    if completed.returncode not in (0, 1) or completed.stderr.strip():
        return None, completed
    return [line for line in completed.stdout.splitlines() if line.strip()], completed


def _qgis_lint(root):
    version = _run([sys.executable, "-m", "flake8", "--version"])
    if "flake8-qgis" not in version.stdout and "flake8_qgis" not in version.stdout:
        return [Finding("qgis-lint", f"flake8 with flake8-qgis is not installed in {sys.executable}: run "
                                     f"scripts/setup.sh (pip install flake8 flake8-qgis)")]
    ignores = ",".join(f"{PACKAGE}/{path}:{codes}" for path, codes in QGS_IGNORES.items())
    lines, completed = _flake8(root, "--select=QGS", "--extend-ignore=QGS2", f"--per-file-ignores={ignores}")
    if lines is None:
        return [Finding("qgis-lint", f"flake8 failed (exit {completed.returncode}): {completed.stderr[-600:]}")]
    findings = [Finding("qgis-lint", line) for line in lines]
    notes, completed = _flake8(root, f"--select={ADVISORY_FLAKE8}", "--max-line-length=120")
    if notes is None:
        return findings + [Finding("qgis-lint", f"flake8 failed (exit {completed.returncode}): "
                                                f"{completed.stderr[-600:]}")]
    return findings + [Finding("qgis-lint", line, blocking=False) for line in notes]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", nargs="?", help="the plugin zip (default: build dist/map_segmenter-<version>.zip)")
    parser.add_argument("--pyproject", default=ROOT / "pyproject.toml",
                        help="a pyproject.toml whose version must equal the plugin's (default: this checkout's)")
    parser.add_argument("--only", action="append", choices=CHECKS, help="run only this check (repeatable)")
    arguments = parser.parse_args(argv)
    if arguments.zip is None:
        import build_zip  # scripts/ is this script's folder, so on sys.path

        zip_path = build_zip.build()
    else:
        zip_path = Path(arguments.zip)
    pyproject = Path(arguments.pyproject) if arguments.pyproject and Path(arguments.pyproject).is_file() else None
    findings = check_package(zip_path, pyproject=pyproject, only=arguments.only)
    for finding in findings:
        print(finding)
    errors = sum(finding.blocking for finding in findings)
    notes = len(findings) - errors
    print(f"{zip_path}: {zip_path.stat().st_size / 1e6:.2f} MB, {errors} error(s), {notes} note(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
