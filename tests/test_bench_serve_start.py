"""The servers the benchmarks start: one that will not start is reported with its reason, and `bench serve` fits
again the models of its --home that were fitted on another catalog (a demo run with another --count redraws it)."""

import shutil

import pytest

from tests.conftest import free_port
from omokage.bench.serve import _prepare, _start_server, _stop_server, _wait_http
from omokage.catalog.generate import generate_catalog
from omokage.errors import UserError
from omokage.features.fitting import stale_models


@pytest.fixture(scope="module")
def other_catalog(tmp_path_factory):
    """A catalog the tiny models were not fitted on."""
    return generate_catalog(tmp_path_factory.mktemp("other") / "catalog", count=120, seed=8, image_size=64,
                            progress=False)


def test_a_server_that_exits_at_start_is_a_user_error_with_its_reason(other_catalog, tiny_models, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    proc = _start_server(other_catalog, tiny_models, port, tmp_path / "events.jsonl", log)
    try:
        with pytest.raises(UserError) as err:
            _wait_http(port, proc, timeout=60, log=log)
    finally:
        proc.kill()
        proc.wait()
    message = str(err.value)
    assert "fitted on another catalog" in message, message
    assert str(log) in message and "Traceback" not in message


def test_bench_serve_fits_again_what_its_home_has_fitted_on_another_catalog(other_catalog, tiny_models, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(other_catalog, home / "catalog")
    shutil.copytree(tiny_models, home / "models", ignore=shutil.ignore_patterns("ae", "nmf"))
    assert stale_models(home / "catalog", home / "models", ["raw", "pca"]) == ["raw", "pca"]
    catalog, models = _prepare(home)
    assert (catalog, models) == (home / "catalog", home / "models")
    assert stale_models(catalog, models, ["raw", "pca"]) == []
    port = free_port()
    log = tmp_path / "server.log"
    proc = _start_server(catalog, models, port, tmp_path / "events.jsonl", log)
    try:
        _wait_http(port, proc, timeout=60, log=log)
    finally:
        _stop_server(proc, port)
