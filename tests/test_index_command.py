"""``braggflow index`` end to end: built-in engine on a simulated run, crystfel engine up to the
process boundary (a fake indexamajig on PATH), bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from braggflow.cli import main as cli_main
from braggflow.evaluation.orientation import misorientation_deg
from braggflow.formats.cxi import PeakTable, write_cxi_peaks
from braggflow.formats.geometry import read_geom
from braggflow.formats.stream import (
    Chunk,
    Crystal,
    PeakList,
    ReflectionList,
    Stream,
    read_stream,
    unknown_panels,
    write_stream,
)

N_FRAMES = 12
BUILTIN = json.dumps({"engine": "builtin", "builtin": {"search": "targeted"}})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small simulated run and a peak file holding its truly visible spots (0.3 px noise)."""
    from braggflow.simulate import quick_experiment, read_truth

    out = tmp_path_factory.mktemp("index_run")
    exp = quick_experiment(out, n_frames=N_FRAMES, seed=11)
    truth = read_truth(exp["truth"], footprint=False)
    rng = np.random.default_rng(0)
    tables = []
    for i in range(truth.n_frames):
        r = truth.reflections_in(i, visible_only=True)
        n = r["fs"].size
        tables.append(
            PeakTable(
                fs=r["fs"] + rng.normal(0, 0.3, n),
                ss=r["ss"] + rng.normal(0, 0.3, n),
                intensity=r["photons"],
            )
        )
    peaks = out / "peaks.cxi"
    write_cxi_peaks(peaks, tables, frames_path=exp["frames"])
    return {**exp, "peaks": peaks, "truth_obj": truth, "n_peaks": [len(t) for t in tables]}


def _args(run, out: Path, params: str, threads: int = 1, **paths) -> list[str]:
    p = {k: str(run[k]) for k in ("peaks", "frames", "geometry", "cell")}
    p.update({k: str(v) for k, v in paths.items()})
    return [
        "index",
        "--params",
        params,
        "--peaks",
        p["peaks"],
        "--frames",
        p["frames"],
        "--geometry",
        p["geometry"],
        "--cell",
        p["cell"],
        "--out",
        str(out),
        "--threads",
        str(threads),
    ]


@pytest.mark.slow
def test_builtin_engine_writes_stream_summary_and_provenance(run, tmp_path):
    out = tmp_path / "r0000.stream"
    assert cli_main(_args(run, out, BUILTIN, threads=2)) == 0
    stream = read_stream(out)
    summary = json.loads(Path(str(out) + ".json").read_text())
    assert Path(str(out) + ".provenance.json").is_file()
    truth = run["truth_obj"]
    assert len(stream.chunks) == N_FRAMES == summary["frames"]
    assert [c.frame_index for c in stream.chunks] == list(range(N_FRAMES))
    hits = [i for i, n in enumerate(run["n_peaks"]) if n >= 10]
    assert summary["hits"] == len(hits)
    assert summary["indexed"] + sum(summary["not_indexed"].values()) == summary["hits"]
    assert unknown_panels(stream, read_geom(run["geometry"])) == set()
    n_good = 0
    for chunk in stream.chunks:
        i = chunk.frame_index
        assert len(chunk.peaks) == run["n_peaks"][i]
        if not truth.has_crystal[i]:
            assert not chunk.crystals, f"blank frame {i} indexed"
            continue
        if chunk.crystals:
            cr = chunk.crystals[0]
            err = min(misorientation_deg(b, cr.reciprocal_matrix_nm) for b in truth.lattices_in(i))
            assert err < 1.0
            assert cr.cell[0] == pytest.approx(79.1, rel=0.01) and cr.cell[2] == pytest.approx(
                38.0, rel=0.01
            )
            assert len(cr.reflections) > 0 and np.any(cr.reflections.sigma > 0)  # ring-integrated
            n_good += 1
    true_hits = [i for i in range(N_FRAMES) if truth.has_crystal[i] and truth.n_visible[i] >= 20]
    assert n_good >= 0.85 * len(true_hits)
    assert summary["indexed"] == sum(1 for c in stream.chunks if c.crystals)


def test_frame_with_bad_photon_energy_is_skipped_and_counted(run, tmp_path):
    frames = tmp_path / "frames.cxi"
    shutil.copy(run["frames"], frames)
    with h5py.File(frames, "r+") as h5:
        h5["/LCLS/photon_energy_eV"][3] = np.nan
    out = tmp_path / "bad.stream"
    no_hits = json.dumps({"engine": "builtin", "min_peaks": 10000})  # skip the indexing work
    assert cli_main(_args(run, out, no_hits, frames=frames)) == 0
    summary = json.loads(Path(str(out) + ".json").read_text())
    assert summary["skipped"] == {"bad_photon_energy": 1}
    stream = read_stream(out)
    assert len(stream.chunks) == N_FRAMES - 1 and 3 not in [c.frame_index for c in stream.chunks]


def test_corrupt_peak_file_is_a_one_line_error(run, tmp_path, capsys):
    bad = tmp_path / "peaks.cxi"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    out = tmp_path / "x.stream"
    assert cli_main(_args(run, out, BUILTIN, peaks=bad)) == 2
    err = capsys.readouterr().err.strip()
    assert "peaks.cxi" in err and len(err.splitlines()) == 1
    assert not out.exists()


FAKE_INDEXAMAJIG = """#!{python}
import json, shutil, sys
argv = sys.argv[1:]
with open({record!r}, "w") as fh:
    json.dump(argv, fh)
out = argv[argv.index("-o") + 1]
lst = argv[argv.index("-i") + 1]
geom = argv[argv.index("-g") + 1]
shutil.copy(lst, {record!r} + ".lst")
shutil.copy(geom, {record!r} + ".geom")
shutil.copy({stream!r}, out)
print("fake indexamajig: done", file=sys.stderr)
"""


def test_crystfel_engine_runs_indexamajig_and_parses_its_stream(run, tmp_path, monkeypatch):
    # the stream indexamajig "writes": one chunk per frame, every other frame indexed
    ref = tmp_path / "ref.stream"
    crystal = Crystal(
        astar=np.array([0.1264, 0.0, 0.0]),
        bstar=np.array([0.0, 0.1264, 0.0]),
        cstar=np.array([0.0, 0.0, 0.2632]),
        reflections=ReflectionList.empty(),
    )
    chunks = [
        Chunk(
            filename=str(run["peaks"]),
            event=f"//{i}",
            serial=i + 1,
            hit=1,
            photon_energy_ev=9500.0,
            peaks=PeakList.empty(),
            crystals=[crystal] if i % 2 == 0 else [],
        )
        for i in range(N_FRAMES)
    ]
    write_stream(ref, Stream(chunks=chunks, audit=["Generated by CrystFEL 0.12.0"]))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "argv.json"
    fake = bindir / "indexamajig"
    fake.write_text(
        FAKE_INDEXAMAJIG.format(python=sys.executable, record=str(record), stream=str(ref))
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    params = json.dumps(
        {
            "engine": "crystfel",
            "min_peaks": 12,
            "length_tolerance_pct": 4.0,
            "crystfel": {
                "method": "asdf",
                "no_image_data": True,
                "extra_args": ["--int-radius=2,3,4"],
            },
        }
    )
    out = tmp_path / "cf.stream"
    assert cli_main(_args(run, out, params, threads=3)) == 0
    argv = json.loads(record.read_text())
    assert "--peaks=cxi" in argv and "--indexing=asdf" in argv and "--no-revalidate" in argv
    assert "--no-image-data" in argv and "--int-radius=2,3,4" in argv and "--min-peaks=12" in argv
    assert argv[argv.index("-j") + 1] == "3"
    assert argv[argv.index("-p") + 1] == str(Path(run["cell"]).resolve())
    assert "--tolerance=4,4,4,1.5,1.5,1.5" in argv
    lines = Path(str(record) + ".lst").read_text().splitlines()
    assert lines == [f"{Path(run['peaks']).resolve()} //{i}" for i in range(N_FRAMES)]
    geom_text = Path(str(record) + ".geom").read_text()
    assert "peak_list = /entry_1/result_1" in geom_text and "peak_list_type = cxi" in geom_text
    assert read_geom(Path(str(record) + ".geom")).panels == read_geom(run["geometry"]).panels
    # its stream is published unchanged and summarised by the one parser
    assert out.read_text() == ref.read_text()
    summary = json.loads(Path(str(out) + ".json").read_text())
    assert summary["engine"] == "crystfel" and summary["command"][0].endswith("indexamajig")
    assert (summary["frames"], summary["hits"], summary["indexed"]) == (
        N_FRAMES,
        N_FRAMES,
        N_FRAMES // 2,
    )


def test_missing_indexamajig_fails_before_any_work(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "none.stream"
    params = json.dumps({"engine": "crystfel", "crystfel": {"executable": "indexamajig"}})
    assert cli_main(_args(run, out, params)) == 2
    err = capsys.readouterr().err
    assert "indexamajig" in err and "index.engine" in err and "builtin" in err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp folder
