"""Boot delay specs and their sampling."""

import random
import statistics

import pytest

from devcloud.delays import BootClock, parse_boot_delay


def test_fixed_and_uniform():
    rng = random.Random(1)
    assert parse_boot_delay("fixed:2.5").sample(rng) == 2.5
    samples = [parse_boot_delay("uniform:1,3").sample(rng) for _ in range(200)]
    assert all(1 <= s <= 3 for s in samples)


def test_lognormal_has_the_asked_median_and_p90():
    rng = random.Random(1)
    delay = parse_boot_delay("lognormal:median=60,p90=180")
    samples = sorted(delay.sample(rng) for _ in range(20_000))
    assert statistics.median(samples) == pytest.approx(60, rel=0.05)
    assert samples[int(0.9 * len(samples))] == pytest.approx(180, rel=0.08)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "fixed",
        "fixed:-1",
        "fixed:x",
        "uniform:3,1",
        "uniform:1",
        "lognormal:median=60",
        "lognormal:median=9,p90=3",
        "gamma:1",
    ],
)
def test_bad_specs_are_refused(spec):
    with pytest.raises(ValueError):
        parse_boot_delay(spec)


def test_clock_scales_and_resets():
    clock = BootClock("fixed:10", 0.5, seed=1)
    assert clock.sample_seconds() == 5
    clock.set(spec="fixed:2", time_scale=0.25)
    assert clock.sample_seconds() == 0.5
    clock.reset()
    assert clock.describe() == {"boot_delay": "fixed:10", "time_scale": 0.5}
