"""Suggested TensorRT profiles never overlap, cover every size, and minimize the objective they state (the
activation memory of the profile each image runs in), on skewed and mixed-aspect size lists; each profile's
warm-up lands on a shape only it contains."""

from __future__ import annotations

import itertools

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from gsam.cli import cli
from gsam.export.profiles import ProfileError, exclusive_shape, parse_profile, sizes_from_dataset, suggest

SKEWED = [(512, 512)] * 95 + [(2048, 2048)] * 5
MIXED = [(480, 640)] * 30 + [(640, 480)] * 30 + [(720, 1280)] * 10 + [(1280, 720)] * 10 + [(1024, 1024)] * 5
SPREAD = [(480, 640), (512, 512), (720, 1280), (1080, 1920), (300, 400), (1024, 1024)]
# What the area buckets made of the demo's sizes: three profiles ending at 160x160, each inside the next.
DEMO_LIKE = [(64 + (i * 7) % 33, 64 + (i * 13) % 97) for i in range(48)]


def _overlap(a, b) -> bool:
    return all(max(lo1, lo2) <= min(hi1, hi2) for lo1, hi1, lo2, hi2 in zip(a.min, a.max, b.min, b.max))


def _objective(sizes, profiles) -> float:
    """Recomputed from the profiles: mean max-shape pixels of the profile that contains each size."""
    used = []
    for h, w in sizes:
        (profile,) = [p for p in profiles if p.contains((1, 3, h, w))]
        used.append(profile.max[2] * profile.max[3])
    return sum(used) / len(used)


def check_suggestion(sizes, buckets=3, max_batch=1):
    found = suggest(sizes, buckets=buckets, max_batch=max_batch)
    profiles = found.profiles
    assert 1 <= len(profiles) <= buckets
    assert not [(a.name, b.name) for a, b in itertools.combinations(profiles, 2) if _overlap(a, b)]
    for h, w in sizes:
        assert [p.contains((max_batch, 3, h, w)) for p in profiles].count(True) == 1, (h, w)
    assert found.mean_pixels == pytest.approx(_objective(sizes, profiles))
    assert found.mean_pixels <= found.one_profile_pixels
    assert sum(found.images) == len(sizes)
    for i, p in enumerate(profiles):  # each opt is a size of the list, and a shape only its profile contains
        assert (p.opt[2], p.opt[3]) in set(sizes) and exclusive_shape(profiles, i) == p.opt
    return found


@pytest.mark.parametrize("sizes", [SKEWED, MIXED, SPREAD, DEMO_LIKE, [(256, 256)]],
                         ids=["skewed", "mixed-aspect", "spread", "demo-like", "one-size"])
def test_suggested_profiles_never_overlap_cover_every_size_and_report_their_objective(sizes):
    check_suggestion(sizes, buckets=3)
    check_suggestion(sizes, buckets=5, max_batch=2)


def test_a_skewed_list_gets_only_the_profiles_that_lower_the_objective():
    found = check_suggestion(SKEWED, buckets=4)
    assert [(p.max[2], p.max[3]) for p in found.profiles] == [(512, 512), (2048, 2048)]
    assert found.images == [95, 5] and found.mean_pixels / found.one_profile_pixels < 0.12


def test_mixed_aspect_ratios_are_cut_apart_along_height_or_width():
    landscape, portrait = [(480, 640)] * 10, [(640, 480)] * 10
    found = check_suggestion(landscape + portrait, buckets=2)
    assert sorted((p.max[2], p.max[3]) for p in found.profiles) == [(480, 640), (640, 480)]
    assert found.mean_pixels == 480 * 640 < found.one_profile_pixels == 640 * 640


def test_more_profiles_never_raise_the_objective():
    means = [suggest(MIXED, buckets=k).mean_pixels for k in range(1, 7)]
    assert means == sorted(means, reverse=True) and means[-1] < means[0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(32, 700), st.integers(32, 700)), min_size=1, max_size=40),
       st.integers(1, 6))
def test_any_size_list_gives_disjoint_covering_profiles(sizes, buckets):
    check_suggestion(sizes, buckets=buckets)


def test_sizes_below_the_minimum_and_no_sizes_are_one_line_errors():
    result = CliRunner().invoke(cli, ["export", "profiles", "--sizes", "64x64,20x64"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: size 20x64 is below the model's minimum side of 32"]
    with pytest.raises(ProfileError, match="no sizes"):
        suggest([])


def test_exclusive_shape_of_nested_and_adjacent_profiles():
    outer = parse_profile("min=1x3x32x32,opt=1x3x128x128,max=1x3x256x256")
    inner = parse_profile("min=1x3x64x64,opt=1x3x96x96,max=1x3x128x128")
    assert exclusive_shape([outer, inner], 1) is None  # inside the other: nothing only it contains
    assert exclusive_shape([outer, inner], 0) in {(1, 3, 129, 128), (1, 3, 128, 129)}  # opt shared: the nearest own
    above = parse_profile("min=1x3x256x256,opt=1x3x256x256,max=1x3x512x512")  # shares outer's max corner
    assert exclusive_shape([outer, above], 0) == outer.opt
    assert exclusive_shape([outer, above], 1) in {(1, 3, 257, 256), (1, 3, 256, 257)}


def test_cli_prints_flags_on_stdout_and_the_objective_on_stderr(synth_data):
    result = CliRunner().invoke(cli, ["export", "profiles", "--data", str(synth_data), "--buckets", "3"])
    assert result.exit_code == 0, result.output
    flags = [line.split(" ", 1)[1] for line in result.stdout.splitlines()]
    assert flags and all(line.startswith("--profile ") for line in result.stdout.splitlines())
    profiles = [parse_profile(f) for f in flags]
    assert "objective: the activation memory of the profile each image runs in" in result.stderr
    assert "Mpixel per image; one profile covering every size" in result.stderr
    sizes = sizes_from_dataset(synth_data)
    assert [p.contains((1, 3, *s)) for s in sizes for p in profiles].count(True) == len(sizes)
