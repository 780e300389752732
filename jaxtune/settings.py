"""Process-wide settings: JAX's persistent compilation cache and program sharing.

``jt.configure(...)`` changes them for the process; environment variables set their defaults:

* ``JAXTUNE_CACHE_DIR``: where compiled programs are kept between processes (default
  ``~/.cache/jaxtune/xla``; ``none`` turns the cache off). A rerun, a resumed sweep or the same
  model in another study then loads its programs instead of compiling them again.
* ``JAXTUNE_SHARE_PROGRAMS``: ``0`` turns off program sharing (a masked bucket's trials run on a
  larger bucket's program when that costs less than compiling their own; see
  :func:`jaxtune.execute.sharing.hosts`).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from jaxtune.errors import InputError, InputTypeError

__all__ = ["configure", "settings", "enable_compile_cache", "CACHE_ENV", "SHARE_ENV"]

CACHE_ENV = "JAXTUNE_CACHE_DIR"
SHARE_ENV = "JAXTUNE_SHARE_PROGRAMS"
_OFF = ("", "0", "none", "off", "false", "no")
_DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "jaxtune", "xla")


@dataclasses.dataclass
class Settings:
    """What :func:`configure` sets: ``compile_cache`` (a directory, or None: off) and ``share_programs``."""

    compile_cache: str | None
    share_programs: bool


def _defaults() -> Settings:
    cache = os.environ.get(CACHE_ENV, _DEFAULT_CACHE)
    share = os.environ.get(SHARE_ENV, "1")
    return Settings(None if cache.strip().lower() in _OFF else cache, share.strip().lower() not in _OFF)


_SETTINGS = _defaults()
_CACHE_ON: str | None = None  # the directory this process gave JAX, once it has


def settings() -> Settings:
    """The process's settings (a copy)."""
    return dataclasses.replace(_SETTINGS)


def configure(*, compile_cache: str | bool | None = None, share_programs: bool | None = None) -> Settings:
    """Changes jaxtune's settings for this process; returns them.

    Args:
      compile_cache: a directory for JAX's persistent compilation cache, ``True`` for the default
        one, ``False`` to turn it off (from the next program compiled; None: unchanged).
      share_programs: whether a masked bucket's trials may run on a larger bucket's program when
        that costs less than compiling their own (None: unchanged).

    Examples:
      >>> import jaxtune as jt
      >>> jt.configure(share_programs=True).share_programs
      True
    """
    global _SETTINGS
    if compile_cache is not None:
        if compile_cache is True:
            compile_cache = _defaults().compile_cache or _DEFAULT_CACHE
        elif compile_cache is False:
            compile_cache = None
        elif not isinstance(compile_cache, (str, os.PathLike)):
            raise InputTypeError(f"compile_cache must be a directory, True or False, got {compile_cache!r}")
        _SETTINGS.compile_cache = None if compile_cache is None else os.fspath(compile_cache)
        if _SETTINGS.compile_cache is None and _CACHE_ON is not None:
            _disable_compile_cache()
    if share_programs is not None:
        if not isinstance(share_programs, bool):
            raise InputTypeError(f"share_programs must be True or False, got {share_programs!r}")
        _SETTINGS.share_programs = share_programs
    return settings()


def enable_compile_cache(say: bool = False) -> str | None:
    """Points JAX's persistent compilation cache at the configured directory (once; nothing if it
    is off or the user's own code set a JAX cache directory); the directory in use, or None. With
    ``say``, says so on stderr the first time."""
    global _CACHE_ON
    import jax

    path = _SETTINGS.compile_cache
    own = jax.config.jax_compilation_cache_dir
    if own and own != _CACHE_ON:  # the user's (or a test session's) own: left as it is
        return own
    if path is None or path == _CACHE_ON:
        return _CACHE_ON
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise InputError(f"{CACHE_ENV} / compile_cache: cannot make {path!r} ({e.strerror}); set another "
                         f"directory or turn the cache off with {CACHE_ENV}=none") from None  # fmt: skip
    jax.config.update("jax_compilation_cache_dir", path)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:  # (JAX's own variable wins)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # a program worth keeping
    first, _CACHE_ON = _CACHE_ON is None, path
    if say and first:
        print(f"[jaxtune] compiled programs are kept in {path} for later runs ({CACHE_ENV}=none or "
              "jt.configure(compile_cache=False) turns this off)", file=sys.stderr)  # fmt: skip
    return path


def _disable_compile_cache() -> None:
    global _CACHE_ON
    import jax

    jax.config.update("jax_compilation_cache_dir", None)
    try:  # JAX keeps the cache it opened until it is reset (no public API for this)
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):
        pass
    _CACHE_ON = None
