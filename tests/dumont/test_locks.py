"""single_flight: one copy of a periodic job at a time, across workers (the cache is Redis)."""

from __future__ import annotations

from django.core.cache import cache

from dumont.locks import single_flight


def test_a_second_copy_is_told_to_skip_until_the_first_is_done():
    with single_flight("job", ttl=60) as first:
        with single_flight("job", ttl=60) as second:
            assert (first, second) == (True, False)
        with single_flight("another-job", ttl=60) as other:
            assert other is True
        assert cache.get("single-flight:job")  # the skipped copy did not release the holder's lock
    with single_flight("job", ttl=60) as again:
        assert again is True


def test_the_lock_lapses_after_its_ttl_when_its_holder_died():
    cache.add("single-flight:crashed", "a worker that died", timeout=1)
    with single_flight("crashed", ttl=60) as mine:
        assert mine is False
    cache.delete("single-flight:crashed")  # what the lapse does, without waiting for it
    with single_flight("crashed", ttl=60) as mine:
        assert mine is True
