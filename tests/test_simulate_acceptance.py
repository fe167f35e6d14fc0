"""Acceptance tests of the simulated experiment (issue 2): ground truth agrees with the pixels.

One default experiment (12 frames) is generated once; each test checks the written files
against physics or statistics, so each can fail if the simulator is wrong.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import h5py
import numpy as np
import pytest

from braggflow.formats.frames import FrameSource
from braggflow.formats.geometry import read_geom
from braggflow.simulate import quick_experiment, read_truth
from braggflow.simulate.diffraction import HC_EV_A
from braggflow.simulate.experiment import Experiment

N_FRAMES = 12
SEED = 11


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    out = quick_experiment(tmp_path_factory.mktemp("sim"), n_frames=N_FRAMES, seed=SEED)
    geom = read_geom(out["geometry"])
    experiment = Experiment.from_files(out["geometry"], out["cell"], out["params"], SEED)
    plan = experiment.run_plan("r0000", N_FRAMES)
    results = [experiment.simulate_frame("r0000", i, int(plan[i])) for i in range(N_FRAMES)]
    return {
        **out,
        "geom": geom,
        "truth_data": read_truth(out["truth"]),
        "source": FrameSource(out["frames"], geom),
        "experiment": experiment,
        "results": results,
    }


def _isolated(refl, i, radius):
    """Reflections with no other reflection of the frame (of any strength > 0.5 photons) within radius px."""
    fs, ss, ph, panel = refl["fs"], refl["ss"], refl["photons"], refl["panel"]
    d = np.hypot(fs[:, None] - fs[None], ss[:, None] - ss[None])
    d[np.arange(len(fs)), np.arange(len(fs))] = np.inf
    d[:, ph < 0.5] = np.inf
    d[panel[:, None] != panel[None]] = np.inf
    return d.min(axis=1, initial=np.inf) > radius


def _away_from_edges(geom, refl, margin):
    out = np.zeros(len(refl["fs"]), dtype=bool)
    for j, (p, fs, ss) in enumerate(zip(refl["panel"], refl["fs"], refl["ss"], strict=True)):
        pan = geom.panels[p]
        out[j] = (
            pan.min_fs + margin <= fs <= pan.max_fs - margin
            and pan.min_ss + margin <= ss <= pan.max_ss - margin
        )
    return out


def test_files_and_truth_are_consistent(exp):
    truth, src = exp["truth_data"], exp["source"]
    assert truth.n_frames == len(src) == N_FRAMES
    stats = exp["stats"]
    assert stats["blank"] == round(0.2 * N_FRAMES) == int((~truth.has_crystal).sum())
    assert (truth.n_lattices[truth.has_crystal] >= 1).all() and (
        truth.n_lattices[~truth.has_crystal] == 0
    ).all()
    assert len(truth.lattices["frame"]) == truth.n_lattices.sum()
    np.testing.assert_allclose(
        truth.photon_energy_ev, [src.photon_energy_ev(i) for i in range(N_FRAMES)]
    )
    assert np.ptp(truth.photon_energy_ev) > 0  # shot-to-shot energy jitter
    assert (truth.reflections["panel"] >= 0).all()
    # frames regenerated in memory are the frames in the file (frame-level seeding)
    for i in (0, N_FRAMES - 1):
        np.testing.assert_array_equal(exp["results"][i].data, src.read(i))
    # a good share of hits is indexable, and hit strengths vary
    hits = truth.n_visible[truth.has_crystal]
    assert (hits >= 20).mean() >= 0.5
    assert truth.crystal_size_um[truth.has_crystal].std() > 0.1


def test_truth_positions_are_local_maxima_of_the_noiseless_image(exp):
    geom, truth = exp["geom"], exp["truth_data"]
    checked = 0
    for i, result in enumerate(exp["results"]):
        refl = truth.reflections_in(i)
        sel = refl["visible"] & _isolated(refl, i, 4.0) & _away_from_edges(geom, refl, 2)
        img = result.expected_photons
        for fs, ss in zip(refl["fs"][sel], refl["ss"][sel], strict=True):
            r, c = int(round(ss)), int(round(fs))
            win = img[r - 2 : r + 3, c - 2 : c + 3]
            pr, pc = np.unravel_index(np.argmax(win), win.shape)
            assert abs(r - 2 + pr - ss) <= 0.5 and abs(c - 2 + pc - fs) <= 0.5, (i, fs, ss)
            checked += 1
    assert checked >= 100


def test_spot_photons_match_expected_within_poisson_error(exp):
    geom, truth, src = exp["geom"], exp["truth_data"], exp["source"]
    det = exp["experiment"].detector
    gain, rn = det.adu_per_photon, det.read_noise_adu / det.adu_per_photon
    half = 6  # 13 x 13 window: > 3 tail sigmas
    z = []
    for i, result in enumerate(exp["results"]):
        refl = truth.reflections_in(i)
        sel = (
            refl["visible"]
            & _isolated(refl, i, 2 * half + 1)
            & _away_from_edges(geom, refl, half + 1)
        )
        data = src.read(i)
        for fs, ss, photons in zip(
            refl["fs"][sel], refl["ss"][sel], refl["photons"][sel], strict=True
        ):
            r, c = int(round(ss)), int(round(fs))
            win = np.s_[r - half : r + half + 1, c - half : c + half + 1]
            if det.mask[win].any() or (data[win] >= det.max_adu).any():
                continue  # masked or saturated pixels do not count photons
            measured = data[win].sum() / gain - result.background[win].sum()
            var = photons + result.background[win].sum() + data[win].size * rn**2
            z.append((measured - photons) / np.sqrt(var))
    z = np.asarray(z)
    assert z.size >= 40
    assert abs(z.mean()) < 4.0 / np.sqrt(z.size)
    assert 0.7 < z.std() < 1.35
    assert np.abs(z).max() < 5.5


def _box_z(data, background, bad, gain, rn, box=3):
    """z-score of every box x box pixel sum against the expected background (bad pixels excluded)."""
    from numpy.lib.stride_tricks import sliding_window_view

    excess = np.where(bad, 0.0, data / gain - background)
    var = np.where(bad, 0.0, background + rn**2)
    anybad = sliding_window_view(bad, (box, box)).any(axis=(-1, -2))
    s = sliding_window_view(excess, (box, box)).sum(axis=(-1, -2))
    v = sliding_window_view(var, (box, box)).sum(axis=(-1, -2))
    return np.where(anybad, 0.0, s / np.sqrt(v))


def test_blank_frames_hold_no_spot_above_background(exp):
    truth, src = exp["truth_data"], exp["source"]
    det = exp["experiment"].detector
    bad = det.mask != 0
    gain, rn = det.adu_per_photon, det.read_noise_adu / det.adu_per_photon
    blanks = np.flatnonzero(~truth.has_crystal)
    assert blanks.size >= 2
    for i in blanks:
        assert len(truth.reflections_in(i)["h"]) == 0 and truth.footprint[i].sum() == 0
        z = _box_z(src.read(i), exp["results"][i].background, bad, gain, rn)
        assert z.max() < 6.5, (i, z.max())
    # the same statistic does see the spots of a strong hit (so this test can fail)
    strong = int(np.argmax(truth.n_visible))
    assert _box_z(src.read(strong), exp["results"][strong].background, bad, gain, rn).max() > 20


def test_true_positions_and_orientation_reproduce_hkl(exp):
    geom, truth, src = exp["geom"], exp["truth_data"], exp["source"]
    checked = 0
    for i in np.flatnonzero(truth.has_crystal):
        refl = truth.reflections_in(i, visible_only=True)
        k_nm = src.photon_energy_ev(i) / HC_EV_A * 10.0  # 1/lambda in nm^-1
        clen = src.clen_m(i)
        for lat, basis in enumerate(truth.lattices_in(i)):
            sel = refl["lattice"] == lat
            if not sel.any():
                continue
            pos = []
            for p, fs, ss in zip(refl["panel"][sel], refl["fs"][sel], refl["ss"][sel], strict=True):
                pan = geom.panels[p]
                x, y = pan.lab_xy_px(fs + 0.5, ss + 0.5)  # CrystFEL: corner at the pixel edge
                pos.append([x / pan.res_px_per_m, y / pan.res_px_per_m, clen + pan.coffset_m])
            pos = np.asarray(pos)
            kout = k_nm * pos / np.linalg.norm(pos, axis=1, keepdims=True)
            q = kout - np.array([0.0, 0.0, k_nm])
            frac = q @ np.linalg.inv(basis)  # q = h a* + k b* + l c*
            hkl = np.stack([refl["h"][sel], refl["k"][sel], refl["l"][sel]], axis=1)
            np.testing.assert_array_equal(np.rint(frac).astype(int), hkl)
            assert np.abs(frac - hkl).max() < 0.2
            checked += int(sel.sum())
    assert checked >= 200


def test_multi_lattice_frames_have_two_distinct_orientations(tmp_path):
    out = quick_experiment(
        tmp_path, n_frames=4, seed=3, blank_fraction=0.0, multi_lattice_fraction=1.0
    )
    truth = read_truth(out["truth"], footprint=False)
    assert (truth.n_lattices == 2).all()
    for i in range(4):
        a, b = truth.lattices_in(i)
        assert not np.allclose(a, b)
        assert set(truth.reflections_in(i)["lattice"].tolist()) == {0, 1}


def test_any_bravais_lattice(tmp_path):
    cell = {
        "lattice_type": "hexagonal",
        "centering": "H",
        "a_A": 66.2,
        "b_A": 66.2,
        "c_A": 150.2,
        "gamma_deg": 120.0,
    }
    out = quick_experiment(tmp_path, n_frames=3, seed=4, blank_fraction=0.0, cell=cell)
    truth = read_truth(out["truth"], footprint=False)
    r = truth.reflections
    assert len(r["h"]) > 50 and ((-r["h"] + r["k"] + r["l"]) % 3 == 0).all()
    # |a*| of a hexagonal cell is 2 / (sqrt(3) a)
    np.testing.assert_allclose(
        np.linalg.norm(truth.lattices["astar"], axis=1), 10 * 2 / (np.sqrt(3) * 66.2)
    )


def _by_hkl(refl, keep):
    """{(h, k, l): (panel, fs)} of the selected reflections."""
    hkl = np.stack([refl["h"], refl["k"], refl["l"]], axis=1)[keep]
    return {
        tuple(m): (p, f)
        for m, p, f in zip(hkl.tolist(), refl["panel"][keep], refl["fs"][keep], strict=True)
    }


def test_simulator_reads_its_detector_from_the_geom_file(tmp_path):
    base = quick_experiment(tmp_path / "a", n_frames=2, seed=5, blank_fraction=0.0)
    # move one panel 7 px along x in the geometry file: its spots must follow
    text = base["geometry"].read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("m0a0/corner_x = "))
    corner_x = float(line.split("=")[1])
    moved_geom = tmp_path / "moved.geom"
    moved_geom.write_text(text.replace(line + "\n", f"m0a0/corner_x = {corner_x + 7}\n"))
    moved = Experiment.from_files(moved_geom, base["cell"], base["params"], 5)
    plan = moved.run_plan("r0000", 2)
    orig = read_truth(base["truth"], footprint=False)
    shifted = 0
    for i in range(2):
        new = moved.simulate_frame("r0000", i, int(plan[i])).reflections
        old = orig.reflections_in(i)
        # panels 0 and 1 (module 0) see changed shadows; every other panel is unchanged
        assert _by_hkl(old, old["panel"] > 1) == _by_hkl(new, new["panel"] > 1)
        # spots on the moved panel shift by -7 px in fs (fs runs along +x on module 0)
        old0, new0 = _by_hkl(old, old["panel"] == 0), _by_hkl(new, new["panel"] == 0)
        for hkl in set(old0) & set(new0):
            assert new0[hkl][1] == pytest.approx(old0[hkl][1] - 7.0, abs=1e-6)
            shifted += 1
    assert shifted >= 3


def _digest(path):
    with h5py.File(path) as f:
        h = hashlib.sha256()
        f.visititems(
            lambda name, obj: (
                h.update(name.encode() + obj[()].tobytes())
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
        return h.hexdigest()


def test_seeded_determinism(tmp_path):
    a = quick_experiment(tmp_path / "a", n_frames=3, seed=9)
    b = quick_experiment(tmp_path / "b", n_frames=3, seed=9)
    c = quick_experiment(tmp_path / "c", n_frames=3, seed=10)
    for key in ("geometry", "cell", "frames", "truth"):
        assert a[key].read_bytes() == b[key].read_bytes(), key
    assert _digest(a["frames"]) != _digest(c["frames"])
    assert _digest(a["truth"]) != _digest(c["truth"])


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "braggflow", "simulate", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


@pytest.mark.slow
def test_cli_writes_detector_then_run(tmp_path):
    g, c = tmp_path / "d.geom", tmp_path / "c.cell"
    out = _cli("--seed", "1", "--geometry", str(g), "--cell", str(c))
    assert out.returncode == 0, out.stderr
    out = _cli(
        "--seed",
        "1",
        "--run",
        "r7",
        "--geometry",
        str(g),
        "--cell",
        str(c),
        "--frames",
        str(tmp_path / "r7.cxi"),
        "--truth",
        str(tmp_path / "r7.truth.h5"),
        "--n-frames",
        "2",
    )
    assert out.returncode == 0, out.stderr
    assert "run r7:" in out.stderr
    assert len(FrameSource(tmp_path / "r7.cxi", read_geom(g))) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--run", "r0", "--frames", "F.cxi", "--truth", "T.h5"],
            "nope.geom: geometry file not found",
        ),
        (["--frames", "F.cxi"], "--frames/--truth: given without --run"),
        (["--run", "r0"], "needs --frames and --truth"),
        (["--config", "missing.yaml"], "missing.yaml: config file not found"),
    ],
)
def test_cli_bad_paths_are_one_line_errors(tmp_path, args, message):
    out = _cli(
        "--geometry",
        str(tmp_path / "nope.geom"),
        "--cell",
        str(tmp_path / "c.cell"),
        *args,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


@pytest.mark.slow
def test_cli_bad_config_and_bad_geometry_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulate:\n  crystal:\n    mosaicity_deg: -1\n")
    out = _cli(
        "--config",
        str(bad),
        "--geometry",
        str(tmp_path / "g.geom"),
        "--cell",
        str(tmp_path / "c.cell"),
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "simulate.crystal.mosaicity_deg" in out.stderr and "-1" in out.stderr
    # a geometry the simulator cannot use
    geom = tmp_path / "broken.geom"
    geom.write_text("res = 10000\n; no panels at all\n")
    cfg = tmp_path / "user.yaml"
    cfg.write_text(f"simulate:\n  detector:\n    geometry: {geom}\n")
    out = _cli(
        "--config",
        str(cfg),
        "--geometry",
        str(tmp_path / "g.geom"),
        "--cell",
        str(tmp_path / "c.cell"),
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "broken.geom: no panels defined" in out.stderr
    # an inconsistent cell
    cfg.write_text("simulate:\n  cell: {lattice_type: cubic, a_A: 10, b_A: 11, c_A: 10}\n")
    out = _cli(
        "--config",
        str(cfg),
        "--geometry",
        str(tmp_path / "g.geom"),
        "--cell",
        str(tmp_path / "c.cell"),
    )
    assert out.returncode == 2 and "cubic needs a = b = c" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_simulates_a_real_detector_geometry(tmp_path, shared_fixtures):
    """The real ePix10k2M geometry (64 ASICs, 5632 x 384 slab) works as the simulated detector."""
    geom_path = shared_fixtures / "geometry" / "epix10k2M_lcls_mfx.geom"
    # its panels carry coffset = -0.215 m: clen is the encoder value, the detector sits at clen + coffset
    params = {"clen_m": 0.335, "blank_fraction": 0.0, "detector": {"geometry": str(geom_path)}}
    out = quick_experiment(tmp_path, n_frames=1, seed=6, **params)
    geom = read_geom(out["geometry"])
    assert len(geom.panels) == 64 and geom.slab_shape == (5632, 384)
    src = FrameSource(out["frames"], geom)
    assert src.read(0).shape == (5632, 384) and src.clen_m(0) == pytest.approx(0.335)
    truth = read_truth(out["truth"], footprint=False)
    assert truth.n_visible.min() >= 20
    assert len(set(truth.reflections["panel"].tolist())) > 10
