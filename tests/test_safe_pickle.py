"""The data-only unpickler: plain data and numpy arrays load under every protocol numpy and
Python 2 use; every way a pickle can call code is refused in one line, and nothing runs."""

from __future__ import annotations

import copyreg
import io
import os
import pickle
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlp.errors import VlpError
from vlp.safe_pickle import UnsafePickleError, safe_load, safe_loads

PLAIN: dict[str, Any] = {
    "int": 3, "big": 2**80, "neg": -7, "float": 1.5, "bool": True, "none": None,
    "str": "héllo", "bytes": b"\x00\xff", "empty": b"", "tuple": (1, "a"), "list": [1, [2]],
    "set": {1, 2}, "frozenset": frozenset({"x"}), "nested": {"k": [{"deep": (None,)}]},
}


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a refused pickle ran code"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_every_protocol(protocol: int) -> None:
    assert safe_loads(pickle.dumps(PLAIN, protocol=protocol), "plain") == PLAIN


def test_self_referencing_list() -> None:
    a: list[Any] = [1]
    a.append(a)
    got = safe_loads(pickle.dumps(a, protocol=2), "cycle")
    assert got[0] == 1 and got[1] is got


NUMPY: dict[str, Any] = {
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "i64": np.array([1, -2], dtype=np.int64), "zero_d": np.array(4.0), "empty": np.zeros((0, 3)),
    "strings": np.array(["ab", "c"]), "bool": np.array([True, False]),
    "structured": np.zeros(2, dtype=[("a", "<i4"), ("b", ">f8")]),
    "objects": np.array([{"x": 1}, None, "s"], dtype=object),
    "f16_scalar": np.float16(0.5), "i32_scalar": np.int32(-3), "c_scalar": np.complex64(1j),
}


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_numpy_arrays_and_scalars(protocol: int) -> None:
    got = safe_loads(pickle.dumps(NUMPY, protocol=protocol), "arrays")
    for key, want in NUMPY.items():
        assert type(got[key]) is type(want), key
        if isinstance(want, np.ndarray):
            assert got[key].dtype == want.dtype and got[key].shape == want.shape, key
            if want.dtype != object:
                np.testing.assert_array_equal(got[key], want)
        else:
            assert got[key] == want, key
    assert got["fortran"].flags.f_contiguous
    assert got["objects"].tolist() == [{"x": 1}, None, "s"]


def test_numpy_1x_module_names() -> None:
    data = pickle.dumps({"a": np.arange(3), "s": np.float64(2.0)}, protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != data
    got = safe_loads(old, "numpy 1.x pickle")
    np.testing.assert_array_equal(got["a"], np.arange(3))
    assert got["s"] == 2.0


def test_np_save_object_array() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array({"objects_id": np.arange(4), "n": np.int64(4)}, dtype=object))
    buf.seek(0)
    np.lib.format.read_magic(buf)
    np.lib.format.read_array_header_1_0(buf)
    got = safe_load(buf, "info.npy")
    assert got.shape == () and got.item()["n"] == 4


def test_python2_strings_as_bytes() -> None:
    # Python 2 str is pickled as SHORT_BINSTRING; encoding="bytes" keeps it bytes, then
    # every bytes value is decoded (UTF-8, else Latin-1) and tuples become lists.
    py2 = (b"\x80\x02}q\x00(U\x04nameq\x01U\x05caf\xc3\xa9q\x02U\x03badq\x03U\x02\xe9!"
           b"U\x03tupq\x04K\x01U\x01a\x86q\x05u.")
    got = safe_loads(py2, "refs.p", encoding="bytes", numpy=False)
    assert got == {"name": "café", "bad": "é!", "tup": [1, "a"]}
    assert safe_loads(py2, "refs.p", encoding="latin1")["name"] == "cafÃ©"


def test_numpy_refused_when_not_allowed() -> None:
    with pytest.raises(UnsafePickleError, match=r"refs\.p: refused to unpickle: it calls "
                       r"numpy\._core\.multiarray\._reconstruct, and only plain data"):
        safe_loads(pickle.dumps(np.zeros(2), protocol=2), "refs.p", numpy=False)


class _Reduce:
    """Pickles as ``func(*args)``: what a crafted file does."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


def _hostile(marker: Path) -> dict[str, tuple[Any, str]]:
    touch = f"touch {marker}"
    return {
        "os_system": (_Reduce(os.system, touch), "posix.system"),
        "subprocess_call": (_Reduce(subprocess.call, ["touch", str(marker)]),
                            "subprocess.call"),
        "subprocess_popen": (_Reduce(subprocess.Popen, ["touch", str(marker)]),
                             "subprocess.Popen"),
        "eval": (_Reduce(eval, f"open({str(marker)!r}, 'w').close()"), "builtins.eval"),
        "exec": (_Reduce(exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
        "getattr": (_Reduce(getattr, [], "append"), "builtins.getattr"),
        "np_load": (_Reduce(np.load, str(marker)), "numpy.load"),
        "object_reconstructor": (_Reduce(copyreg._reconstructor, object, object, None),
                                 "copyreg._reconstructor"),
    }


@pytest.mark.parametrize("kind", ["os_system", "subprocess_call", "subprocess_popen", "eval",
                                  "exec", "getattr", "np_load", "object_reconstructor"])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_hostile_reduce_refused(kind: str, protocol: int, marker: Path) -> None:
    payload, name = _hostile(marker)[kind]
    data = pickle.dumps({"info": [1, payload]}, protocol=protocol)
    with pytest.raises(UnsafePickleError) as err:
        safe_loads(data, "x.npz: field 'info'")
    msg = str(err.value)
    assert msg.startswith("x.npz: field 'info': refused to unpickle: it calls ")
    assert name in msg and "\n" not in msg and "nothing was run" in msg
    assert err.value.global_name == name


M = b"/nonexistent/pwned"

HAND_MADE = {
    "global_reduce": b"cos\nsystem\n(S'touch " + M + b"'\ntR.",
    "posix_global": b"cposix\nsystem\n(S'touch " + M + b"'\ntR.",
    "inst": b"(S'touch " + M + b"'\nios\nsystem\n.",
    "obj": b"\x80\x02(cos\nsystem\nS'touch " + M + b"'\no.",
    "stack_global": b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x8c\x05touch\x85R.",
    "builtin_open": b"c__builtin__\nopen\n(S'" + M + b"'\nS'w'\ntR.",
    "numpy_runstring": b"cnumpy.testing._private.utils\nrunstring\n(S'1'\n}tR.",
    "codecs_other_encoding": b"c_codecs\nencode\n(X\x01\x00\x00\x00aX\x05\x00\x00\x00rot13tR.",
    "bytes_allocation": b"c__builtin__\nbytes\n(J\x00\x00\x00\x7ftR.",
    "ndarray_called": b"cnumpy\nndarray\n(J\x00\x00\x00\x7f\x85tR.",
    "reconstruct_huge": b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n"
                        b"(J\x00\x00\x00\x7ftS'b'\ntR.",
    "reconstruct_other_type": b"cnumpy.core.multiarray\n_reconstruct\n(c__builtin__\nset\n"
                              b"(K\x00tS'b'\ntR.",
}


@pytest.mark.parametrize("kind", sorted(HAND_MADE))
def test_hand_made_payloads_refused(kind: str) -> None:
    with pytest.raises(UnsafePickleError, match="refused to unpickle") as err:
        safe_loads(HAND_MADE[kind], "payload")
    assert "\n" not in str(err.value)


def test_build_cannot_modify_allowed_callables() -> None:
    # GLOBAL _codecs.encode, then BUILD with a slot state setting __call__ / __class__
    data = b"\x80\x02c_codecs\nencode\nN}X\x08\x00\x00\x00__call__K\x01s\x86b."
    with pytest.raises(VlpError, match="not a readable pickle"):
        safe_loads(data, "payload")
    assert safe_loads(pickle.dumps(b"ok", protocol=2), "bytes") == b"ok"


def test_registered_extension_refused(marker: Path) -> None:
    code = 0x7A5A
    copyreg.add_extension("os", "system", code)
    ext = b"\x80\x02\x83" + code.to_bytes(2, "little")
    try:
        assert pickle.loads(ext + b".") is os.system  # fills the cache find_class bypasses
        data = ext + b"X" + len(f"touch {marker}").to_bytes(4, "little") + \
            f"touch {marker}".encode() + b"\x85R."
        with pytest.raises(UnsafePickleError, match="refused to unpickle"):
            safe_loads(data, "ext")
        with pytest.raises(UnsafePickleError, match="refused to unpickle"):
            safe_load(io.BytesIO(data), "ext")
    finally:
        copyreg.remove_extension("os", "system", code)


_ARANGE = np.arange(10, dtype=np.int64)
CORRUPT = {
    "empty": b"",
    "garbage": b"this is not a pickle",
    "truncated": pickle.dumps(PLAIN, protocol=4)[:40],
    "bad_opcode": b"\x80\x04\xff.",
    "array_data_short": pickle.dumps(_ARANGE, protocol=4).replace(
        b"C\x50" + _ARANGE.tobytes(), b"C\x4c" + _ARANGE.tobytes()[:76]),
    "unhashable_key": b"\x80\x02}](K\x01es.",
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_pickle_one_line(kind: str) -> None:
    with pytest.raises(VlpError, match=r"^blob: not a readable pickle \(") as err:
        safe_loads(CORRUPT[kind], "blob")
    assert not isinstance(err.value, UnsafePickleError)
    assert "\n" not in str(err.value)


def test_too_deep_nesting_with_bytes_decoding() -> None:
    depth = 100_000
    data = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    with pytest.raises(VlpError, match="nested too deeply"):
        safe_loads(data, "deep", encoding="bytes")


def test_safe_load_path_and_file(tmp_path: Path) -> None:
    path = tmp_path / "d.p"
    path.write_bytes(pickle.dumps(PLAIN, protocol=2))
    assert safe_load(path) == PLAIN
    with path.open("rb") as f:
        assert safe_load(f, "d.p") == PLAIN
    with pytest.raises(VlpError, match=r"missing\.p: cannot read"):
        safe_load(tmp_path / "missing.p")
    with pytest.raises(VlpError, match="cannot read"):
        safe_load(tmp_path)
