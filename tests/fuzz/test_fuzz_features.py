"""Bad region-feature sources and stores: BUTD / LXMERT TSVs (6, 7 and 10 columns), per-image
``.npz`` directories (both key conventions) and region store directories, each mutated one
way per test id. Every mutation is refused with one ``VlpError`` line naming the file (never
another exception type), nothing is written and nothing in a hostile file runs; a flipped
bit inside a store array is caught by :func:`verify_store`. Some cases also go through the
real ``vlp features import-tsv`` / ``import-npz`` command line.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fuzz_harness import refuse

from vlp.data.features import ARRAY_FILES, RegionStore, RegionStoreWriter, verify_store
from vlp.data.formats.butd_tsv import (
    BUTD_CLS_FIELDS,
    BUTD_FIELDS,
    LXMERT_FIELDS,
    import_butd_tsv,
)
from vlp.data.formats.npz import import_npz_dir
from vlp.errors import VlpError

pytestmark = pytest.mark.slow  # a large fuzz sweep

DIM, CLASSES = 6, 4
LAYOUTS = {6: BUTD_FIELDS, 7: BUTD_CLS_FIELDS, 10: LXMERT_FIELDS}
ALIASES = {"img_id": "image_id", "img_h": "image_h", "img_w": "image_w"}
Row = dict[str, str]


def regions(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, boxes, cls_probs) of image i: i + 2 regions inside a 64×48 image."""
    rng = np.random.default_rng(i)
    n = i + 2
    xy = rng.uniform(0, 20, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 20, (n, 2))], 1).astype(np.float32)
    return (rng.normal(size=(n, DIM)).astype(np.float32), boxes,
            rng.dirichlet(np.ones(CLASSES), n).astype(np.float32))


def b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def assert_one_line(err: pytest.ExceptionInfo[VlpError], *mentions: str | Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    for text in mentions:
        assert str(text) in msg, f"{text!r} not in {msg!r}"
    return msg


# --------------------------------------------------------------------------- TSV


def tsv_rows() -> list[Row]:
    rows = []
    for i in (1, 2, 3):
        feats, boxes, cls = regions(i)
        rows.append({"image_id": f"COCO_val2014_{i:012d}", "image_w": "64", "image_h": "48",
                     "num_boxes": str(len(feats)), "boxes": b64(boxes), "features": b64(feats),
                     "cls_prob": b64(cls), "objects_id": b64(cls.argmax(1).astype(np.int64)),
                     "objects_conf": b64(cls.max(1)),
                     "attrs_id": b64(np.zeros(len(feats), np.int64)),
                     "attrs_conf": b64(np.zeros(len(feats), np.float32))})
    return rows


def tsv_bytes(rows: list[Row], layout: int) -> bytes:
    names = [ALIASES.get(n, n) for n in LAYOUTS[layout]]
    return "".join("\t".join(row[n] for n in names) + "\n" for row in rows).encode()


def _set(field: str, value: str | Callable[[Row], str], row: int = 1
         ) -> Callable[[list[Row], int], bytes]:
    def mutate(rows: list[Row], layout: int) -> bytes:
        rows[row][field] = value(rows[row]) if callable(value) else value
        return tsv_bytes(rows, layout)
    return mutate


def _raw(fn: Callable[[bytes], bytes]) -> Callable[[list[Row], int], bytes]:
    return lambda rows, layout: fn(tsv_bytes(rows, layout))


def _decoded(row: Row, field: str, dtype: str = "float32") -> np.ndarray:
    return np.frombuffer(base64.b64decode(row[field]), dtype=dtype).copy()


def _poison(field: str, value: float) -> Callable[[Row], str]:
    def change(row: Row) -> str:
        arr = _decoded(row, field)
        arr[1] = value
        return b64(arr)
    return change


def _drop_column(rows: list[Row], layout: int) -> bytes:
    lines = tsv_bytes(rows, layout).split(b"\n")
    lines[1] = lines[1].rsplit(b"\t", 1)[0]
    return b"\n".join(lines)


def _other_dim(row: Row) -> str:
    return b64(np.zeros((int(row["num_boxes"]), DIM + 1), np.float32))


TSV_MUTATIONS: dict[str, Callable[[list[Row], int], bytes]] = {
    "not_utf8": _raw(lambda b: b.replace(b"\t64\t", b"\t6\xff4\t", 1)),
    "latin1_id": _raw(lambda b: b"caf\xe9" + b),
    "nul_byte": _raw(lambda b: b[:40] + b"\x00" + b[40:]),
    "missing_column": _drop_column,
    "extra_column": _raw(lambda b: b.replace(b"\n", b"\textra\n", 2)),
    "truncated_file": _raw(lambda b: b[: len(b) - 37]),
    "cut_after_first_tab": _raw(lambda b: b.split(b"\t", 1)[0]),
    "stray_quote": _raw(lambda b: b.replace(b"\t64\t", b'\t"64\t', 1)),
    "header_row": lambda rows, layout: ("\t".join(LAYOUTS[layout]) + "\n").encode()
    + tsv_bytes(rows, layout),
    "empty_file": _raw(lambda b: b""),
    "blank_lines_only": _raw(lambda b: b"\n\n\n"),
    "bad_base64_boxes": _set("boxes", lambda r: "!!" + r["boxes"][2:]),
    "bad_base64_features": _set("features", lambda r: r["features"][:-3]),
    "base64_padding_missing": _set("boxes", lambda r: r["boxes"].rstrip("=") + "A"),
    "broken_bytes_repr": _set("features", lambda r: "b'" + r["features"]),
    "boxes_short": _set("boxes", lambda r: b64(_decoded(r, "boxes")[:-1])),
    "boxes_long": _set("boxes", lambda r: b64(np.append(_decoded(r, "boxes"), 1.0))),
    "features_not_multiple": _set("features", lambda r: b64(_decoded(r, "features")[:-1])),
    "features_empty": _set("features", ""),
    "num_boxes_zero": _set("num_boxes", "0"),
    "num_boxes_negative": _set("num_boxes", "-3"),
    "num_boxes_text": _set("num_boxes", "three"),
    "num_boxes_nan": _set("num_boxes", "nan"),
    "num_boxes_inf": _set("num_boxes", "inf"),
    "num_boxes_fraction": _set("num_boxes", "2.5"),
    "num_boxes_huge": _set("num_boxes", "1" + "0" * 30),
    "num_boxes_disagrees": _set("num_boxes", lambda r: str(int(r["num_boxes"]) + 1)),
    "width_zero": _set("image_w", "0"),
    "height_negative": _set("image_h", "-48"),
    "width_text": _set("image_w", "wide"),
    "features_nan": _set("features", _poison("features", np.nan)),
    "features_inf": _set("features", _poison("features", np.inf)),
    "boxes_nan": _set("boxes", _poison("boxes", np.nan)),
    "image_id_no_digits": _set("image_id", "COCO_val2014_"),
    "image_id_duplicate": _set("image_id", "COCO_train2014_000000000001", row=2),
    "image_id_huge": _set("image_id", "9" * 30),
    "feature_dim_changes": _set("features", _other_dim, row=2),
}
TSV_LAYOUT_MUTATIONS: dict[str, tuple[int, Callable[[list[Row], int], bytes]]] = {
    "cls_prob_negative": (7, _set("cls_prob", _poison("cls_prob", -0.5))),
    "cls_prob_nan": (7, _set("cls_prob", _poison("cls_prob", np.nan))),
    "cls_prob_wrong_bytes": (7, _set("cls_prob", lambda r: r["cls_prob"][:-8])),
    "cls_prob_other_classes": (7, _set("cls_prob", lambda r: b64(_decoded(r, "cls_prob")[
        :int(r["num_boxes"]) * (CLASSES - 1)]), row=2)),
    "objects_id_out_of_range": (10, _set("objects_id", lambda r: b64(
        np.full(int(r["num_boxes"]), 5000, np.int64)))),
    "objects_id_negative": (10, _set("objects_id", lambda r: b64(
        np.full(int(r["num_boxes"]), -1, np.int64)))),
    "objects_id_short": (10, _set("objects_id", lambda r: b64(
        np.zeros(int(r["num_boxes"]) - 1, np.int64)))),
    "objects_conf_nan": (10, _set("objects_conf", lambda r: b64(
        np.full(int(r["num_boxes"]), np.nan, np.float32)))),
}
TSV_CASES = [pytest.param(name, layout, fn, id=f"tsv{layout}-{name}")
             for name, fn in TSV_MUTATIONS.items() for layout in LAYOUTS]
TSV_CASES += [pytest.param(name, layout, fn, id=f"tsv{layout}-{name}")
              for name, (layout, fn) in TSV_LAYOUT_MUTATIONS.items()]


def test_valid_tsvs_import(tmp_path: Path) -> None:
    for layout in LAYOUTS:
        src = tmp_path / f"ok{layout}.tsv"
        src.write_bytes(tsv_bytes(tsv_rows(), layout))
        store = RegionStore.open(import_butd_tsv(src, tmp_path / f"s{layout}", progress=False,
                                                 num_classes=CLASSES), verify=True)
        assert store.image_ids.tolist() == [1, 2, 3] and store.feature_dim == DIM


@pytest.mark.parametrize(("name", "layout", "mutate"), TSV_CASES)
def test_bad_tsv(tmp_path: Path, name: str, layout: int,
                 mutate: Callable[[list[Row], int], bytes]) -> None:
    src, out = tmp_path / "bad.tsv", tmp_path / "out"
    src.write_bytes(mutate(tsv_rows(), layout))
    with pytest.raises(VlpError) as err:
        import_butd_tsv(src, out, num_classes=CLASSES, progress=False)
    assert_one_line(err, src)
    assert not out.exists()


def test_tsv_path_is_directory_or_missing(tmp_path: Path) -> None:
    with pytest.raises(VlpError) as err:
        import_butd_tsv(tmp_path, tmp_path.parent / f"{tmp_path.name}_out", progress=False)
    assert_one_line(err, tmp_path, "is a directory")
    with pytest.raises(VlpError) as err:
        import_butd_tsv(tmp_path / "none.tsv", tmp_path / "out", progress=False)
    assert_one_line(err, "none.tsv", "cannot read")


# --------------------------------------------------------------------------- npz

KEYS = {"pba": {"features": "x", "boxes": "bbox", "width": "image_w", "height": "image_h"},
        "simple": {"features": "features", "boxes": "boxes", "width": "width",
                   "height": "height"}}
Arrays = dict[str, Any]


def npz_arrays(i: int, conv: str) -> Arrays:
    feats, boxes, cls = regions(i)
    if conv == "pba":
        return {"x": feats.T, "bbox": boxes, "num_bbox": len(feats), "image_h": 48,
                "image_w": 64, "info": {"cls_prob": cls, "objects_id": cls.argmax(1)}}
    return {"features": feats, "boxes": boxes, "cls_prob": cls, "width": 64, "height": 48}


def save_npz(path: Path, arrays: Arrays) -> Path:
    packed = {k: np.array(v, dtype=object) if isinstance(v, dict) else v
              for k, v in arrays.items()}
    np.savez(path, **packed)
    return path


def npz_dir(root: Path, conv: str) -> Path:
    root.mkdir()
    for i in (1, 2, 3):
        save_npz(root / f"COCO_train2014_{i:012d}.npz", npz_arrays(i, conv))
    return root


def _key(role: str, value: Any) -> Callable[[Arrays, str], None]:
    def mutate(a: Arrays, conv: str) -> None:
        key = KEYS[conv].get(role, role)
        if value is _DELETE:
            del a[key]
        else:
            a[key] = value(a[key]) if callable(value) else value
    return mutate


def _cls(value: Callable[[np.ndarray], Any]) -> Callable[[Arrays, str], None]:
    def mutate(a: Arrays, conv: str) -> None:
        holder = a["info"] if conv == "pba" else a
        holder["cls_prob"] = value(holder["cls_prob"])
    return mutate


def _no_regions(a: Arrays, conv: str) -> None:
    a[KEYS[conv]["features"]] = np.zeros((0, DIM), np.float32)
    a[KEYS[conv]["boxes"]] = np.zeros((0, 4), np.float32)
    a.pop("num_bbox", None)


def _poisoned(value: float, dtype: Any = np.float32) -> Callable[[np.ndarray], np.ndarray]:
    def change(arr: np.ndarray) -> np.ndarray:
        arr = np.array(arr, dtype=dtype, order="C")
        arr.reshape(-1)[1] = value
        return arr
    return change


_DELETE = object()
NPZ_MUTATIONS: dict[str, Callable[[Arrays, str], None]] = {
    "missing_features": _key("features", _DELETE),
    "missing_boxes": _key("boxes", _DELETE),
    "missing_width": _key("width", _DELETE),
    "missing_height": _key("height", _DELETE),
    "boxes_3_columns": _key("boxes", lambda b: b[:, :3]),
    "boxes_wrong_rows": _key("boxes", lambda b: b[:-1]),
    "boxes_strings": _key("boxes", lambda b: b.astype(str)),
    "boxes_nan": _key("boxes", _poisoned(np.nan)),
    "features_1d": _key("features", lambda f: f.reshape(-1)),
    "features_3d": _key("features", lambda f: f[None]),
    "features_strings": _key("features", lambda f: f.astype(str)),
    "features_bytes": _key("features", lambda f: f.astype("S8")),
    "features_object": _key("features", lambda f: np.array(list(f), dtype=object)),
    "features_complex": _key("features", lambda f: f.astype(np.complex64)),
    "features_structured": _key("features", lambda f: np.zeros(f.shape, "i4,f4")),
    "features_bool": _key("features", lambda f: f > 0),
    "features_nan": _key("features", _poisoned(np.nan)),
    "features_beyond_float32": _key("features", _poisoned(1e300, np.float64)),
    "width_zero": _key("width", 0),
    "width_negative": _key("width", -64),
    "width_fraction": _key("width", 63.5),
    "width_two_values": _key("width", np.array([64, 65])),
    "width_string": _key("width", "64"),
    "height_empty_array": _key("height", np.zeros(0)),
    "height_nan": _key("height", np.nan),
    "cls_prob_negative": _cls(_poisoned(-1.0)),
    "cls_prob_wrong_rows": _cls(lambda c: c[:-1]),
    "cls_prob_1d": _cls(lambda c: c.reshape(-1)),
    "cls_prob_nan": _cls(_poisoned(np.nan)),
    "cls_prob_strings": _cls(lambda c: c.astype(str)),
    "no_regions": _no_regions,
}


def _info(value: Any) -> Callable[[Arrays, str], None]:
    def mutate(a: Arrays, conv: str) -> None:
        a["info"] = value(a["info"]) if callable(value) else value
    return mutate


def _info_objects(ids: Callable[[int], Any]) -> Callable[[Arrays, str], None]:
    def mutate(a: Arrays, conv: str) -> None:
        n = a["bbox"].shape[0]
        a["info"] = {"objects_id": ids(n), "objects_conf": np.full(n, 0.5, np.float32)}
    return mutate


PBA_MUTATIONS: dict[str, Callable[[Arrays, str], None]] = {
    "num_bbox_disagrees": _key("num_bbox", 99),
    "num_bbox_zero": _key("num_bbox", 0),
    "num_bbox_negative": _key("num_bbox", -1),
    "num_bbox_string": _key("num_bbox", "3"),
    "info_list": _info([1, 2]),
    "info_string": _info("info"),
    "info_numeric_array": lambda a, conv: a.update(info=np.arange(3)),
    "info_objects_id_short": _info_objects(lambda n: np.zeros(n - 1, np.int64)),
    "info_objects_id_out_of_range": _info_objects(lambda n: np.full(n, 5000)),
    "info_objects_id_fraction": _info_objects(lambda n: np.full(n, 0.5)),
    "info_objects_id_strings": _info_objects(lambda n: ["a"] * n),
    "info_objects_id_ragged": _info_objects(lambda n: [[1], [1, 2]] + [[0]] * (n - 2)),
    "info_cls_prob_dict": _info(lambda i: {**i, "cls_prob": {"a": 1}}),
}
NPZ_CASES = [pytest.param(fn, conv, id=f"npz-{conv}-{name}")
             for name, fn in NPZ_MUTATIONS.items() for conv in KEYS]
NPZ_CASES += [pytest.param(fn, "pba", id=f"npz-pba-{name}") for name, fn in PBA_MUTATIONS.items()]


def test_valid_npz_dirs_import(tmp_path: Path) -> None:
    for conv in KEYS:
        src = npz_dir(tmp_path / conv, conv)
        store = RegionStore.open(import_npz_dir(src, tmp_path / f"s{conv}", progress=False),
                                 verify=True)
        assert store.image_ids.tolist() == [1, 2, 3] and store.num_classes == CLASSES


@pytest.mark.parametrize(("mutate", "conv"), NPZ_CASES)
def test_bad_npz_arrays(tmp_path: Path, mutate: Callable[[Arrays, str], None],
                        conv: str) -> None:
    src, out = npz_dir(tmp_path / "src", conv), tmp_path / "out"
    bad = src / "COCO_train2014_000000000002.npz"
    arrays = npz_arrays(2, conv)
    mutate(arrays, conv)
    save_npz(bad, arrays)
    with pytest.raises(VlpError) as err:
        import_npz_dir(src, out, num_classes=CLASSES, progress=False)
    assert_one_line(err, bad)
    assert not out.exists()


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {m: zf.read(m) for m in zf.namelist()}


def _rezip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _member(key: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        members = _members(path)
        members[f"{key}.npy"] = fn(members[f"{key}.npy"])
        _rezip(path, members)
    return mutate


def _npy_header_text(text: str) -> bytes:
    """An .npy member whose header is ``text`` (numpy parses it with literal_eval)."""
    header = text.encode("latin1") + b" " * (117 - len(text)) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 96


def _flip_compressed(path: Path) -> None:
    arrays = npz_arrays(2, "simple")
    np.savez_compressed(path, **arrays)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


def _second_file(name: str, i: int = 1, change: Callable[[Arrays], None] | None = None
                 ) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        arrays = npz_arrays(i, "simple")
        if change:
            change(arrays)
        save_npz(path.parent / name, arrays)
    return mutate


NPZ_FILE_MUTATIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "random_bytes": (lambda p: p.write_bytes(os.urandom(300)), ".npz"),
    "npy_not_npz": (lambda p: np.save(p.with_suffix(".npy"), np.zeros(3))
                    or p.with_suffix(".npy").rename(p), ".npz"),
    "empty_file": (lambda p: p.write_bytes(b""), ".npz"),
    "truncated_zip": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
                      ".npz"),
    "empty_zip": (lambda p: _rezip(p, {}), ".npz"),
    "zip_of_text": (lambda p: _rezip(p, {"readme.txt": b"hello"}), ".npz"),
    "member_bad_magic": (_member("features", lambda b: b"\x93NUMPX" + b[6:]), ".npz"),
    "member_bad_version": (_member("features", lambda b: b[:6] + b"\x09\x00" + b[8:]), ".npz"),
    "member_garbled_header": (_member("features", lambda b: b.replace(b"descr", b"dxscr")),
                              ".npz"),
    "member_header_code": (_member("features", lambda b: _npy_header_text(
        "{'descr': __import__('os').getcwd(), 'fortran_order': False, 'shape': (4, 6)}")),
        ".npz"),
    "member_header_not_dict": (_member("features", lambda b: _npy_header_text("[1, 2]")),
                               ".npz"),
    "member_short_data": (_member("features", lambda b: b[:-4]), ".npz"),
    "member_long_data": (_member("features", lambda b: b + b"\0" * 8), ".npz"),
    "member_huge_shape": (_member("boxes", lambda b: b.replace(b"(4, 4)", b"(9999999999999, 4)")),
                          ".npz"),
    "compressed_bit_flip": (_flip_compressed, ".npz"),
    "duplicate_id": (_second_file("img_1.npz"), "img_1.npz"),
    "feature_dim_disagrees": (_second_file("4.npz", 4, lambda a: a.update(
        features=np.zeros((3, DIM + 1), np.float32), boxes=np.zeros((3, 4), np.float32),
        cls_prob=np.full((3, CLASSES), 0.25, np.float32))), "4.npz"),
    "classes_disagree": (_second_file("4.npz", 4, lambda a: a.pop("cls_prob")), "4.npz"),
    "name_without_digits": (_second_file("image.npz"), "image.npz"),
    "directory_named_npz": (lambda p: (p.parent / "5.npz").mkdir(), "5.npz"),
}


@pytest.mark.parametrize(("name"), sorted(NPZ_FILE_MUTATIONS))
def test_bad_npz_files(tmp_path: Path, name: str) -> None:
    mutate, named = NPZ_FILE_MUTATIONS[name]
    src, out = npz_dir(tmp_path / "src", "simple"), tmp_path / "out"
    mutate(src / "COCO_train2014_000000000002.npz")
    with pytest.raises(VlpError) as err:
        import_npz_dir(src, out, num_classes=CLASSES, progress=False)
    msg = assert_one_line(err, src, named)
    assert "allow_pickle" not in msg and "pickled data" not in msg
    assert not out.exists()


def test_npz_source_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.npz").write_bytes(b"x")
    for src, what in (("missing", "no such directory"), ("empty", "no .npz files"),
                      ("file.npz", "is a file")):
        with pytest.raises(VlpError) as err:
            import_npz_dir(tmp_path / src, tmp_path / "out", progress=False)
        assert_one_line(err, tmp_path / src, what)


class _Payload:
    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


def hostile(kind: str, marker: Path) -> tuple[Any, str]:
    cmd = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    return {"os_system": (_Payload(os.system, cmd), "posix.system"),
            "subprocess": (_Payload(subprocess.check_call, ["touch", str(marker)]),
                           "subprocess.check_call"),
            "eval": (_Payload(eval, code), "builtins.eval"),
            "exec": (_Payload(exec, code), "builtins.exec")}[kind]


@pytest.mark.parametrize("kind", ["os_system", "subprocess", "eval", "exec"])
def test_hostile_info_runs_nothing(tmp_path: Path, kind: str) -> None:
    src, out, marker = npz_dir(tmp_path / "src", "pba"), tmp_path / "out", tmp_path / "pwned"
    bad = src / "COCO_train2014_000000000002.npz"
    arrays = npz_arrays(2, "pba")
    payload, name = hostile(kind, marker)
    arrays["info"] = {"cls_prob": arrays["info"]["cls_prob"], "x": [payload]}
    save_npz(bad, arrays)
    with pytest.raises(VlpError) as err:
        import_npz_dir(src, out, progress=False)
    assert_one_line(err, bad, "field 'info'", "refused to unpickle", name)
    assert not marker.exists() and not out.exists()


# --------------------------------------------------------------------------- stores


def make_store(root: Path) -> Path:
    with RegionStoreWriter(root, DIM, CLASSES, class_names=list("abcd")) as w:
        for i in (1, 2, 3):
            feats, boxes, cls = regions(i)
            w.add(i, 64, 48, feats, boxes, cls)
    return root


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-3])


def _pad(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0" * 8)


def _garble_header(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b"descr", b"dxscr", 1))


def _object_array(path: Path) -> None:
    np.save(path, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


STORE_FILE_MUTATIONS: dict[str, Callable[[Path], None]] = {
    "truncate": _truncate, "pad": _pad, "delete": Path.unlink,
    "garble_header": _garble_header,
}
STORE_CASES = [pytest.param(fn, name, id=f"store-{kind}-{name}")
               for kind, fn in STORE_FILE_MUTATIONS.items() for name in ARRAY_FILES]
STORE_CASES += [pytest.param(_object_array, "cls_probs.npy", id="store-object-cls_probs.npy"),
                pytest.param(_directory, "boxes.npy", id="store-directory-boxes.npy"),
                pytest.param(Path.unlink, "meta.json", id="store-delete-meta.json")]


@pytest.mark.parametrize(("mutate", "name"), STORE_CASES)
def test_damaged_store_file(tmp_path: Path, mutate: Callable[[Path], None], name: str) -> None:
    root = make_store(tmp_path / "store")
    mutate(root / name)
    with pytest.raises(VlpError) as err:
        RegionStore.open(root)
    assert_one_line(err, root / name)
    problems = verify_store(root)
    assert problems and str(root / name) in problems[0]
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize("name", ARRAY_FILES)
def test_flipped_byte_caught_by_verify(tmp_path: Path, name: str) -> None:
    root = make_store(tmp_path / "store")
    path = root / name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40  # the last row's last value (for index.npy: a height)
    path.write_bytes(bytes(data))
    RegionStore.open(root)  # sizes and shapes still agree
    assert verify_store(root) == [f"{path}: checksum mismatch with meta.json (the file is "
                                  "corrupt or was changed); rebuild the store"]
    with pytest.raises(VlpError, match="checksum mismatch"):
        RegionStore.open(root, verify=True)


def _meta(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """Change meta.json in place (what ``change`` returns is ignored)."""
    def mutate(path: Path) -> None:
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))
    return mutate


def _meta_doc(doc: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """Replace meta.json by another JSON document."""
    def mutate(path: Path) -> None:
        path.write_text(json.dumps(doc(json.loads(path.read_text()))))
    return mutate


def _meta_set(key: str, value: Any) -> Callable[[Path], None]:
    return _meta(lambda m: m.__setitem__(key, value))


def _meta_del(key: str) -> Callable[[Path], None]:
    return _meta(lambda m: m.pop(key))


META_MUTATIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "not_json": (lambda p: p.write_text("{not json"), "meta.json"),
    "not_utf8": (lambda p: p.write_bytes(b'{"a": "\xff"}'), "meta.json"),
    "json_list": (_meta_doc(lambda m: [m]), "meta.json"),
    "json_null": (_meta_doc(lambda m: None), "meta.json"),
    "json_string": (_meta_doc(lambda m: "meta"), "meta.json"),
    "deeply_nested": (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "meta.json"),
    **{f"missing_{k}": (_meta_del(k), "meta.json") for k in (
        "format_version", "feature_dim", "num_classes", "dtype", "n_images", "n_regions",
        "sha256")},
    "version_2": (_meta_set("format_version", 2), "meta.json"),
    "version_string": (_meta_set("format_version", "1"), "meta.json"),
    "version_bool": (_meta_set("format_version", True), "meta.json"),
    "feature_dim_string": (_meta_set("feature_dim", "6"), "meta.json"),
    "feature_dim_float": (_meta_set("feature_dim", 6.0), "meta.json"),
    "feature_dim_zero": (_meta_set("feature_dim", 0), "meta.json"),
    "feature_dim_other": (_meta_set("feature_dim", DIM + 1), "features.npy"),
    "num_classes_negative": (_meta_set("num_classes", -1), "meta.json"),
    "num_classes_other": (_meta_set("num_classes", CLASSES + 1), "meta.json"),
    "n_regions_null": (_meta_set("n_regions", None), "meta.json"),
    "n_regions_other": (_meta_set("n_regions", 99), "features.npy"),
    "n_images_other": (_meta_set("n_images", 2), "index.npy"),
    "n_images_list": (_meta_set("n_images", [3]), "meta.json"),
    "dtype_unknown": (_meta_set("dtype", "int8"), "meta.json"),
    "dtype_list": (_meta_set("dtype", ["float16"]), "meta.json"),
    "dtype_other": (_meta_set("dtype", "float32"), "features.npy"),
    "sha256_list": (_meta_set("sha256", []), "meta.json"),
    "sha256_missing_entry": (_meta(lambda m: m["sha256"].pop("boxes.npy")), "meta.json"),
    "sha256_not_hex": (_meta(lambda m: m["sha256"].update({"index.npy": "xyz"})), "meta.json"),
    "class_names_short": (_meta_set("class_names", ["a"]), "meta.json"),
    "class_names_numbers": (_meta_set("class_names", [1, 2, 3, 4]), "meta.json"),
}


@pytest.mark.parametrize("kind", sorted(META_MUTATIONS))
def test_corrupt_meta(tmp_path: Path, kind: str) -> None:
    mutate, named = META_MUTATIONS[kind]
    root = make_store(tmp_path / "store")
    mutate(root / "meta.json")
    with pytest.raises(VlpError) as err:
        RegionStore.open(root)
    assert_one_line(err, root / named)
    assert verify_store(root)


def test_store_root_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for root, what in ((tmp_path / "file", "is a file"),
                       (tmp_path / "none", "no such region store directory")):
        with pytest.raises(VlpError) as err:
            RegionStore.open(root)
        assert_one_line(err, root, what)
        assert verify_store(root) == [str(err.value)]


# --------------------------------------------------------------------------- CLI

CLI_TSV = ["not_utf8", "missing_column", "bad_base64_boxes", "num_boxes_zero", "features_nan",
           "image_id_duplicate", "truncated_file", "empty_file"]


@pytest.mark.parametrize("name", CLI_TSV, ids=[f"cli-tsv-{n}" for n in CLI_TSV])
def test_cli_bad_tsv(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    src, out = tmp_path / "bad.tsv", tmp_path / "out"
    src.write_bytes(TSV_MUTATIONS[name](tsv_rows(), 6))
    refuse(capsys, ["features", "import-tsv", str(src), str(out)], watch=[src], absent=[out],
           mentions=[str(src)])


CLI_NPZ = ["random_bytes", "member_short_data", "duplicate_id", "directory_named_npz"]


@pytest.mark.parametrize("name", CLI_NPZ, ids=[f"cli-npz-{n}" for n in CLI_NPZ])
def test_cli_bad_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    mutate, named = NPZ_FILE_MUTATIONS[name]
    src, out = npz_dir(tmp_path / "src", "simple"), tmp_path / "out"
    mutate(src / "COCO_train2014_000000000002.npz")
    line = refuse(capsys, ["features", "import-npz", str(src), str(out)], watch=[src],
                  absent=[out], mentions=[str(src), named]).line
    assert "allow_pickle" not in line


def test_cli_hostile_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, out, marker = npz_dir(tmp_path / "src", "pba"), tmp_path / "out", tmp_path / "pwned"
    arrays = npz_arrays(1, "pba")
    arrays["info"] = {"cls_prob": arrays["info"]["cls_prob"],
                      "extra": hostile("os_system", marker)[0]}
    save_npz(src / "COCO_train2014_000000000001.npz", arrays)
    refuse(capsys, ["features", "import-npz", str(src), str(out)], watch=[src], absent=[out],
           mentions=["COCO_train2014_000000000001.npz", "field 'info'", "posix.system"])
    assert not marker.exists()


@pytest.mark.parametrize("sub", ["", "sub"], ids=["cli-npz-output-is-input",
                                                  "cli-npz-output-inside-input"])
def test_cli_output_inside_input_keeps_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          sub: str) -> None:
    src = npz_dir(tmp_path / "src", "simple")
    out = src / sub if sub else src
    refuse(capsys, ["features", "import-npz", str(src), str(out)], watch=[src],
           mentions=[str(out), "the input"])
    assert len(list(src.glob("*.npz"))) == 3 and not (src / "sub").exists()


def test_cli_existing_output_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    src, out = tmp_path / "ok.tsv", tmp_path / "existing"
    src.write_bytes(tsv_bytes(tsv_rows(), 6))
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refuse(capsys, ["features", "import-tsv", str(src), str(out)], watch=[src, out],
           mentions=[str(out), "already exists", "--overwrite"])
    store = import_butd_tsv(src, out, progress=False, overwrite=True)  # the library keyword
    assert RegionStore.open(store, verify=True).image_ids.tolist() == [1, 2, 3]
    assert not (out / "keep.txt").exists()


def test_cli_source_kind_swapped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = npz_dir(tmp_path / "src", "simple")
    tsv = tmp_path / "f.tsv"
    tsv.write_bytes(tsv_bytes(tsv_rows(), 6))
    refuse(capsys, ["features", "import-tsv", str(src), str(tmp_path / "o1")], watch=[src],
           absent=[tmp_path / "o1"], mentions=[str(src), "is a directory"])
    refuse(capsys, ["features", "import-npz", str(tsv), str(tmp_path / "o2")], watch=[tsv],
           absent=[tmp_path / "o2"], mentions=[str(tsv), "is a file"])


def test_cli_boxes_outside_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tsv_rows()
    boxes = np.frombuffer(base64.b64decode(rows[1]["boxes"]), np.float32).copy()
    boxes[:4] = [10, 10, 5, 90]  # inverted and below the image
    rows[1]["boxes"] = b64(boxes)
    src, out = tmp_path / "w.tsv", tmp_path / "out"
    src.write_bytes(tsv_bytes(rows, 6))
    refuse(capsys, ["features", "import-tsv", str(src), str(out)], watch=[src], absent=[out],
           mentions=[str(src), "field 'boxes'", "strict mode"], strict=True)
    shutil.rmtree(out, ignore_errors=True)
