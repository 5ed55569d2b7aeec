"""The Dockerfiles (not built here: no Docker daemon) keep the lines the runners rely on: base
images matching constraints.txt, TF_USE_LEGACY_KERAS=1, this package installed (not
editable) with the constraints, and the schema where the Vertex runner points."""

import os
import re
import shlex

import pytest

from pipeline.runners import common, vertex_runner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    with open(os.path.join(REPO, "docker", name)) as f:
        lines = [line.rstrip() for line in f if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    pairs = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _pins() -> dict[str, str]:
    with open(os.path.join(REPO, "constraints.txt")) as f:
        return dict(line.strip().lower().split("==", 1) for line in f
                    if "==" in line and not line.startswith("#"))


def _env(pairs) -> dict[str, str]:
    env = {}
    for keyword, rest in pairs:
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    return env


def _pip_installs(pairs) -> list[list[str]]:
    commands = []
    for keyword, rest in pairs:
        if keyword == "RUN":
            for command in rest.split("&&"):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    commands.append(words[2:])
    return commands


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.tpu"])
def test_package_installed_with_constraints(name):
    pairs = _instructions(name)
    assert _env(pairs)["TF_USE_LEGACY_KERAS"] == "1"
    installs = _pip_installs(pairs)
    package = [words for words in installs if "." in words]
    assert package, f"{name} does not pip install the package"
    words = package[0]
    assert words[words.index("-c") + 1] == "constraints.txt"
    assert "-e" not in words and "--editable" not in words
    assert ("WORKDIR", common.IMAGE_WORKDIR) in pairs
    assert ("COPY", f". {common.IMAGE_WORKDIR}") in pairs
    assert "ENTRYPOINT" not in {keyword for keyword, _ in pairs}


def test_pipeline_image_is_the_tfx_image_of_the_pinned_version():
    pairs = _instructions("Dockerfile")
    assert pairs[0] == ("FROM", f"gcr.io/tfx-oss-public/tfx:{_pins()['tfx']}")
    # TensorFlow's own choice: forced on, oneDNN gave wrong gradients on AVX2-only CPUs.
    assert "TF_ENABLE_ONEDNN_OPTS" not in _env(pairs)
    assert os.path.isfile(os.path.join(
        REPO, os.path.relpath(common.IMAGE_SCHEMA_PATH, common.IMAGE_WORKDIR)))


def test_tpu_image_installs_tensorflow_tpu_of_the_pinned_version():
    pairs = _instructions("Dockerfile.tpu")
    assert pairs[0][0] == "FROM" and pairs[0][1].startswith("python:3.10")
    tpu = [words for words in _pip_installs(pairs) if any(
        w.startswith("tensorflow-tpu==") for w in words)]
    assert tpu, "Dockerfile.tpu does not install tensorflow-tpu"
    assert f"tensorflow-tpu=={_pins()['tensorflow']}" in tpu[0]
    assert "TF_ENABLE_ONEDNN_OPTS" not in _env(pairs)
    # Vertex TPU VMs (and the PJRT variables vertex_runner sets) expect /lib/libtpu.so.
    library = vertex_runner.TPU_VM_PJRT_ENV["TF_PLUGGABLE_DEVICE_LIBRARY_PATH"]
    assert any(keyword == "RUN" and f"'{library}'" in rest for keyword, rest in pairs)


def test_dockerignore_keeps_the_build_context_small():
    with open(os.path.join(REPO, ".dockerignore")) as f:
        ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert {".venv", "runs", ".git"} <= ignored
    assert not {"pipeline", "modules", "data_schema", "constraints.txt", "README.md"} & ignored
