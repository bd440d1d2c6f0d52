"""Backend implementations, installed as ``l2l_multi.backends`` (never a top-level package)."""

if __name__ != "l2l_multi.backends":
    raise ImportError(
        "the 'backends' folder is installed as 'l2l_multi.backends'; import l2l_multi and use "
        "l2l_multi.set_backend(...) instead of importing 'backends' directly"
    )
