"""The accuracy suite end to end on the built-in digits (numbers not asserted, except that
kip_weight 1 optimises exactly KIP's loss and so lands on KIP's set)."""
from engine.bench.accuracy import AccCell, bench_accuracy, to_markdown, variants


def test_accuracy_suite_runs_and_kip_weight_one_is_kip(tmp_path):
    cell = AccCell("digits", "sample", 20, 1, 1, 0.5)
    keep = ("KIP (fixed ridge)", "DGKIP squared", "squared, kip_weight 1")
    report = bench_accuracy(tmp_path, "/nonexistent", command="pytest", steps=4, eval_every=2, cell_list=[cell],
                            variant_list=[v for v in variants() if v[0] in keep])
    rows = {r["variant"]: r for r in report["results"]}
    assert list(rows) == list(keep) and report["complete"]
    assert rows["squared, kip_weight 1"]["accuracy"] == rows["KIP (fixed ridge)"]["accuracy"]
    assert rows["squared, kip_weight 1"]["radius"] == rows["KIP (fixed ridge)"]["radius"]
    assert rows["DGKIP squared"]["radius"] != rows["KIP (fixed ridge)"]["radius"]
    assert all(r["radius"] > 0 and len(r["curve"]) == 2 for r in rows.values())
    assert rows["DGKIP squared"]["kernel_params"]["depth"] == 1          # resolved parameters recorded
    assert (tmp_path / "bench.json").exists() and "kip_weight 1" in (tmp_path / "bench.md").read_text()
    assert "digits" in to_markdown(report)
