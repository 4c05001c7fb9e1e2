"""Build of fian_fast and its compiled extension fian_fast._C.

Knobs (environment variables, printed when the build starts):

* ``FIAN_FAST_SKIP_EXT=1``   build no extension (pure Python; ops fall back to the reference)
* ``FIAN_FAST_SKIP_CUDA=1``  build the CPU kernels only
* ``FIAN_FAST_CUDA_ARCHS``   CUDA architectures, e.g. ``"8.0;9.0"``; default: the visible GPUs'
  architectures, or ``"8.0;9.0"`` when no GPU is visible
* ``FIAN_FAST_DEBUG=1``      compile with -O0 -g
* ``MAX_JOBS``               parallel compile jobs (ninja)

The CUDA kernels are built whenever torch is a CUDA build and nvcc is found, whether or not a
GPU is visible. With a torch of your own, build against it with
``pip install --no-build-isolation -e .``.
"""
import glob
import os
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0"


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def _cuda_archs(torch) -> str:
    archs = os.environ.get("FIAN_FAST_CUDA_ARCHS", "").strip()
    if archs:
        return archs
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return ";".join(f"{major}.{minor}" for major, minor in caps)
    return DEFAULT_ARCHS


def _resolve_cuda_home():
    """Point CUDA_HOME at a toolkit with headers before torch.utils.cpp_extension reads it.

    An ``nvcc`` on the PATH may be a wrapper script outside its toolkit (``/usr/local/bin/nvcc``),
    from which torch would guess ``/usr/local`` and miss ``cuda_runtime.h`` and ``libcudart``.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for home in candidates:
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")) and os.path.exists(
                os.path.join(home, "bin", "nvcc")):
            os.environ["CUDA_HOME"] = home
            return


def _nvcc_path():
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")):
        return os.path.join(CUDA_HOME, "bin", "nvcc")
    return shutil.which("nvcc")


def _extensions():
    if _flag("FIAN_FAST_SKIP_EXT"):
        print("fian_fast build: FIAN_FAST_SKIP_EXT=1, building no extension", file=sys.stderr)
        return [], {}
    _resolve_cuda_home()
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    debug = _flag("FIAN_FAST_DEBUG")
    nvcc = _nvcc_path()
    with_cuda = bool(torch.version.cuda) and nvcc is not None and not _flag("FIAN_FAST_SKIP_CUDA")

    sources = [os.path.join("csrc", "fian_fast.cpp")]
    sources += sorted(glob.glob(os.path.join("csrc", "ops", "cpu", "*.cpp")))
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    cxx += ["-fopenmp"]
    extra = {"cxx": cxx}
    define_macros = []
    archs = None
    if with_cuda:
        archs = _cuda_archs(torch)
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
        sources += sorted(glob.glob(os.path.join("csrc", "ops", "cuda", "*.cu")))
        extra["nvcc"] = (["-O0", "-G"] if debug else ["-O3"]) + ["--expt-relaxed-constexpr"]
        define_macros.append(("FIAN_FAST_WITH_CUDA", None))
        ext_cls = CUDAExtension
    else:
        ext_cls = CppExtension

    print(
        "fian_fast build: torch {} (CUDA {}), CUDA_HOME {}, nvcc {}, CUDA kernels {}, archs {}, debug {}, MAX_JOBS {}".format(
            torch.__version__, torch.version.cuda, os.environ.get("CUDA_HOME", "-"), nvcc or "not found",
            "on" if with_cuda else "off", archs or "-", debug, os.environ.get("MAX_JOBS", "default"),
        ),
        file=sys.stderr,
    )
    ext = ext_cls(
        name="fian_fast._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros + [("FIAN_FAST_TORCH_VERSION", f'"{torch.__version__}"')],
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
        py_limited_api=False,
    )
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = _extensions()

setup(
    packages=[
        "fian_fast",
        "fian_fast.model",
        "fian_fast.ops",
        "fian_fast.reference",
        "fian_fast.data",
        "fian_fast.kernels",
    ],
    package_dir={"fian_fast.kernels": "kernels"},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
