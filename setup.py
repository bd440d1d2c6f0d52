"""Builds the optional Cython kernels; everything else is declared in pyproject.toml.

A machine without a C compiler (or without Cython) still installs: the data layer then uses
its pure-Python twin (``l2l_multi/data/_kernels_py.py``), which gives identical results.
"""

import warnings

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as error:  # compiler missing: keep the pure-Python twin
            warnings.warn(f"l2l_multi: compiled kernels not built ({error}); using pure Python", stacklevel=2)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as error:
            warnings.warn(f"l2l_multi: could not build {ext.name} ({error}); using pure Python", stacklevel=2)


def extensions():
    try:
        from Cython.Build import cythonize
    except ImportError:
        warnings.warn("l2l_multi: Cython is not installed; using the pure-Python kernels", stacklevel=2)
        return []
    from setuptools import Extension

    return cythonize(
        [Extension("l2l_multi.data._kernels", ["l2l_multi/data/_kernels.pyx"])],
        compiler_directives={"language_level": "3"},
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
