"""Line counts of a package's largest files and functions (the figures the redesign's closing note quotes).

    python scripts/code_size.py [folder ...] [--top N] [--root DIR]   (default: engine algorithms, top 12)

Another revision: git archive REV engine algorithms | tar -x -C DIR, then --root DIR.
"""

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(folders, top, root=ROOT):
    files, functions = [], []
    for folder in folders:
        for path in sorted((root / folder).glob("*.py")):
            text = path.read_text(encoding="utf-8")
            name = path.relative_to(root).as_posix()
            files.append((len(text.splitlines()), name))
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    functions.append((node.end_lineno - node.lineno + 1, f"{name}:{node.name}",
                                      len(node.args.args) + len(node.args.kwonlyargs)))
    print(f"{sum(n for n, _ in files)} lines in {len(files)} files of {', '.join(folders)}")
    print(f"largest files (top {top}):")
    for lines, name in sorted(files, reverse=True)[:top]:
        print(f"  {lines:5d}  {name}")
    print(f"longest functions (top {top}; lines, arguments):")
    for lines, name, arguments in sorted(functions, reverse=True)[:top]:
        print(f"  {lines:5d}  {arguments:3d} args  {name}")
    print("functions with more than 8 arguments:")
    for lines, name, arguments in sorted(functions, key=lambda f: -f[2]):
        if arguments > 8:
            print(f"  {arguments:3d} args  {lines:5d} lines  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=["engine", "algorithms"])
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree to measure (default: this checkout)")
    options = parser.parse_args()
    measure(options.folders, options.top, options.root.resolve())
