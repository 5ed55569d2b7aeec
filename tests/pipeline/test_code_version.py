"""The user code's version in Transform's and the Trainers' custom_config (TFX's cache key):
an edit re-runs what runs the edited code, and nothing is packaged or pip-installed."""

import json
import shutil

import pytest

from pipeline import code_version, layout, presets
from pipeline import pipeline as pipeline_lib
from pipeline.config import DataConfig


@pytest.fixture
def sources(tmp_path):
    root = tmp_path / "modules"
    shutil.copytree(code_version.MODULES_DIR, root,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _versions(root):
    return code_version.transform_version(str(root)), code_version.trainer_version(str(root))


def test_the_installed_code_has_the_copy_s_versions(sources):
    assert _versions(sources) == (code_version.transform_version(),
                                  code_version.trainer_version())


def test_a_trainer_edit_changes_the_trainer_s_version_only(sources):
    transform, trainer = _versions(sources)
    with open(sources / "trainer" / "schedules.py", "a") as f:
        f.write("\n# an edit\n")
    now = _versions(sources)
    assert now[0] == transform and now[1] != trainer


@pytest.mark.parametrize("edited", ["transform/image_ops.py", "features.py"])
def test_an_edit_of_what_transform_imports_changes_both(sources, edited):
    transform, trainer = _versions(sources)
    with open(sources / edited, "a") as f:
        f.write("\n# an edit\n")
    now = _versions(sources)
    assert now[0] != transform and now[1] != trainer


def test_compiled_files_and_a_renamed_file_count_as_they_should(sources):
    before = _versions(sources)
    (sources / "trainer" / "__pycache__").mkdir(exist_ok=True)
    (sources / "trainer" / "__pycache__" / "x.cpython-310.pyc").write_bytes(b"\0")
    (sources / "trainer" / "notes.txt").write_text("not code")
    assert _versions(sources) == before
    (sources / "trainer" / "polyak.py").rename(sources / "trainer" / "polyak_average.py")
    assert _versions(sources)[1] != before[1]


def test_a_missing_source_is_named(sources):
    shutil.rmtree(sources / "transform")
    with pytest.raises(FileNotFoundError, match="transform: no such source"):
        code_version.transform_version(str(sources))


def test_the_pipeline_names_its_code_by_import_path_with_its_version(tmp_path):
    experiments = [presets.get(name, dataset="synthetic")
                   for name in ("supervised", "s4l_rotation")]
    pipeline = pipeline_lib.create_pipeline(
        pipeline_name="p", pipeline_root=str(tmp_path / "root"),
        data=DataConfig(num_classes=3), experiments=experiments,
        schema_path=layout.SCHEMA_PATH, push_destination=str(tmp_path / "serving"))
    nodes = {c.id: c for c in pipeline.components}
    transform = nodes["Transform"].exec_properties
    assert transform["preprocessing_fn"] == pipeline_lib.PREPROCESSING_FN
    assert not transform.get("module_file") and not transform.get("module_path")
    assert json.loads(transform["custom_config"])["code_version"] == (
        code_version.transform_version())
    for stage in ("supervised", "s4l_rotation"):
        trainer = nodes[layout.stage_node_id(layout.TRAINER, stage)].exec_properties
        assert trainer["run_fn"] == pipeline_lib.RUN_FN
        assert not trainer.get("module_file") and not trainer.get("module_path")
        assert json.loads(trainer["custom_config"])["code_version"] == (
            code_version.trainer_version())
    assert not (tmp_path / "root" / "_wheels").exists()
