"""``braggflow find-peaks``: CLI end to end, statistics, bad input, MPI, external engines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from braggflow.cli import main as cli
from braggflow.config import validate_config
from braggflow.errors import MissingToolError
from braggflow.formats.cxi import PeakTable, read_cxi_peaks
from braggflow.formats.frames import write_frames
from braggflow.formats.geometry import read_geom
from braggflow.peakfinder8 import match_fraction

DEFAULTS = validate_config({})["find_peaks"]


def _params(**over) -> str:
    return json.dumps({**DEFAULTS, **over})


def _run(tmp: Path, frames: Path, geometry: Path, capsys=None, **over) -> tuple[int, Path, str]:
    out = tmp / "peaks" / f"{frames.stem}.cxi"
    code = cli(
        [
            "find-peaks",
            "--params",
            _params(**over),
            "--frames",
            str(frames),
            "--geometry",
            str(geometry),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err if capsys is not None else ""
    return code, out, err


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    from braggflow.simulate import quick_experiment

    return quick_experiment(tmp_path_factory.mktemp("fp"), n_frames=10, seed=5)


def test_cli_writes_peaks_stats_and_links(experiment, tmp_path):
    code, out, _ = _run(tmp_path, experiment["frames"], experiment["geometry"])
    assert code == 0
    tables = read_cxi_peaks(out)
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert len(tables) == stats["frames"] == 10
    assert stats["peaks_per_frame"] == [len(t) for t in tables]
    assert stats["frames_skipped"] == 0 and stats["engine"] == "builtin"
    assert stats["parameters"]["min_snr"] == DEFAULTS["min_snr"]
    with h5py.File(out, "r") as h5:
        assert h5["/entry_1/data_1/data"].shape[0] == 10  # external link to the frames
        assert "braggflow_provenance" in h5.attrs
    # against ground truth, with the config's default parameters (tuned on this experiment)
    from braggflow.simulate.truth import read_truth

    truth = read_truth(experiment["truth"])
    m = np.zeros(3)
    for i, found in enumerate(tables):
        r = truth.reflections_in(i, visible_only=True)
        m += match_fraction(found, PeakTable(fs=r["fs"], ss=r["ss"]), 2.0)
    precision, recall = m[0] / m[1], m[0] / m[2]
    assert precision > 0.85 and recall > 0.8, (precision, recall)


def test_bad_frames_are_skipped_and_counted(experiment, tmp_path):
    geom = read_geom(experiment["geometry"])
    from braggflow.formats.frames import FrameSource

    with FrameSource(experiment["frames"], geom) as src:
        frames = np.stack([src.read(i) for i in range(4)])
        mask = src.mask
    frames[1] = 0.0  # detector dropout
    frames[2] = np.nan  # all NaN
    frames[3, :5, :5] = np.inf  # a few bad pixels: searched, counted
    path = write_frames(tmp_path / "bad.cxi", frames, mask, 9500.0, 0.035)
    code, out, _ = _run(tmp_path, path, experiment["geometry"])
    assert code == 0
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert stats["frames"] == 4 and stats["frames_skipped"] == 2
    assert stats["skipped_by_reason"] == {"constant": 1, "nonfinite": 1}
    assert [s["frame"] for s in stats["skipped_frames"]] == [1, 2]
    assert stats["nonfinite_pixels"] >= 25
    tables = read_cxi_peaks(out)
    assert len(tables) == 4 and len(tables[1]) == len(tables[2]) == 0
    assert all(np.isfinite(t.intensity).all() for t in tables)


def test_corrupt_chunk_skips_only_that_frame(experiment, tmp_path):
    geom = read_geom(experiment["geometry"])
    from braggflow.formats.frames import FrameSource

    with FrameSource(experiment["frames"], geom) as src:
        frames = np.stack([src.read(i) for i in range(3)])
    path = write_frames(tmp_path / "chunked.cxi", frames, None, 9500.0, 0.035, compression="gzip")
    with h5py.File(path, "r") as h5:
        info = h5["/entry_1/data_1/data"].id.get_chunk_info(1)
    with open(path, "r+b") as fh:  # garble frame 1's compressed chunk
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * min(info.size, 4096))
    code, out, _ = _run(tmp_path, path, experiment["geometry"])
    assert code == 0
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert stats["skipped_by_reason"] == {"unreadable": 1}
    assert stats["skipped_frames"][0]["frame"] == 1


@pytest.mark.parametrize("damage", ["junk", "truncated"])
def test_corrupt_or_truncated_file_is_one_line_error(experiment, tmp_path, capsys, damage):
    path = tmp_path / "broken.cxi"
    if damage == "junk":
        path.write_bytes(b"this is not an HDF5 file" * 100)
    else:
        data = Path(experiment["frames"]).read_bytes()
        path.write_bytes(data[: len(data) // 3])
    code, out, err = _run(tmp_path, path, experiment["geometry"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "broken.cxi" in lines[0]
    assert not out.exists()


def test_geometry_not_matching_the_data_is_one_line_error(experiment, tmp_path, capsys):
    text = Path(experiment["geometry"]).read_text()
    big = tmp_path / "big.geom"
    big.write_text(
        text + "\nextra/min_fs = 0\nextra/max_fs = 9\nextra/min_ss = 5000\nextra/max_ss = 5009\n"
    )
    code, out, err = _run(tmp_path, experiment["frames"], big, capsys)
    assert code == 2
    assert "geometry needs at least" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_mpi_ranks_give_identical_output(experiment, tmp_path):
    launcher = shutil.which("braggflow-launch") or str(
        Path(sys.executable).parent / "braggflow-launch"
    )
    outs = []
    for n in (1, 2):
        out = tmp_path / f"n{n}" / "r.cxi"
        cmd = [
            launcher,
            "mpi",
            "-n",
            str(n),
            "--",
            "braggflow",
            "find-peaks",
            "--params",
            _params(batch_frames=3),
        ]
        cmd += [
            "--frames",
            str(experiment["frames"]),
            "--geometry",
            str(experiment["geometry"]),
            "--out",
            str(out),
        ]
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        subprocess.run(cmd, check=True, env=env, timeout=300)
        outs.append(out)
    a, b = (read_cxi_peaks(o) for o in outs)
    for x, y in zip(a, b, strict=True):
        for col in ("fs", "ss", "intensity", "max_intensity", "npix", "snr"):
            assert np.array_equal(getattr(x, col), getattr(y, col))
    assert json.loads(outs[1].with_suffix(".stats.json").read_text())["ranks"] == 2


FAKE_INDEXAMAJIG = r"""#!{python}
import json, sys
from pathlib import Path
args = sys.argv[1:]
Path({record!r}).write_text(json.dumps(args))
out = Path(args[args.index("-o") + 1])
lines = ["CrystFEL stream format 2.3", "Generated by fake indexamajig", "indexamajig " + " ".join(args)]
for event, peaks in ((0, [(10.5, 20.5, 2.0, 150.0)]), (2, [(30.5, 40.5, 3.0, 99.0), (50.5, 60.5, 1.5, 42.0)])):
    lines += ["----- Begin chunk -----", "Image filename: frames.cxi", f"Event: //{{event}}",
              f"Image serial number: {{event + 1}}", "hit = 1", "indexed_by = none",
              f"num_peaks = {{len(peaks)}}", "Peaks from peak search",
              "  fs/px   ss/px (1/d)/nm^-1   Intensity  Panel"]
    lines += [f"{{fs:7.2f}} {{ss:7.2f}} {{d:10.2f}} {{i:11.2f}}   m0a0" for fs, ss, d, i in peaks]
    lines += ["End of peak list", "----- End chunk -----"]
out.write_text("\n".join(lines) + "\n")
"""


def _fake_tool(tmp_path: Path, name: str, body: str, monkeypatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    tool = bindir / name
    tool.write_text(body)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return tool


def test_crystfel_engine_runs_indexamajig_and_reads_its_stream(experiment, tmp_path, monkeypatch):
    pytest.importorskip("braggflow.formats.stream", reason="stream reader not available")
    record = tmp_path / "args.json"
    _fake_tool(
        tmp_path,
        "indexamajig",
        FAKE_INDEXAMAJIG.format(python=sys.executable, record=str(record)),
        monkeypatch,
    )
    code, out, _ = _run(
        tmp_path, experiment["frames"], experiment["geometry"], engine="crystfel", min_snr=5.5
    )
    assert code == 0
    args = json.loads(record.read_text())
    assert "--peaks=peakfinder8" in args and "--min-snr=5.5" in args and "--indexing=none" in args
    assert f"--threshold={DEFAULTS['adc_threshold']:g}" in args
    assert args[args.index("-g") + 1] == str(Path(experiment["geometry"]).resolve())
    tables = read_cxi_peaks(out)
    assert [len(t) for t in tables] == [1, 0, 2] + [0] * 7
    assert tables[0].fs[0] == pytest.approx(10.0) and tables[0].ss[0] == pytest.approx(20.0)  # -0.5
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert stats["engine"] == "crystfel" and stats["peaks_total"] == 3


def test_crystfel_engine_missing_is_a_clear_error_before_work(experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no indexamajig anywhere
    from braggflow.peakfinder8 import engines

    with pytest.raises(
        MissingToolError, match="indexamajig not found.*find_peaks.crystfel.executable.*builtin"
    ):
        engines.require_tool("indexamajig", "find_peaks.crystfel.executable")


def test_cheetah_engine_runs_the_command_template(experiment, tmp_path, monkeypatch):
    script = f"""#!{sys.executable}
import sys, numpy as np
from braggflow.formats.cxi import PeakTable, write_cxi_peaks
frames, out, snr = sys.argv[1], sys.argv[2], float(sys.argv[3])
write_cxi_peaks(out, [PeakTable(fs=[5.0], ss=[6.0], intensity=[snr])] * 10)
"""
    _fake_tool(tmp_path, "cheetah-pf8", script, monkeypatch)
    cheetah = {"command": "cheetah-pf8 {frames} {out} {min_snr}"}
    code, out, _ = _run(
        tmp_path, experiment["frames"], experiment["geometry"], engine="cheetah", cheetah=cheetah
    )
    assert code == 0
    tables = read_cxi_peaks(out)
    assert len(tables) == 10 and tables[3].intensity[0] == pytest.approx(DEFAULTS["min_snr"])


def test_cheetah_engine_without_command_or_tool(experiment, tmp_path, capsys, monkeypatch):
    code, _, err = _run(
        tmp_path, experiment["frames"], experiment["geometry"], capsys, engine="cheetah"
    )
    assert code == 2 and "find_peaks.cheetah.command is not set" in err
    monkeypatch.setenv("PATH", str(tmp_path))
    cheetah = {"command": "no-such-cheetah {frames} {out}"}
    code, _, err = _run(
        tmp_path,
        experiment["frames"],
        experiment["geometry"],
        capsys,
        engine="cheetah",
        cheetah=cheetah,
    )
    assert code == 2 and "no-such-cheetah not found" in err
