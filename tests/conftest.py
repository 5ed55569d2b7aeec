"""Test set-up: tf-keras before TensorFlow is imported (docs/environment.md §2), and fixtures that
write small image data sets."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gzip  # noqa: E402
import io  # noqa: E402
import struct  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.components.example_gen import sources  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning, module="google.*")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_SUBSETS = os.path.join(os.path.dirname(REPO), "shared", "data", "imagenet_subsets")
# Data that some tests read and that a checkout does not carry. Outside CI a missing item
# skips those tests; in CI (CI set) it stops the run at once, so nothing is skipped unseen.
EXTERNAL_DATA = {
    "the paper's ImageNet label maps (shared/data/imagenet_subsets beside the repository)":
        os.path.join(SHARED_SUBSETS, "label_map_count_128000_index_0"),
    "Debian's dataset-fashion-mnist (./setup.sh installs it)":
        os.path.join(sources.FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"),
}


def pytest_sessionstart(session) -> None:
    missing = [f"{what}: {path}" for what, path in EXTERNAL_DATA.items()
               if not os.path.exists(path)]
    if missing and os.environ.get("CI"):
        pytest.exit("CI needs data that is missing; nothing was run:\n  " + "\n  ".join(missing),
                    returncode=3)


def tracking_step(exp):
    """(tracked, StepContext): a loss term's diagnostics land in the `tracked` dict."""
    from modules.trainer.step_context import StepContext

    tracked: dict = {}
    return tracked, StepContext(exp=exp, track=lambda name, value: tracked.update({name: value}))


def class_image(label: int, index: int, size: tuple[int, int] = (20, 24),
                mode: str = "RGB") -> Image.Image:
    """A small image whose brightness pattern depends on its class (so a model can learn it)."""
    rng = np.random.default_rng(label * 1000 + index)
    h, w = size
    base = np.zeros((h, w), np.float32)
    band = (label % 5) * (w // 5)
    base[:, band:band + max(1, w // 5)] = 200 if label < 5 else 100
    noise = rng.normal(0, 12, (h, w, 3))
    array = np.clip(base[..., None] + 30 + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(array, mode="RGB")
    return image.convert(mode) if mode != "RGB" else image


# Colours far apart in every channel: a class survives any crop, flip or resize, and the
# strong views' colour ops leave the classes apart (test_pipeline_e2e reached top-1 1.0).
PALETTE = ((220, 40, 40), (40, 200, 40), (40, 60, 220), (220, 220, 60), (200, 60, 220))


def colour_image(label: int, index: int, size: tuple[int, int] = (20, 24)) -> Image.Image:
    """A noisy image of its class's colour: a data set a small network separates in a few
    dozen steps, so a test can ask for a top-1 far above chance."""
    rng = np.random.default_rng(label * 1000 + index)
    noise = rng.normal(0, 20, (*size, 3))
    return Image.fromarray(np.clip(np.array(PALETTE[label]) + noise, 0, 255).astype(np.uint8))


def write_image_folder(root: str, classes: int = 4, train_per_class: int = 10,
                       test_per_class: int = 3, image=class_image) -> str:
    """root/{train,test}/class_<k>/<k>_<i>.{png,jpg}; alternating PNG and JPEG; `image`
    (label, index) draws each picture."""
    for part, count in (("train", train_per_class), ("test", test_per_class)):
        for label in range(classes):
            folder = os.path.join(root, part, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                ext = "png" if i % 2 == 0 else "jpg"
                image(label, i + (0 if part == "train" else 500)).save(
                    os.path.join(folder, f"{part}_{label}_{i}.{ext}"))
    return root


def write_idx(directory: str, stem: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Writes an IDX pair (gzipped) like the Fashion-MNIST distribution."""
    os.makedirs(directory, exist_ok=True)
    n, rows, cols = images.shape
    with gzip.open(os.path.join(directory, f"{stem}-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, rows, cols) + images.astype(np.uint8).tobytes())
    with gzip.open(os.path.join(directory, f"{stem}-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes())


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(str(tmp_path / "images"))


# The end-to-end groups, longest first. pytest-xdist hands out work units biggest first (by
# test count) and, among units of one size, in collection order: putting these first starts
# the long runs early on both workers, so no long test is left to run alone at the end.
LONGEST_GROUPS_FIRST = ("methods_e2e", "imagenet_e2e", "interruptions", "multi_worker",
                        "beam_modes", "pipeline_e2e")


def pytest_collection_modifyitems(items) -> None:
    def rank(item) -> int:
        marker = item.get_closest_marker("xdist_group")
        group = marker.args[0] if marker and marker.args else None
        return (LONGEST_GROUPS_FIRST.index(group) if group in LONGEST_GROUPS_FIRST
                else len(LONGEST_GROUPS_FIRST))

    items.sort(key=rank)  # stable: the file order stays within each rank
