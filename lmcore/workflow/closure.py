"""The lmcore code a job runs, found by reading the imports, and a digest of it.

Snakemake's code trigger sees only a rule's own script. Each rule therefore takes as a param
the digest of its script's import closure: every lmcore module the script imports, and the
modules those import, imports inside functions included (read with `ast`, nothing is run). The
digest is of the modules' paths inside the package and their content, never of where the
checkout lies: an edit reruns exactly the jobs whose code changed, and a project moved or
checked out elsewhere reruns nothing. A checkpoint records the digest of lmcore.train.loop's closure,
so that one written by other training code is not resumed.

lmcore/workflow/joblog.py and lmcore/train/loggers.py are left out of every digest: they write log
lines and live curves (TensorBoard, W&B), which no output holds.
"""

import ast
import functools
import hashlib
import os

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_IN_OUTPUTS = ("workflow/joblog.py", "train/loggers.py")
# Files besides modules that a module reads.
READS = {"report/page.py": ("report/templates/report.html.j2", "report/templates/report.css")}


def module_path(name, package_dir):
    """lmcore.data.text -> data/text.py (relative to the package), lmcore.data -> data/__init__.py; None for a name
    that is not a module (a function imported from a module)."""
    parts = name.split(".")[1:]
    if not parts:
        return "__init__.py"
    for rel in (os.path.join(*parts, "__init__.py"), os.path.join(*parts) + ".py"):
        if os.path.isfile(os.path.join(package_dir, rel)):
            return rel
    return None


def imported(path):
    """The lmcore names a Python file imports: modules, and names from modules (which may be modules too)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "lmcore")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] == "lmcore"
        ):
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def closure(script, package_dir=PACKAGE_DIR):
    """Paths inside the package of every lmcore module (and file such a module reads) that `script` runs, sorted."""
    inside = os.path.relpath(os.path.abspath(script), os.path.abspath(package_dir))
    found, todo = (
        ({inside} if not inside.startswith("..") else set()),
        [script],
    )  # a module of the package runs itself too
    while todo:
        for name in imported(todo.pop()):
            parts = name.split(".")
            for depth in range(
                1, len(parts) + 1
            ):  # importing lmcore.data.text runs lmcore/__init__.py and data/__init__.py
                rel = module_path(".".join(parts[:depth]), package_dir)
                if rel and rel not in found:
                    found.add(rel)
                    todo.append(os.path.join(package_dir, rel))
    found |= {data for rel in found for data in READS.get(rel, ())}
    return sorted(found - set(NOT_IN_OUTPUTS))


@functools.lru_cache(maxsize=None)
def digest(script, package_dir=PACKAGE_DIR):
    """sha256 of the closure of `script`: each module's path inside the package and its bytes."""
    h = hashlib.sha256()
    for rel in closure(script, package_dir):
        with open(os.path.join(package_dir, rel), "rb") as f:
            h.update(rel.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    return h.hexdigest()
