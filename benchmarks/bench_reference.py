"""The machine-speed reference loop itself, as a benchmark (its figure should stay ~1.0)."""

from conftest import REF_DATA, REF_ITERS, reference_loop


def test_reference_loop(benchmark, record_info) -> None:
    reference_loop(1, REF_DATA)
    benchmark(reference_loop, REF_ITERS, REF_DATA)
    record_info(per_call=REF_ITERS, unit="hash_rounds")
