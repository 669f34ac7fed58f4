"""The Python side of the sandbox: runs in ``python -I -S``, so stdlib only (pyseccomp is
loaded from its file). ``python_runner``: the warm process; ``python_child``: one run in a
fresh fork; ``python_lock``: the kernel-enforced limits a child puts on itself."""
