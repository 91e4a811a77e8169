"""Region store: round trips, memory maps, checksums, atomic writes, clear errors, and the
BUTD TSV / npz readers on small hand-made files."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from vlp.data.features import (
    Regions,
    RegionStore,
    RegionStoreWriter,
    build_store,
    parse_image_id,
    verify_store,
)
from vlp.data.formats.butd_tsv import import_butd_tsv, read_butd_tsv
from vlp.data.formats.npz import import_npz_dir, read_npz_dir
from vlp.data.formats.region_source import distribution_from_argmax
from vlp.errors import DataWarning, VlpError, strict_mode

DIM, CLASSES = 16, 5


def make_regions(image_id: int, n: int, rng: np.random.Generator, dim: int = DIM,
                 classes: int = CLASSES) -> Regions:
    xy = rng.uniform(0, 50, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 30, (n, 2))], 1).astype(np.float32)
    return Regions(image_id, 100 + image_id, 80, rng.normal(size=(n, dim)).astype(np.float32),
                   boxes, rng.dirichlet(np.ones(classes), n).astype(np.float32))


def write_store(out: Path, regions: list[Regions], dtype: str = "float16") -> Path:
    with RegionStoreWriter(out, DIM, CLASSES, dtype=dtype, class_names=list("abcde"),
                           source="test") as writer:
        for r in regions:
            writer.add(r.image_id, r.width, r.height, r.features, r.boxes, r.cls_probs)
    return out


@pytest.fixture
def regions() -> list[Regions]:
    rng = np.random.default_rng(0)
    # Ids added out of order: the index must still be sorted.
    return [make_regions(i, int(rng.integers(1, 9)), rng) for i in (7, 3, 42, 11, 5)]


def assert_same(got: Regions, want: Regions, tol: float) -> None:
    assert (got.image_id, got.width, got.height) == (want.image_id, want.width, want.height)
    for name in ("features", "boxes", "cls_probs"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize(("dtype", "tol"), [("float16", 2e-3), ("float32", 0.0)])
def test_round_trip(tmp_path: Path, regions: list[Regions], dtype: str, tol: float) -> None:
    store = RegionStore.open(write_store(tmp_path / "store", regions, dtype), verify=True)
    assert len(store) == 5 and store.feature_dim == DIM and store.num_classes == CLASSES
    assert store.image_ids.tolist() == [3, 5, 7, 11, 42]
    assert store.class_names == list("abcde") and store.meta["source"] == "test"
    assert 42 in store and 4 not in store
    assert store.region_counts() == {r.image_id: len(r) for r in regions}
    for r in regions:
        assert store.num_regions(r.image_id) == len(r)
        assert_same(store.get(r.image_id), r, tol)
    np.testing.assert_array_equal(store.get(42).boxes, regions[2].boxes)  # boxes: float32


def test_arrays_are_memory_mapped(tmp_path: Path, regions: list[Regions]) -> None:
    store = RegionStore.open(write_store(tmp_path / "store", regions))
    for arr in (store._features, store._boxes, store._cls):
        assert isinstance(arr, np.memmap) and arr.mode == "r"
    meta = json.loads((tmp_path / "store" / "meta.json").read_text())
    assert meta["n_regions"] == sum(len(r) for r in regions) and meta["dtype"] == "float16"
    assert store._features.dtype == np.float16


def test_pickles_as_path(tmp_path: Path, regions: list[Regions]) -> None:
    store = RegionStore.open(write_store(tmp_path / "store", regions))
    copy = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 500
    assert_same(copy.get(11), store.get(11), 0.0)


def test_verify_catches_flipped_byte(tmp_path: Path, regions: list[Regions]) -> None:
    root = write_store(tmp_path / "store", regions)
    path = root / "features.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    RegionStore.open(root)  # shapes still agree: only verify can tell
    with pytest.raises(VlpError, match=r"features\.npy.*checksum"):
        RegionStore.open(root, verify=True)


def test_missing_file_and_bad_meta(tmp_path: Path, regions: list[Regions]) -> None:
    root = write_store(tmp_path / "store", regions)
    meta = json.loads((root / "meta.json").read_text())
    meta["feature_dim"] = DIM + 1
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(VlpError, match=r"features\.npy: expected float16 array") as err:
        RegionStore.open(root)
    assert "\n" not in str(err.value)
    (root / "boxes.npy").unlink()
    with pytest.raises(VlpError, match=r"boxes\.npy: missing"):
        RegionStore.open(root)
    with pytest.raises(VlpError, match="meta.json: missing"):
        RegionStore.open(tmp_path)


def test_interrupted_writer_leaves_nothing(tmp_path: Path, regions: list[Regions]) -> None:
    out = tmp_path / "store"
    with pytest.raises(RuntimeError), RegionStoreWriter(out, DIM, CLASSES) as writer:
        r = regions[0]
        writer.add(r.image_id, r.width, r.height, r.features, r.boxes, r.cls_probs)
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_rebuild_keeps_old_store(tmp_path: Path, regions: list[Regions]) -> None:
    root = write_store(tmp_path / "store", regions[:2])
    with pytest.raises(VlpError), RegionStoreWriter(root, DIM, CLASSES, overwrite=True) as writer:
        writer.add(1, 10, 10, np.zeros((2, DIM + 1)), np.zeros((2, 4)), np.zeros((2, 5)))
    assert RegionStore.open(root, verify=True).image_ids.tolist() == [3, 7]
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_wrong_feature_size_is_one_line(tmp_path: Path) -> None:
    writer = RegionStoreWriter(tmp_path / "s", 2048, CLASSES)
    with pytest.raises(VlpError) as err:
        writer.add(42, 64, 64, np.zeros((36, 1024)), np.zeros((36, 4)), np.zeros((36, 5)))
    msg = str(err.value)
    assert "\n" not in msg
    assert "image 42: field 'features': expected shape (n, 2048), got (36, 1024)" in msg
    with pytest.raises(VlpError, match=r"image 42: field 'boxes': expected shape \(36, 4\)"):
        writer.add(42, 64, 64, np.zeros((36, 2048)), np.zeros((35, 4)), np.zeros((36, 5)))
    writer.abort()
    assert not (tmp_path / "s").exists()


def test_bad_values_and_duplicates(tmp_path: Path, regions: list[Regions]) -> None:
    r = regions[0]
    with RegionStoreWriter(tmp_path / "s", DIM, CLASSES) as writer:
        writer.add(r.image_id, r.width, r.height, r.features, r.boxes, r.cls_probs)
        with pytest.raises(VlpError, match="image 7: duplicate image id"):
            writer.add(r.image_id, r.width, r.height, r.features, r.boxes, r.cls_probs)
        bad = r.boxes.copy()
        bad[0, 1] = np.nan
        with pytest.raises(VlpError, match="image 8: field 'boxes': non-finite value .* row 0"):
            writer.add(8, r.width, r.height, r.features, bad, r.cls_probs)
        with pytest.raises(VlpError, match="image 9: field 'features': no regions"):
            writer.add(9, 10, 10, np.zeros((0, DIM)), np.zeros((0, 4)), np.zeros((0, 5)))
        with pytest.raises(VlpError, match="float16 range"):
            writer.add(10, 10, 10, r.features * 1e6, r.boxes, r.cls_probs)
    assert RegionStore.open(tmp_path / "s").image_ids.tolist() == [7]


def test_unknown_image_id(tmp_path: Path, regions: list[Regions]) -> None:
    root = write_store(tmp_path / "store", regions)
    store = RegionStore.open(root)
    with pytest.raises(VlpError, match=f"{root}: no regions for image 999"):
        store.get(999)
    with pytest.raises(VlpError, match="image 999"):
        store.num_regions(999)


# ----------------------------------------------------------------------------- TSV


def b64(arr: np.ndarray) -> str:
    return base64.b64encode(arr.tobytes()).decode("ascii")


def lxmert_row(r: Regions, name: str, ids: np.ndarray, conf: np.ndarray) -> list[str]:
    n = len(r)
    return [name, str(r.height), str(r.width), b64(ids.astype(np.int64)),
            b64(conf.astype(np.float32)), b64(np.zeros(n, np.int64)),
            b64(np.zeros(n, np.float32)), str(n), b64(r.boxes), b64(r.features)]


def write_tsv(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("".join("\t".join(row) + "\n" for row in rows))
    return path


def test_lxmert_tsv_round_trip(tmp_path: Path, regions: list[Regions]) -> None:
    rng = np.random.default_rng(1)
    rows, wanted = [], []
    for r in regions:
        ids, conf = rng.integers(0, 1600, len(r)), rng.uniform(0.2, 1.0, len(r))
        rows.append(lxmert_row(r, f"COCO_val2014_{r.image_id:012d}", ids, conf))
        wanted.append((r, ids, conf))
    src = write_tsv(tmp_path / "feats.tsv", rows)
    got = list(read_butd_tsv(src))
    assert [g.image_id for g in got] == [r.image_id for r in regions]
    for g, (r, ids, conf) in zip(got, wanted, strict=True):
        assert g.cls_probs.shape == (len(r), 1600)
        np.testing.assert_allclose(g.cls_probs.sum(1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(g.cls_probs.argmax(1), ids)
        np.testing.assert_allclose(g.cls_probs.max(1), conf, rtol=1e-6)
        assert_same(g, Regions(r.image_id, r.width, r.height, r.features, r.boxes,
                               g.cls_probs), 0.0)
    store = RegionStore.open(import_butd_tsv(src, tmp_path / "store", dtype="float32",
                                             progress=False))
    assert store.num_classes == 1600 and store.feature_dim == DIM
    assert_same(store.get(42), got[2], 0.0)


def test_butd_original_tsv(tmp_path: Path, regions: list[Regions]) -> None:
    rows6 = [[str(r.image_id), str(r.width), str(r.height), str(len(r)), b64(r.boxes),
              b64(r.features)] for r in regions]
    got = list(read_butd_tsv(write_tsv(tmp_path / "b6.tsv", rows6)))
    for g, r in zip(got, regions, strict=True):
        assert g.cls_probs.shape == (len(r), 0)
        assert_same(g, Regions(r.image_id, r.width, r.height, r.features, r.boxes,
                               g.cls_probs), 0.0)
    rows7 = [[*row, b64(r.cls_probs)] for row, r in zip(rows6, regions, strict=True)]
    got7 = list(read_butd_tsv(write_tsv(tmp_path / "b7.tsv", rows7)))
    for g, r in zip(got7, regions, strict=True):
        assert_same(g, r, 0.0)
    store = RegionStore.open(import_butd_tsv(tmp_path / "b6.tsv", tmp_path / "s",
                                             progress=False))
    assert store.num_classes == 0 and len(store) == 5


def test_tsv_errors_name_file_line_field(tmp_path: Path, regions: list[Regions]) -> None:
    rows = [[str(r.image_id), str(r.width), str(r.height), str(len(r)), b64(r.boxes),
             b64(r.features)] for r in regions[:3]]
    n = len(regions[1])
    rows[1][4] = b64(regions[1].boxes)[:-8] + "!!!!!!!!"
    src = write_tsv(tmp_path / "bad.tsv", rows)
    with pytest.raises(VlpError, match=r"bad\.tsv: field 'boxes': line 2: invalid base64"):
        list(read_butd_tsv(src))
    rows[1][4] = b64(regions[1].boxes.reshape(-1)[:-1])
    with pytest.raises(VlpError) as err:
        list(read_butd_tsv(write_tsv(src, rows)))
    assert str(err.value) == (f"{src}: field 'boxes': line 2: expected num_boxes×4 float32 "
                              f"= {n * 16} bytes, got {n * 16 - 4}")
    with pytest.raises(VlpError, match=r"line 1: expected 6 \(BUTD\).*got 3"):
        list(read_butd_tsv(write_tsv(src, [["1", "2", "3"]])))


def test_parse_image_id_and_distribution() -> None:
    assert parse_image_id("COCO_val2014_000000060623") == 60623
    assert parse_image_id("2345678") == 2345678
    with pytest.raises(ValueError):
        parse_image_id("abc")
    probs = distribution_from_argmax(np.array([2, 0]), np.array([0.7, 1.0]), 4)
    np.testing.assert_allclose(probs, [[0.1, 0.1, 0.7, 0.1], [1, 0, 0, 0]], rtol=1e-6)


# ----------------------------------------------------------------------------- npz


def test_npz_dir_both_conventions(tmp_path: Path, regions: list[Regions]) -> None:
    pba, simple = tmp_path / "pba", tmp_path / "simple"
    pba.mkdir()
    simple.mkdir()
    for r in regions:
        info = {"objects_id": r.cls_probs.argmax(1), "objects_conf": r.cls_probs.max(1),
                "cls_prob": r.cls_probs}
        np.savez_compressed(pba / f"COCO_train2014_{r.image_id:012d}.npz",
                            x=r.features.T, bbox=r.boxes, num_bbox=len(r),
                            image_h=r.height, image_w=r.width, info=info)
        np.savez(simple / f"{r.image_id}.npz", features=r.features, boxes=r.boxes,
                 cls_prob=r.cls_probs, width=r.width, height=r.height)
    by_id = {r.image_id: r for r in regions}
    for got in (list(read_npz_dir(pba)), list(read_npz_dir(simple))):
        assert sorted(g.image_id for g in got) == sorted(by_id)
        for g in got:
            assert_same(g, by_id[g.image_id], 0.0)
    no_info = list(read_npz_dir(pba, load_info=False))
    assert no_info[0].cls_probs.shape[1] == 0
    store = RegionStore.open(import_npz_dir(pba, tmp_path / "s", progress=False))
    assert store.num_classes == CLASSES and store.image_ids.tolist() == [3, 5, 7, 11, 42]
    assert_same(store.get(5), by_id[5], 2e-3)


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "img_1.npz", x=np.zeros((3, 8)), bbox=np.zeros((3, 4)), num_bbox=5,
             image_h=10, image_w=10)
    with pytest.raises(VlpError, match=r"img_1\.npz: field 'x': expected shape"):
        list(read_npz_dir(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VlpError, match="no .npz files"):
        list(read_npz_dir(tmp_path / "empty"))
    (tmp_path / "img_1.npz").write_bytes(b"not a zip")
    with pytest.raises(VlpError, match=r"img_1\.npz: not a readable \.npz \(zip\) file") as err:
        list(read_npz_dir(tmp_path))
    assert "pickle" not in str(err.value)  # not "holds pickled data", no unsafe hint


def test_build_store_from_store(tmp_path: Path, regions: list[Regions]) -> None:
    store = RegionStore.open(write_store(tmp_path / "a", regions, "float32"))
    copy = RegionStore.open(build_store(store.regions(), tmp_path / "b", dtype="float32"))
    assert copy.image_ids.tolist() == store.image_ids.tolist()
    assert_same(copy.get(7), store.get(7), 0.0)
    with pytest.raises(VlpError, match="no images"):
        build_store([], tmp_path / "c")
    assert not (tmp_path / "c").exists()


# ----------------------------------------------------------------------------- safety


class _Touch:
    """An ``info`` entry whose unpickling would create ``path`` (os.system)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.path}",)


def save_pba(path: Path, r: Regions, info: object) -> Path:
    np.savez(path, x=r.features.T, bbox=r.boxes, num_bbox=len(r), image_h=r.height,
             image_w=r.width, info=np.array(info, dtype=object))
    return path


def test_hostile_npz_info_runs_nothing(tmp_path: Path, regions: list[Regions]) -> None:
    src, marker = tmp_path / "src", tmp_path / "pwned"
    src.mkdir()
    save_pba(src / "1.npz", regions[0], {"cls_prob": regions[0].cls_probs,
                                         "extra": _Touch(marker)})
    with pytest.raises(VlpError) as err:
        import_npz_dir(src, tmp_path / "out", progress=False)
    assert str(err.value).startswith(f"{src / '1.npz'}: field 'info': refused to unpickle: "
                                     "it calls posix.system")
    assert not marker.exists() and not (tmp_path / "out").exists()
    # load_info=False never touches it
    assert next(read_npz_dir(src, load_info=False)).cls_probs.shape == (len(regions[0]), 0)


def test_npz_info_numpy_scalars(tmp_path: Path, regions: list[Regions]) -> None:
    r = regions[0]
    info = {"objects_id": r.cls_probs.argmax(1), "objects_conf": r.cls_probs.max(1),
            "image_h": np.int64(r.height), "note": ("a", b"b", {1})}
    save_pba(tmp_path / "7.npz", r, info)
    got = next(read_npz_dir(tmp_path, num_classes=CLASSES))
    np.testing.assert_array_equal(got.cls_probs.argmax(1), r.cls_probs.argmax(1))


def test_npz_object_array_and_strings_refused(tmp_path: Path, regions: list[Regions]) -> None:
    r = regions[0]
    np.savez(tmp_path / "1.npz", features=np.array([r.features], dtype=object), boxes=r.boxes,
             width=10, height=10)
    with pytest.raises(VlpError, match=r"1\.npz: field 'features': holds pickled Python "
                       "objects, which are not loaded"):
        list(read_npz_dir(tmp_path))
    np.savez(tmp_path / "1.npz", features=r.features.astype(str), boxes=r.boxes, width=10,
             height=10)
    with pytest.raises(VlpError, match=r"1\.npz: field 'features': expected a numeric array, "
                       "got dtype <U"):
        list(read_npz_dir(tmp_path))


def test_tsv_not_utf8_and_directory(tmp_path: Path) -> None:
    src = tmp_path / "latin1.tsv"
    src.write_bytes(b"1\t10\t10\t1\tcaf\xe9\tAAAA\n")
    with pytest.raises(VlpError, match=r"latin1\.tsv: line 1: not UTF-8 text \(byte 0xe9\)"):
        list(read_butd_tsv(src))
    with pytest.raises(VlpError, match="is a directory; expected a TSV file"):
        list(read_butd_tsv(tmp_path))
    with pytest.raises(VlpError, match="is a file; expected a directory of .npz files"):
        list(read_npz_dir(src))


def tsv6(regions: list[Regions]) -> list[list[str]]:
    return [[str(r.image_id), str(r.width), str(r.height), str(len(r)), b64(r.boxes),
             b64(r.features)] for r in regions]


def test_colliding_ids_name_both_sources(tmp_path: Path, regions: list[Regions]) -> None:
    rows = tsv6(regions[:3])
    rows[2][0] = f"COCO_val2014_{regions[0].image_id:012d}"
    with pytest.raises(VlpError, match=r"field 'image_id': line 3: image id 7 is also the id "
                       "of line 1"):
        list(read_butd_tsv(write_tsv(tmp_path / "d.tsv", rows)))
    src = tmp_path / "npz"
    src.mkdir()
    for name in ("1.npz", "img_000001.npz"):
        r = regions[0]
        np.savez(src / name, features=r.features, boxes=r.boxes, width=r.width,
                 height=r.height)
    with pytest.raises(VlpError) as err:
        list(read_npz_dir(src))
    assert str(err.value).startswith(f"{src / 'img_000001.npz'}: image id 1 is also the id "
                                     f"of {src / '1.npz'}")


def test_feature_size_must_agree(tmp_path: Path, regions: list[Regions]) -> None:
    rows = tsv6(regions[:2])
    rows[1][5] = b64(np.zeros((len(regions[1]), DIM + 2), np.float32))
    with pytest.raises(VlpError, match=r"field 'features': line 2: expected 16 features per "
                       r"region \(as in line 1\), got 18"):
        list(read_butd_tsv(write_tsv(tmp_path / "d.tsv", rows)))


def test_boxes_outside_warned_once(tmp_path: Path, regions: list[Regions]) -> None:
    rows = tsv6(regions)
    for i in (1, 3):
        boxes = regions[i].boxes.copy()
        boxes[0] = [5, 5, 1, 9] if i == 1 else [-20, 0, 10, 10]  # inverted, outside
        rows[i][4] = b64(boxes)
    src = write_tsv(tmp_path / "w.tsv", rows)
    with pytest.warns(DataWarning) as record:
        got = list(read_butd_tsv(src))
    assert len(got) == 5 and len(record) == 1
    msg = str(record[0].message)
    assert msg.startswith(f"{src}: field 'boxes': 1 of {sum(len(r) for r in regions)} boxes "
                          "lie outside their image and 1 are inverted")
    assert "image 3 region 0: (5, 5, 1, 9)" in msg and "image 11 region 0: (-20" in msg
    with strict_mode(), pytest.raises(VlpError, match="boxes lie outside.*strict mode"):
        import_butd_tsv(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_store_size_checked_on_open(tmp_path: Path, regions: list[Regions]) -> None:
    root = write_store(tmp_path / "store", regions)
    path = root / "boxes.npy"
    data = path.read_bytes()
    path.write_bytes(data + b"\0" * 16)
    with pytest.raises(VlpError, match=r"boxes\.npy: .* bytes, expected .*the file is padded"):
        RegionStore.open(root)
    path.write_bytes(data[:-16])
    with pytest.raises(VlpError, match=r"boxes\.npy: .*the file is truncated; rebuild"):
        RegionStore.open(root)


def test_meta_needs_every_checksum(tmp_path: Path, regions: list[Regions]) -> None:
    root = write_store(tmp_path / "store", regions)
    meta = json.loads((root / "meta.json").read_text())
    del meta["sha256"]["index.npy"]
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(VlpError, match=r"meta\.json: field 'sha256\.index\.npy': missing"):
        RegionStore.open(root)


def test_verify_store(tmp_path: Path, regions: list[Regions]) -> None:
    root = write_store(tmp_path / "store", regions)
    assert verify_store(root) == []
    path = root / "features.npy"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))
    assert verify_store(root) == [f"{path}: checksum mismatch with meta.json (the file is "
                                  "corrupt or was changed); rebuild the store"]
    (root / "boxes.npy").unlink()
    problems = verify_store(root)
    assert len(problems) == 2 and "boxes.npy: missing" in problems[0]
    assert verify_store(tmp_path / "nothing") == [f"{tmp_path / 'nothing'}: no such region "
                                                  "store directory"]


def test_overwrite_protection(tmp_path: Path, regions: list[Regions]) -> None:
    root = write_store(tmp_path / "store", regions[:2])
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    with pytest.raises(VlpError, match=r"store: already exists and is not empty.*--overwrite"):
        RegionStoreWriter(root, DIM, CLASSES)
    with pytest.raises(VlpError, match="already exists"):
        build_store(iter(regions), root)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    build_store(regions, root, overwrite=True, dtype="float32")
    assert len(RegionStore.open(root, verify=True)) == 5
    (tmp_path / "file").write_text("x")
    with pytest.raises(VlpError, match="exists and is not a directory"):
        RegionStoreWriter(tmp_path / "file", DIM, CLASSES, overwrite=True)
    assert (tmp_path / "file").read_text() == "x"


def test_importer_output_apart_from_input(tmp_path: Path, regions: list[Regions]) -> None:
    src = tmp_path / "npz"
    src.mkdir()
    for r in regions:
        np.savez(src / f"{r.image_id}.npz", features=r.features, boxes=r.boxes,
                 width=r.width, height=r.height)
    tsv = write_tsv(tmp_path / "f.tsv", tsv6(regions))
    for out, source, fn in ((src, src, import_npz_dir), (src / "sub", src, import_npz_dir),
                            (tmp_path, src, import_npz_dir), (tsv, tsv, import_butd_tsv)):
        with pytest.raises(VlpError, match="the output (is|is inside|holds) the input"):
            fn(source, out, progress=False, overwrite=True)
    assert sorted(p.name for p in src.iterdir()) == sorted(f"{r.image_id}.npz" for r in regions)
    assert tsv.is_file()


def test_imports_are_repeatable(tmp_path: Path, regions: list[Regions]) -> None:
    tsv = write_tsv(tmp_path / "f.tsv", tsv6(regions))
    a = import_butd_tsv(tsv, tmp_path / "a", progress=False)
    b = import_butd_tsv(tsv, tmp_path / "sub" / "b", progress=False)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
