"""csrc/README.md against the tree: every file, function, macro and name it mentions exists, its op
table lists exactly the schema's ops, and every op has the files and names of "Adding an op"."""
import glob
import importlib
import inspect
import os
import re

import pytest
import torch
from torch.utils.cpp_extension import include_paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
README = open(os.path.join(CSRC, "README.md"), encoding="utf-8").read()
SCHEMA = open(os.path.join(CSRC, "fian_fast.cpp"), encoding="utf-8").read()
#: The ops of TORCH_LIBRARY(fian_fast, m), in schema order.
OPS = re.findall(r'm\.def\("(\w+)\(', SCHEMA)
#: The ops with kernels of their own (a backward op lives in its forward's files).
FORWARD_OPS = [op for op in OPS if not op.endswith("_backward")]
#: What the README's placeholders stand for: every op.
PLACEHOLDERS = ("<op>", "foo")


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _corpus() -> str:
    """The text of the tree's code and build files."""
    patterns = ["csrc/**/*.h", "csrc/**/*.cuh", "csrc/**/*.cpp", "csrc/**/*.cu", "fian_fast/**/*.py", "tests/*.py",
                "benchmarks/*.py", "setup.py", "CMakeLists.txt", "pyproject.toml"]
    files = sorted({f for p in patterns for f in glob.glob(os.path.join(ROOT, p), recursive=True)})
    files = [f for f in files if os.path.abspath(f) != os.path.abspath(__file__)]   # not this test's own names
    return "\n".join(read(f) for f in files)


CORPUS = _corpus()


def spans():
    """Every `code span` of the README (spans may cross a line break), fenced blocks left out."""
    text = re.sub(r"```.*?```", "", README, flags=re.S)
    return [s.strip() for s in re.findall(r"`([^`]+)`", text)]


def layout_paths():
    """The paths of the layout block (first column)."""
    block = README[README.index("## Layout"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    return [line.split()[0] for line in block.splitlines() if line and not line.startswith(" ")]


def instances(text):
    """``text`` with its placeholder replaced by each op (each differentiable op where it names
    ``foo_backward``), or ``[text]`` when it has none."""
    ops = [op for op in FORWARD_OPS if f"{op}_backward" in OPS] if "foo_backward" in text else FORWARD_OPS
    for ph in PLACEHOLDERS:
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(ph)}(?![A-Za-z0-9])")
        if pattern.search(text):
            return [pattern.sub(op, text) for op in ops]
    return [text]


PATH_RE = re.compile(r"^[\w<>*./-]*\w[\w<>*.-]*\.(?:h|cuh|cpp|cu|py|txt|md)$|^[\w.-]+/$|^[\w<>*.-]+/[\w<>*./-]*$")


def is_path(span):
    return " " not in span and "(" not in span and PATH_RE.match(span) is not None


def is_command(span):
    """A shell command (its FIAN_FAST_* knobs: test_rebuild_knobs_exist)."""
    return re.match(r"^(?:[A-Z_]+=\S+\s+)*(?:pip|cmake|ctest|python)\s", span) is not None


def path_exists(path):
    roots = [CSRC, ROOT] + include_paths()
    return any(glob.glob(os.path.join(r, path)) for r in roots)


# ---------------------------------------------------------------------------------- mentions
def test_every_path_it_mentions_exists():
    paths = [s for s in spans() if is_path(s)] + layout_paths()
    assert len(paths) > 20
    missing = [p for path in paths for p in instances(path) if not path_exists(p)]
    assert not missing, f"csrc/README.md mentions files that do not exist: {missing}"


def test_the_layout_names_every_file():
    named = {p for path in layout_paths() for p in instances(path)}
    files = {os.path.relpath(f, CSRC) for f in glob.glob(os.path.join(CSRC, "**", "*"), recursive=True)
             if os.path.isfile(f) and not f.endswith("README.md")}
    assert files and not files - named, f"csrc/README.md's layout omits {sorted(files - named)}"


def _names(span):
    """Identifier tokens of a non-path span, qualified ones (``a::b``) kept whole, dotted Python
    names (``a.b.c``) kept whole; string literals' insides are names too (``"foo"``)."""
    return re.findall(r"[A-Za-z_]\w*(?:(?:::|\.)[A-Za-z_*]\w*)*", span)


def _defined(name):
    if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", CORPUS):
        return True
    if "::" in name:  # a qualified C++ name: a file that opens its innermost namespace has it
        *spaces, last = name.split("::")
        headers = glob.glob(os.path.join(CSRC, "**", "*.*"), recursive=True)
        return any(re.search(rf"\bnamespace {re.escape(spaces[-1])} \{{", read(f)) and
                   re.search(rf"\b{re.escape(last)}\b", read(f)) for f in headers)
    if "." in name:   # a Python name: it resolves
        return _resolves(name)
    return False


def _resolves(dotted):
    parts = dotted.split(".")
    if parts[0] not in ("torch", "fian_fast"):
        return False
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 1):
        if part == "*":
            return True
        if not hasattr(obj, part):
            try:
                obj = importlib.import_module(".".join(parts[:i + 1]))
                continue
            except ImportError:
                return False
        obj = getattr(obj, part)
    return True


def test_every_function_macro_and_name_it_mentions_exists():
    names = set()
    for span in spans():
        if is_path(span) or is_command(span):
            continue
        for inst in instances(span):
            names.update(_names(inst))
    assert {"TORCH_CHECK", "register_fake", "check_iou_label_args", "C10_CUDA_KERNEL_LAUNCH_CHECK"} <= names
    missing = sorted(n for n in names if not _defined(n))
    assert not missing, f"csrc/README.md mentions names found nowhere in the tree: {missing}"


def test_the_op_table_lists_the_schema():
    table = re.findall(r"^\| `(\w+)`", README, flags=re.M)
    assert table == OPS


def test_stale_names_are_gone():
    """Names of code that no longer exists (a window_candidates op, register_fake_op)."""
    assert "register_fake_op" not in README
    for text in (README, read(os.path.join(CSRC, "ops", "window_plan.h")), read(os.path.join(CSRC, "ops", "checks.h")),
                 read(os.path.join(ROOT, "fian_fast", "reference", "window_candidates.py"))):
        assert "fian_fast.ops.window_candidates" not in text and "window_candidates kernel" not in text
        assert "window_candidates / window_score" not in text
    assert "window_candidates" not in OPS and not hasattr(torch.ops.fian_fast, "window_candidates")


# ------------------------------------------------------------------- the walk-through, per op
def _check_calls(text, op):
    """A kernel calls its op's checks: check_<op>_args, or a checks.h function that does."""
    return re.search(rf"\bcheck_{op}(?:_args)?\(", text) is not None


@pytest.mark.parametrize("op", FORWARD_OPS)
def test_every_op_follows_the_steps(op):
    checks = read(os.path.join(CSRC, "ops", "checks.h"))
    # 2. its argument checks live in checks.h, under its own name
    assert re.search(rf"inline void check_{op}_args\(", checks), f"checks.h: no check_{op}_args"
    # 3. the CPU kernel: checks from checks.h, no TORCH_CHECK of its own, registered for CPU
    cpu = read(os.path.join(CSRC, "ops", "cpu", f"{op}_kernel.cpp"))
    assert _check_calls(cpu, op) and '#include "ops/checks.h"' in cpu
    assert "TORCH_CHECK" not in cpu, f"ops/cpu/{op}_kernel.cpp checks arguments outside checks.h"
    assert re.search(rf'TORCH_LIBRARY_IMPL\(fian_fast, CPU, m\)[^}}]*m\.impl\("{op}"', cpu)
    # 4. the CUDA kernel: the same checks, a guard, the current stream, a check after every launch
    cu = read(os.path.join(CSRC, "ops", "cuda", f"{op}_kernel.cu"))
    assert _check_calls(cu, op) and '#include "ops/checks.h"' in cu
    assert "c10::cuda::CUDAGuard" in cu and "c10::cuda::getCurrentCUDAStream()" in cu
    assert cu.count("<<<") == cu.count("C10_CUDA_KERNEL_LAUNCH_CHECK()")
    for check in re.findall(r"TORCH_CHECK\((.*?)\);", cu, flags=re.S):   # launch limits only
        assert not re.search(r"scalar_type|device\(|is_cuda|dim\(\)|sizes\(\)", check), check
    assert re.search(rf'TORCH_LIBRARY_IMPL\(fian_fast, CUDA, m\)[^}}]*m\.impl\("{op}"', cu)
    # 6. the wrapper: load_ops, the op through torch.ops, its fake kernel; exported
    wrapper = read(os.path.join(ROOT, "fian_fast", "ops", f"{op}.py"))
    assert "load_ops()" in wrapper and f"torch.ops.fian_fast.{op}(" in wrapper
    assert f'@register_fake("fian_fast::{op}")' in wrapper
    assert "raise ValueError" in wrapper or "check_tensor(" in wrapper
    fast = getattr(importlib.import_module("fian_fast.ops"), op)
    # 7. the reference: same signature (the wrapper may add the keyword-only ``validate``); a test
    ref = getattr(importlib.import_module("fian_fast.reference"), op)
    fast_params = [p for p in inspect.signature(fast).parameters.values() if p.name != "validate"]
    assert [p.name for p in fast_params] == list(inspect.signature(ref).parameters)
    test = read(os.path.join(ROOT, "tests", f"test_{op}.py"))
    assert "opcheck" in test and "pytest.mark.cuda" in test


def test_differentiable_ops_register_their_backward_op():
    for op in OPS:
        if op.endswith("_backward"):
            forward = op[: -len("_backward")]
            wrapper = read(os.path.join(ROOT, "fian_fast", "ops", f"{forward}.py"))
            assert f'register_autograd("fian_fast::{forward}"' in wrapper
            assert f'@register_fake("fian_fast::{op}")' in wrapper


def test_rebuild_knobs_exist():
    setup = read(os.path.join(ROOT, "setup.py"))
    knobs = set(re.findall(r"FIAN_FAST_[A-Z_]+", README))
    assert knobs and all(k in setup for k in knobs)
