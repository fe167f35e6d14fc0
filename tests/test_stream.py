"""CrystFEL streams: real fixtures (CrystFEL 0.9), both dialects, round trips, truncated streams."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from braggflow.errors import InputError
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

# MANIFEST.md: chunks, crystals, found peaks, predicted reflections
FIXTURES = {
    "cspad_5ht2b_lcls2013.stream": (70, 32, 2172, 7966),
    "rayonix_lysozyme_palxfel2018.stream": (3, 3, 107, 618),
}


def _fixture(shared_fixtures: Path, name: str) -> Path:
    return shared_fixtures / "streams" / name


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_counts_match_manifest(shared_fixtures, name):
    stream = read_stream(_fixture(shared_fixtures, name))
    c = stream.counts()
    assert (c["chunks"], c["crystals"], c["peaks"], c["reflections"]) == FIXTURES[name]
    assert c["skipped_chunks"] == 0
    assert stream.format_version == "2.3"
    assert stream.geometry_text and stream.cell_text
    # num_peaks / num_reflections lines agree with what was parsed
    for chunk in stream.chunks:
        assert chunk.num_peaks == len(chunk.peaks)


def test_cspad_first_chunk_values(shared_fixtures):
    stream = read_stream(_fixture(shared_fixtures, "cspad_5ht2b_lcls2013.stream"))
    ch = stream.chunks[0]
    assert ch.filename == "r0092-ab/data1/LCLS_2013_Mar22_r0092_035103_1824f.h5"
    assert ch.serial == 1 and ch.hit == 1 and ch.event is None
    assert ch.indexed_by == "xgandalf-nolatt-cell"
    assert ch.photon_energy_ev == pytest.approx(9511.868397)
    assert ch.average_camera_length_m == pytest.approx(0.152001)
    assert ch.headers["hdf5/LCLS/detector0-EncoderValue"] == "-429.998810"
    # stream 33.50 10.98 -> braggflow (pixel centre at integer) 33.0 10.48
    assert ch.peaks.fs[0] == pytest.approx(33.0)
    assert ch.peaks.ss[0] == pytest.approx(10.48)
    assert ch.peaks.panel[0] == "q0a0" and ch.peaks.intensity[0] == pytest.approx(-78.5)
    cr = ch.crystals[0]
    np.testing.assert_allclose(cr.astar, [0.0706577, -0.1444151, 0.0270631])
    # the cell computed from the reciprocal basis equals the stream's "Cell parameters" line
    np.testing.assert_allclose(
        cr.cell, [61.3532, 121.9726, 168.8163, 90.54524, 91.23016, 90.53769], rtol=2e-5
    )
    assert (cr.lattice_type, cr.centering) == ("orthorhombic", "C")
    assert cr.det_shift_mm == (0.022, -0.009)
    assert cr.profile_radius_nm == pytest.approx(0.00258)
    r = cr.reflections
    assert (r.h[0], r.k[0], r.l[0]) == (-28, 10, 5)
    assert r.fs[0] == pytest.approx(634.3) and r.ss[0] == pytest.approx(1057.1)
    assert r.panel[0] == "q1a11" and r.intensity[0] == pytest.approx(185.09)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_panel_names_refer_to_the_embedded_geometry(shared_fixtures, name):
    stream = read_stream(_fixture(shared_fixtures, name))
    geom = stream.geometry()
    assert unknown_panels(stream, geom) == set()
    panels = {p.name: p for p in geom.panels}
    for chunk in stream.chunks:
        for fs, ss, pn in zip(chunk.peaks.fs, chunk.peaks.ss, chunk.peaks.panel, strict=True):
            p = panels[pn]
            assert p.min_fs - 0.5 <= fs <= p.max_fs + 0.5 and p.min_ss - 0.5 <= ss <= p.max_ss + 0.5


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_write_read_round_trip(shared_fixtures, tmp_path, name):
    stream = read_stream(_fixture(shared_fixtures, name))
    out = tmp_path / "copy.stream"
    write_stream(out, stream)
    back = read_stream(out)
    assert back.counts() == stream.counts()
    for a, b in zip(stream.chunks, back.chunks, strict=True):
        assert (a.filename, a.serial, a.photon_energy_ev) == (
            b.filename,
            b.serial,
            b.photon_energy_ev,
        )
        np.testing.assert_allclose(a.peaks.fs, b.peaks.fs, atol=0.006)
        np.testing.assert_allclose(a.peaks.ss, b.peaks.ss, atol=0.006)
        assert list(a.peaks.panel) == list(b.peaks.panel)
        for ca, cb in zip(a.crystals, b.crystals, strict=True):
            np.testing.assert_allclose(ca.reciprocal_matrix_nm, cb.reciprocal_matrix_nm, atol=1e-7)
            np.testing.assert_array_equal(ca.reflections.hkl, cb.reflections.hkl)
            np.testing.assert_allclose(ca.reflections.fs, cb.reflections.fs, atol=0.06)
    # writing what was read back gives the same text (the writer is a fixed point)
    again = tmp_path / "again.stream"
    write_stream(again, back)
    assert again.read_text() == out.read_text()


def _synthetic_stream(rng: np.random.Generator) -> Stream:
    chunks = []
    for i in range(3):
        n = 5 + i
        peaks = PeakList(
            fs=np.round(rng.uniform(0, 100, n), 2),
            ss=np.round(rng.uniform(0, 100, n), 2),
            one_over_d_nm=np.round(rng.uniform(0.1, 3, n), 2),
            intensity=np.round(rng.uniform(0, 1e3, n), 2),
            panel=np.array(["p0", "p1"] * n, dtype=object)[:n],
        )
        crystals = []
        if i:
            m = 4
            refl = ReflectionList(
                h=np.arange(m, dtype=np.int32),
                k=-np.arange(m, dtype=np.int32),
                l=np.ones(m, dtype=np.int32),
                intensity=np.round(rng.normal(100, 10, m), 2),
                sigma=np.full(m, 3.5),
                peak=np.full(m, 9.0),
                background=np.full(m, 1.25),
                fs=np.round(rng.uniform(0, 100, m), 1),
                ss=np.round(rng.uniform(0, 100, m), 1),
                panel=np.array(["p1"] * m, dtype=object),
            )
            crystals.append(
                Crystal(
                    astar=np.array([0.1264223, 0.0, 0.0]),
                    bstar=np.array([0.0, 0.1264223, 0.0]),
                    cstar=np.array([0.0, 0.0, 0.2631579]),
                    lattice_type="tetragonal",
                    centering="P",
                    unique_axis="c",
                    profile_radius_nm=0.003,
                    resolution_limit_nm=2.5,
                    reflections=refl,
                )
            )
        chunks.append(
            Chunk(
                filename="run.cxi",
                event=f"//{i}",
                serial=i + 1,
                hit=1,
                indexed_by="xgandalf-nolatt-cell" if crystals else "none",
                n_indexing_tries=1 if crystals else None,
                photon_energy_ev=9500.0,
                beam_divergence_rad=0.0,
                beam_bandwidth=1e-8,
                headers={"header/float//LCLS/photon_energy_eV": "9500.000000"},
                average_camera_length_m=0.08,
                peak_resolution_nm=2.5,
                peaks=peaks,
                crystals=crystals,
            )
        )
    return Stream(
        chunks=chunks,
        audit=["Generated by test"],
        geometry_text="p0/min_fs = 0\n",
        cell_text="CrystFEL unit cell file version 1.0\n",
    )


def test_synthetic_round_trip_keeps_every_field(tmp_path):
    stream = _synthetic_stream(np.random.default_rng(3))
    out = tmp_path / "s.stream"
    write_stream(out, stream)
    back = read_stream(out)
    assert back.audit == stream.audit and back.geometry_text == stream.geometry_text
    for a, b in zip(stream.chunks, back.chunks, strict=True):
        assert (a.event, a.serial, a.indexed_by, a.headers) == (
            b.event,
            b.serial,
            b.indexed_by,
            b.headers,
        )
        assert b.frame_index == a.serial - 1
        for name in ("fs", "ss", "one_over_d_nm", "intensity"):
            np.testing.assert_allclose(getattr(a.peaks, name), getattr(b.peaks, name), atol=1e-9)
        for ca, cb in zip(a.crystals, b.crystals, strict=True):
            assert cb.cell == pytest.approx((79.1, 79.1, 38.0, 90.0, 90.0, 90.0), rel=1e-5)
            for name in ("h", "k", "l", "intensity", "sigma", "peak", "background", "fs", "ss"):
                np.testing.assert_allclose(
                    getattr(ca.reflections, name), getattr(cb.reflections, name), atol=1e-9
                )
    text = out.read_text()
    assert "CrystFEL stream format 2.3\n" == text[:27]
    # CrystFEL's writer columns: stream positions carry the +0.5 shift
    first = back.chunks[0].peaks
    assert f"{first.fs[0] + 0.5:7.2f} {first.ss[0] + 0.5:7.2f}" in text


def _cut(text: str, marker: str, occurrence: int) -> str:
    pos = -1
    for _ in range(occurrence):
        pos = text.index(marker, pos + 1)
    return text[:pos]


def test_stream_cut_off_mid_chunk_skips_and_counts(shared_fixtures, tmp_path):
    text = _fixture(shared_fixtures, "cspad_5ht2b_lcls2013.stream").read_text()
    # cut inside the reflection list of the 4th crystal, half way through a line
    cut = _cut(text, "End of reflections", 4)
    cut = cut[: cut.rindex("\n") - 7]
    path = tmp_path / "cut.stream"
    path.write_text(cut)
    stream = read_stream(path)
    full = read_stream(_fixture(shared_fixtures, "cspad_5ht2b_lcls2013.stream"))
    n_complete = cut.count("----- End chunk -----")
    assert len(stream.chunks) == n_complete
    assert len(stream.skipped) == 1 and "truncated" in stream.skipped[0].reason
    assert [c.serial for c in stream.chunks] == [c.serial for c in full.chunks[:n_complete]]
    with pytest.raises(InputError, match="truncated"):
        read_stream(path, on_truncated="error")


def test_chunk_without_end_marker_in_the_middle_is_skipped(shared_fixtures, tmp_path):
    text = _fixture(shared_fixtures, "rayonix_lysozyme_palxfel2018.stream").read_text()
    first_end = text.index("----- End chunk -----")
    broken = text[:first_end] + text[first_end + len("----- End chunk -----\n") :]
    path = tmp_path / "broken.stream"
    path.write_text(broken)
    stream = read_stream(path)
    assert len(stream.chunks) == 2 and len(stream.skipped) == 1
    assert stream.counts()["peaks"] == 107 - 25  # the first chunk's 25 peaks are gone


def test_corrupt_peak_line_skips_only_that_chunk(tmp_path):
    stream = _synthetic_stream(np.random.default_rng(1))
    path = tmp_path / "s.stream"
    write_stream(path, stream)
    text = path.read_text().replace("End of peak list", "12.0 garbage\nEnd of peak list", 1)
    path.write_text(text)
    back = read_stream(path)
    assert len(back.chunks) == 2 and len(back.skipped) == 1


OLD_STREAM = """CrystFEL stream format 2.2
Generated by CrystFEL 0.5.3
indexamajig -i x.lst
----- Begin chunk -----
Image filename: old.h5
photon_energy_eV = 9000.0
hdf5/LCLS/photon_energy_eV = 9000.0
indexed_by = mosflm
Peaks from peak search
  fs/px   ss/px  (1/d)/nm^-1   Intensity
  10.50   20.50       1.00      100.00
  30.50   40.50       2.00      200.00
End of peak list
--- Begin crystal
Cell parameters 7.91 7.91 3.80 nm, 90.0 90.0 90.0 deg
astar = +0.1264223 +0.0000000 +0.0000000 nm^-1
bstar = +0.0000000 +0.1264223 +0.0000000 nm^-1
cstar = +0.0000000 +0.0000000 +0.2631579 nm^-1
Reflections measured after indexing
   h    k    l          I   sigma(I)       peak background  fs/px  ss/px
   1    2    3     100.00      10.00     50.00      5.00   11.5   21.5
  -1    0    2      50.00       8.00     20.00      4.00   31.5   41.5
End of reflections
--- End crystal
----- End chunk -----
"""


def test_old_dialect_format_2_2(tmp_path):
    path = tmp_path / "old.stream"
    path.write_text(OLD_STREAM)
    stream = read_stream(path)
    assert stream.format_version == "2.2"
    (ch,) = stream.chunks
    assert list(ch.peaks.panel) == ["", ""] and ch.peaks.fs.tolist() == [10.0, 30.0]
    r = ch.crystals[0].reflections
    assert (
        r.h.tolist() == [1, -1]
        and r.fs.tolist() == [11.0, 31.0]
        and r.background.tolist() == [5.0, 4.0]
    )
    assert ch.crystals[0].lattice_type == "triclinic"  # no lattice lines: CrystFEL's default
    assert ch.headers == {"hdf5/LCLS/photon_energy_eV": "9000.0"}


def test_oldest_dialect_reflections_with_phase(tmp_path):
    text = (
        OLD_STREAM.replace("format 2.2", "format 2.1")
        .replace(
            "   h    k    l          I   sigma(I)       peak background  fs/px  ss/px",
            "   h    k    l          I    phase   sigma(I)  counts  fs/px  ss/px",
        )
        .replace(
            "   1    2    3     100.00      10.00     50.00      5.00   11.5   21.5",
            "   1    2    3     100.00        -      10.00       1   11.5   21.5",
        )
        .replace(
            "  -1    0    2      50.00       8.00     20.00      4.00   31.5   41.5",
            "  -1    0    2      50.00     45.0       8.00       1   31.5   41.5",
        )
    )
    path = tmp_path / "old21.stream"
    path.write_text(text)
    r = read_stream(path).chunks[0].crystals[0].reflections
    assert r.sigma.tolist() == [10.0, 8.0] and r.ss.tolist() == [21.0, 41.0]
    assert math.isnan(r.peak[0])


def test_not_a_stream_is_one_line_error(tmp_path):
    path = tmp_path / "x.stream"
    path.write_text("hello\n")
    with pytest.raises(InputError, match="not 'CrystFEL stream format 2.x'"):
        read_stream(path)
    with pytest.raises(InputError, match="not found"):
        read_stream(tmp_path / "missing.stream")
