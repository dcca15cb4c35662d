"""Lint the shim as the TypeScript is linted (npm run lint): stdlib only, Python 3.7 syntax.

For every source under python-shim/src/ and the delivered python-shim/asya_shim.py:
  - it parses as Python 3.7 (no syntax of later versions);
  - it imports only the standard library (where this Python can tell: 3.10+);
  - no name is read that is bound nowhere in the file, and no top-level import goes unused;
  - lines are at most 120 characters;
and the delivered file is exactly its sources joined (scripts/build-shim.mjs writes it).
Exit 1 with one line per problem.
"""
import ast
import builtins
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = os.path.join(ROOT, "python-shim", "src")
DELIVERED = os.path.join(ROOT, "python-shim", "asya_shim.py")
ORDER_FILE = os.path.join(SOURCES, "ORDER")
MAX_LINE = 120
PORTER_BEGIN, PORTER_END = "# >>> porter\n", "# <<< porter\n"
PORTER_ENTRY = "\nsys.exit(porter_main())\n"  # what src/worker/shim.ts appends


def bound_names(tree):
    names = set(dir(builtins)) | {"__file__", "__name__", "__doc__"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
    return names


def check(path, text, whole):
    problems = []
    rel = os.path.relpath(path, ROOT)
    try:
        tree = ast.parse(text, rel, feature_version=(3, 7))
    except SyntaxError as exc:
        return ["%s:%s: not Python 3.7 syntax: %s" % (rel, exc.lineno, exc.msg)]
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_LINE:
            problems.append("%s:%d: line of %d characters (at most %d)" % (rel, number, len(line), MAX_LINE))
    stdlib = getattr(sys, "stdlib_module_names", None)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and stdlib is not None:
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                top = module.split(".")[0]
                if top and top not in stdlib and top not in ("orjson", "torch"):  # both optional, looked up
                    problems.append("%s:%d: imports %r, not in the standard library" % (rel, node.lineno, module))
    if not whole:
        return problems
    names = bound_names(tree)
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            used.add(node.id)
            if node.id not in names:
                problems.append("%s:%d: %r is read but bound nowhere" % (rel, node.lineno, node.id))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                name = (alias.asname or alias.name).split(".")[0]
                if name not in used:
                    problems.append("%s:%d: %r is imported and never used" % (rel, node.lineno, name))
    return problems


def main():
    if sys.argv[1:2] == ["--file"]:  # one file, checked whole (the tests give it bad ones)
        problems = []
        for path in sys.argv[2:]:
            with open(path) as f:
                problems += check(os.path.abspath(path), f.read(), whole=True)
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    with open(ORDER_FILE) as f:
        order = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    parts = []
    problems = []
    for name in order:
        path = os.path.join(SOURCES, name)
        with open(path) as f:
            text = f.read()
        parts.append(text)
        problems += check(path, text, whole=False)
    with open(DELIVERED) as f:
        delivered = f.read()
    problems += check(DELIVERED, delivered, whole=True)
    # The porter section runs on its own (src/worker/shim.ts, porterLaunch): it must need nothing else.
    begin, end = delivered.find(PORTER_BEGIN), delivered.find(PORTER_END)
    if begin < 0 or end < begin:
        problems.append("python-shim/asya_shim.py: no porter section (%r ... %r)" % (PORTER_BEGIN, PORTER_END))
    else:
        porter = delivered[begin:end] + PORTER_ENTRY
        problems += [p.replace("asya_shim.py", "asya_shim.py (porter section, alone)", 1)
                     for p in check(DELIVERED, porter, whole=True)]
    if delivered != joined(parts):
        problems.append("python-shim/asya_shim.py is not its sources joined: run npm run build:shim")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def joined(parts):
    """What scripts/build-shim.mjs writes: the parts, one blank line apart, then the entry point."""
    body = "\n\n".join(part.rstrip("\n") + "\n" for part in parts)
    return body + "\n\nif __name__ == \"__main__\":\n    sys.exit(main())\n"


if __name__ == "__main__":
    sys.exit(main())
