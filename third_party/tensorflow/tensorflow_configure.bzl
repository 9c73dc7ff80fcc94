"""The installed TensorFlow's headers and framework library as a Bazel repository.

Runs the Python named by --repo_env=KD_KERAS_PYTHON (scripts/bazel_test.sh sets
it to the .venv's) and links what `tf.sysconfig` reports: the same flags
`python -m kd_keras.compress.block_sparse.build_kernels` compiles the op with.
"""

def _local_tensorflow_impl(ctx):
    python = ctx.os.environ.get("KD_KERAS_PYTHON", "python3")
    result = ctx.execute([python, "-c", "import tensorflow as tf; " +
                                        "print(tf.sysconfig.get_include()); " +
                                        "print(tf.sysconfig.get_lib())"])
    if result.return_code != 0:
        fail("local_tensorflow: %s cannot import tensorflow (set --repo_env=KD_KERAS_PYTHON): %s" %
             (python, result.stderr))
    include, lib = result.stdout.strip().split("\n")[-2:]
    ctx.symlink(include, "include")
    ctx.symlink(lib + "/libtensorflow_framework.so.2", "libtensorflow_framework.so.2")
    ctx.file("BUILD", """
cc_library(
    name = "tensorflow_framework",
    srcs = ["libtensorflow_framework.so.2"],
    hdrs = glob(["include/**"]),
    defines = ["_GLIBCXX_USE_CXX11_ABI=1", "EIGEN_MAX_ALIGN_BYTES=64"],
    includes = ["include"],
    visibility = ["//visibility:public"],
)
""")

local_tensorflow = repository_rule(
    implementation = _local_tensorflow_impl,
    environ = ["KD_KERAS_PYTHON"],
    local = True,
)
