"""The command line: clear errors before any work starts, and --help."""

import os
import re

import pytest

from pipeline import cli, layout
from pipeline.runners import local


@pytest.mark.parametrize("extra,message", [
    (["--labelled_fraction", "0"], r"must be in \(0, 1\]"),
    (["--labelled_fraction", "1.5"], r"must be in \(0, 1\]"),
    (["--set", "nonsense=1"], "unknown experiment field 'nonsense'"),
    (["--set", "batch_size"], "FIELD=VALUE"),
    (["--label_map", "/no/such/map"], "does not exist"),
    (["--batch_size", "0"], "batch_size=0 must be >= 1"),
    (["--min_top1", "50"], r"--min_top1 50.0 must be a fraction in \[0, 1\]"),
    (["--max_top1_drop", "nan"], r"--max_top1_drop nan must be a fraction"),
    (["--train_epochs", "inf"], "--train_epochs inf must be a finite number > 0"),
    (["--train_epochs", "0"], "--train_epochs 0.0 must be a finite number > 0"),
    (["--set", "schedule_epochs=1,inf"], "schedule_epochs=.* must be finite"),
    (["--set", "lr=nan"], "lr=nan must be finite"),
    (["--set", "name=../x"], "name='../x' must be letters"),
    (["--num_shards", "0"], "--num_shards 0 must be >= 1"),
    (["--exclude_labelled", "--labelled_fraction", "1.0"], "leaves no unlabelled images"),
    (["--strategy", "multi_worker"], "use the Vertex runner with --trainer_replicas N"),
])
def test_bad_settings_fail_before_any_work(image_folder, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code = local.main(["--source", "image_folder", "--data_path", image_folder,
                       "--output_dir", str(out), *extra])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_hub_destination_among_serving_models_is_refused(image_folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = local.main(["--source", "image_folder", "--data_path", image_folder,
                       "--output_dir", str(out), "--push_destination", str(tmp_path / "p"),
                       "--hub_destination", str(tmp_path / "p")])
    assert code == 2
    assert "would mix with the serving models of stage 'supervised'" in capsys.readouterr().err
    assert not out.exists()


def test_missing_data_path(tmp_path, capsys):
    code = local.main(["--source", "image_folder", "--data_path", str(tmp_path / "x"),
                       "--output_dir", str(tmp_path / "out")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_help_lists_presets_and_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        local.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    from pipeline import presets

    assert "presets: " + ", ".join(presets.PRESETS) in text
    for word in ("--labelled_fraction", "--label_map", "--source",
                 "--pipeline_root", "--output_dir", "--seed", "--train_epochs", "--batch_size"):
        assert word in text


def test_user_code_import_paths_and_schema_exist():
    from tfx.utils import import_utils

    from pipeline import pipeline as pipeline_lib

    for path in (pipeline_lib.PREPROCESSING_FN, pipeline_lib.RUN_FN):
        module, name = path.rsplit(".", 1)
        assert callable(import_utils.import_func_from_module(module, name)), path
    assert os.path.isfile(layout.SCHEMA_PATH)


def test_unknown_preset_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        local.main(["--preset", "mean_teacher"])
    assert exit_info.value.code == 2
    assert "unknown preset(s) ['mean_teacher']" in capsys.readouterr().err


def test_preset_lists_bring_their_stages_once(image_folder):
    args = cli.build_parser().parse_args(
        ["--preset", "vat,moam_step_3,pseudo_labels", "--source", "image_folder",
         "--data_path", image_folder, "--train_epochs", "2", "--set", "weight_decay=0"])
    stages = cli.make_experiments(args, num_classes=4)
    assert [e.name for e in stages] == ["vat", "moam_step_1", "moam_step_2", "moam_step_3",
                                        "supervised", "pseudo_labels"]
    assert {e.schedule_epochs[-1] for e in stages} == {2}
    assert {e.weight_decay for e in stages} == {0.0}


def test_batch_that_does_not_divide_across_replicas(image_folder, tmp_path, capsys,
                                                    monkeypatch):
    from modules.trainer import training

    monkeypatch.setattr(training, "expected_replicas", lambda exp: 3)  # 3 GPUs
    code = local.main(["--source", "image_folder", "--data_path", image_folder,
                       "--output_dir", str(tmp_path / "out"), "--batch_size", "16",
                       "--strategy", "mirrored"])
    assert code == 2
    assert "batch_size=16 does not divide across 3 replicas" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_label_map_contents_are_in_the_cache_key(image_folder, tmp_path):
    """ExampleGen's parameters carry the map's path; an edit in place must still re-run it."""
    label_map = tmp_path / "map.json"
    label_map.write_text('{"values": ["train_0_0.png"]}')
    args = cli.build_parser().parse_args(
        ["--source", "image_folder", "--data_path", image_folder, "--label_map", str(label_map)])
    source = cli.make_source(args)
    first = cli.make_data_config(args, source, 4).fingerprint
    label_map.write_text('{"values": ["train_1_0.png"]}')  # same size, same path
    assert cli.make_data_config(args, source, 4).fingerprint != first


def test_set_with_a_stage_name_changes_that_stage_only():
    args = cli.build_parser().parse_args([
        "--preset", "moam_step_3", "--labels", "1pct", "--set", "weight_decay=1e-4",
        "--set", "moam_step_2.pseudo_label_views=averaged", "--set", "moam_step_3.lr=0.002"])
    stages = {exp.name: exp for exp in cli.make_experiments(args, num_classes=10)}
    assert [stages[n].pseudo_label_views for n in stages] == ["upright", "averaged", "upright"]
    assert [stages[n].weight_decay for n in stages] == [1e-4] * 3
    assert stages["moam_step_3"].lr == 0.002
    assert stages["moam_step_1"].lr == stages["moam_step_2"].lr != 0.002


def test_set_naming_a_stage_the_run_does_not_have_fails():
    args = cli.build_parser().parse_args(["--preset", "supervised", "--set", "vat.lr=1"])
    with pytest.raises(cli.CliError, match="no stage 'vat' in this run; its stages: supervised"):
        cli.make_experiments(args, num_classes=10)
