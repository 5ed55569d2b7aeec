"""The package's shape: the entry script is thin and imported by nothing, run paths have one
home, and the repository stands on its own."""

import ast
import os
import re
import subprocess
import sys

from pipeline import layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline", "modules", "data_schema", "benchmarks", "tests")


def _python_files():
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(folder, name)


def _imported_modules(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_imports_the_entry_script():
    importers = [os.path.relpath(p, REPO) for p in _python_files()
                 if "beam_runner" in _imported_modules(p)]
    assert importers == []


def test_modules_never_import_the_pipeline_package():
    """Dependencies point one way: the pipeline uses modules/, never the reverse."""
    upward = [os.path.relpath(p, REPO) for p in _python_files()
              if os.path.relpath(p, REPO).startswith("modules")
              and any(m == "pipeline" or m.startswith("pipeline.")
                      for m in _imported_modules(p))]
    assert upward == []


def test_entry_script_runs_the_package_cli():
    result = subprocess.run([sys.executable, os.path.join(REPO, "beam_runner.py"), "--help"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "--labelled_fraction" in result.stdout and "presets: supervised" in result.stdout


def test_local_paths_default_under_the_output_dir(tmp_path):
    paths = layout.local_paths(str(tmp_path / "out"))
    assert paths.pipeline_root == str(tmp_path / "out" / "tfx")
    assert paths.metadata_path == str(tmp_path / "out" / "tfx" / "metadata.sqlite")
    assert paths.push_destination == str(tmp_path / "out" / "serving_model")
    assert paths.hub_destination == str(tmp_path / "out" / "serving_model" / "hub")
    assert paths.summary_path == str(tmp_path / "out" / "summary.json")
    given = layout.local_paths(str(tmp_path / "out"), str(tmp_path / "root"),
                               str(tmp_path / "push"), str(tmp_path / "hub"))
    assert (given.pipeline_root, given.push_destination, given.hub_destination) == (
        str(tmp_path / "root"), str(tmp_path / "push"), str(tmp_path / "hub"))


def test_remote_paths_keep_artifacts_on_cloud_storage(tmp_path):
    paths = layout.remote_paths(str(tmp_path), "gs://b/s4l")
    assert paths.push_destination == "gs://b/s4l/serving_model"
    assert paths.hub_destination == "gs://b/s4l/serving_model/hub"
    assert paths.metadata_path == str(tmp_path / "metadata.sqlite")
    assert layout.remote_paths(str(tmp_path), "gs://b/s4l", local_metadata=False
                               ).metadata_path == ""


def test_help_and_flag_errors_answer_without_tensorflow(tmp_path):
    """--help and a bad flag answer in a second: nothing imports TensorFlow or TFX first."""
    code = ("import sys\n"
            "from pipeline.runners import local\n"
            f"rc = local.main(['--source', 'image_folder', '--data_path', {str(tmp_path)!r}])\n"
            "print(rc, 'tensorflow' in sys.modules, 'tfx' in sys.modules)\n"
            "from pipeline import cli\n"
            "cli.build_parser().format_help()\n"
            "print('tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert result.stdout.split() == ["2", "False", "False", "False"], result.stderr
    assert "has no 'train' sub-folder" in result.stderr


def _tracked_text_files():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, cwd=REPO, check=True).stdout
    for name in listed.split():
        if name.startswith("benchmarks/results/") or not name.endswith(
                (".py", ".md", ".toml", ".txt", ".sh", "Dockerfile", ".tpu")):
            continue
        path = os.path.join(REPO, name)
        if os.path.isfile(path):
            with open(path, errors="replace") as f:
                yield name, f.read()


def test_no_file_points_at_documents_outside_the_repository():
    words = ("S4L_" + "SPEC", "TFX_" + "NOTES", "shared/" + "docs")  # (Split: not in this file.)
    outside = [name for name, text in _tracked_text_files()
               if any(word in text for word in words)]
    assert outside == []


def _headings(doc: str) -> set[str]:
    """Section numbers of a doc's headings: "## 4. Methods" -> "4", "### 4.2 X" -> "4.2"."""
    with open(os.path.join(REPO, "docs", doc)) as f:
        return {m.group(1).rstrip(".") for m in re.finditer(r"^#{2,3} ([\d.]+)[ .]", f.read(),
                                                               re.M)}


def test_cited_sections_of_the_design_docs_exist():
    cited = re.compile(r"docs/(original_s4l|environment)\.md (§§?[\d.]+(?:(?:,| and|-) ?"
                       r"(?:§)?[\d.]+)*)")
    sections = {"original_s4l": _headings("original_s4l.md"),
                "environment": _headings("environment.md")}
    missing = []
    for name, text in _tracked_text_files():
        for match in cited.finditer(text):
            for number in re.findall(r"\d+(?:\.\d+)*", match.group(2)):
                if number not in sections[match.group(1)]:
                    missing.append(f"{name}: {match.group(0)}")
    assert sections["original_s4l"] >= {"1.3", "4.2", "5.3", "10.1"}
    assert missing == []
