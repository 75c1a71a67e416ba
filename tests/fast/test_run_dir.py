"""A manifest of the wrong shape is named as damaged (no traceback) by the commands that read
it, and moved aside by the run that rebuilds it."""

import json

import pytest

from rlaif.errors import ConfigError
from rlaif.run.run_dir import RunDir, manifest_problem


@pytest.mark.parametrize(
    "manifest,problem",
    [
        ({"stages": "x"}, "stages: Input should be a valid dictionary"),
        ({"stages": {"judge": {"counts": {}}}}, "stages.judge.status: Field required"),
        ([], "a JSON array, not an object"),
        (None, "a JSON null, not an object"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_damaged(tmp_path, manifest, problem):
    assert manifest_problem(manifest) == problem
    run = RunDir(tmp_path)
    run.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="damaged manifest .*moves it aside"):
        run.read_manifest()
    assert run.recover_manifest() == {}
    assert not run.manifest_path.exists()
    assert [p.name.startswith("manifest.json.damaged-") for p in tmp_path.iterdir()] == [True]


def test_a_whole_manifest_reads_back():
    whole = {"stages": {"sample": {"status": "completed", "counts": {"rows": 3}}}, "config": {}}
    assert manifest_problem(whole) is None
    assert manifest_problem({}) is None
