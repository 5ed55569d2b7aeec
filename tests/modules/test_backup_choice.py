"""Which backup a Trainer resumes from, said in the log, and resume_from after a change."""

import pytest

from modules.trainer import trainer_module


def test_backups_are_named_and_resume_from_seeds_the_new_one(tmp_path):
    root = tmp_path / "resume"
    old = root / "0a1b2c"
    (old / "chief").mkdir(parents=True)
    (old / "chief" / "checkpoint").write_text("epoch 7")
    new = root / "9f8e7d"

    message = trainer_module.choose_backup(str(new))
    assert "training starts at step 0" in message
    assert f"--set resume_from={old}" in message and not new.exists()

    message = trainer_module.choose_backup(str(new), str(old))
    assert f"Resuming from the backup {old} (resume_from" in message
    assert (new / "chief" / "checkpoint").read_text() == "epoch 7"
    assert "same settings and inputs" in trainer_module.choose_backup(str(new), str(old))


def test_resume_from_must_be_a_backup(tmp_path):
    with pytest.raises(ValueError, match="is not a backup directory"):
        trainer_module.choose_backup(str(tmp_path / "resume" / "k"), str(tmp_path / "none"))
    assert "starts at step 0." in trainer_module.choose_backup(str(tmp_path / "resume" / "k"))
