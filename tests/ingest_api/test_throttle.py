"""The wrong-key window on its own: counted per address, over after its minute, and bounded."""

from ingest_api.throttle import FailureWindow


def test_an_address_is_refused_after_its_failures_until_its_window_ends() -> None:
    window = FailureWindow(most=2, window=60)
    window.failed("a", now=0)
    assert window.refused_for("a", now=1) == 0
    window.failed("a", now=2)
    assert window.refused_for("a", now=3) == 57  # the window began at 0
    assert window.refused_for("b", now=3) == 0  # another address is not concerned
    assert window.refused_for("a", now=60) == 0  # its minute is over
    window.failed("a", now=61)
    assert window.refused_for("a", now=61) == 0  # counting afresh


def test_the_table_forgets_the_oldest_addresses_first() -> None:
    window = FailureWindow(most=1, window=60, addresses=2)
    for address in ("a", "b", "c"):
        window.failed(address, now=0)
    assert window.refused_for("a", now=1) == 0
    assert window.refused_for("c", now=1) == 59
