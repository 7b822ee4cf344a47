"""engine.timing: the interleaved timing that picks a kernel formula or a product's library."""
import time

from engine.timing import fastest_of


def test_fastest_of_interleaves_and_keeps_each_minimum():
    calls = []

    def slow():
        calls.append("slow")
        time.sleep(0.002)

    def quick():
        calls.append("quick")

    best = fastest_of({"slow": slow, "quick": quick}, rounds=3)
    assert calls == ["slow", "quick"] * 3                 # one of each per round, in turn
    assert best["slow"] >= 0.002 > best["quick"] >= 0
