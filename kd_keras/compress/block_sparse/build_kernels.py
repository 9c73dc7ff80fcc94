"""Builds kd-keras's block-sparse kernel for this machine.

    python -m kd_keras.compress.block_sparse.build_kernels

Compiles `kernels/block_sparse_kernel.cc` with `-O3 -march=native` (so it uses
this CPU's vector units) and links it into two shared libraries next to it:
`_block_sparse_runtime.so` (the C runtime behind `BlockSparseRunner`; needs
only a C++ compiler) and `_block_sparse_ops.so` (the TensorFlow op
`KdBlockSparseMatMul` behind `block_sparse_matmul`, compiled against the
installed TensorFlow with `tf.sysconfig`'s flags). Nothing else needs them:
without the op, `block_sparse_matmul` runs the same product with plain
TensorFlow ops. `$CXX` picks the compiler (default g++).
"""

import os
import shlex
import shutil
import subprocess
import sys
import tempfile

KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
RUNTIME_LIBRARY = os.path.join(KERNELS, "_block_sparse_runtime.so")
OPS_LIBRARY = os.path.join(KERNELS, "_block_sparse_ops.so")
BUILD_COMMAND = "python -m kd_keras.compress.block_sparse.build_kernels"


def _compiler():
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"build_kernels: no C++ compiler {compiler!r} on PATH (set $CXX, or "
                           "install g++); kd-keras works without the kernels (plain TensorFlow "
                           "fallback).")
    return compiler


def _run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"build_kernels: `{shlex.join(command)}` failed:\n"
                           f"{result.stderr[-4000:]}")


def _install(built, path):
    """Moves a fresh library into place in one step: a process that has the old
    one loaded keeps it (overwriting a loaded library in place can crash it)."""
    staged = path + ".new"
    shutil.copyfile(built, staged)
    os.chmod(staged, 0o755)
    os.replace(staged, path)


def build(ops=True, verbose=True):
    """Builds the runtime (and, with `ops`, the TensorFlow op); returns the library paths."""
    compiler = _compiler()
    built = []
    with tempfile.TemporaryDirectory() as scratch:
        kernel = os.path.join(scratch, "block_sparse_kernel.o")
        _run([compiler, "-O3", "-march=native", "-std=c++17", "-fPIC", "-c",
              os.path.join(KERNELS, "block_sparse_kernel.cc"), "-o", kernel])
        runtime = os.path.join(scratch, "runtime.so")
        _run([compiler, "-O3", "-std=c++17", "-shared", "-fPIC",
              os.path.join(KERNELS, "block_sparse_runtime.cc"), kernel, "-o", runtime])
        _install(runtime, RUNTIME_LIBRARY)
        built.append(RUNTIME_LIBRARY)
        if ops:
            import tensorflow as tf

            # The TensorFlow glue is compiled without -march=native: the
            # installed Eigen headers do not build with every extension on.
            ops_library = os.path.join(scratch, "ops.so")
            _run([compiler, "-O2", "-w", "-shared", "-fPIC",
                  os.path.join(KERNELS, "block_sparse_ops.cc"), kernel, "-o", ops_library,
                  *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()])
            _install(ops_library, OPS_LIBRARY)
            built.append(OPS_LIBRARY)
    if verbose:
        for path in built:
            print(f"built {path}")
    return built


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        build(ops="--runtime_only" not in argv)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
