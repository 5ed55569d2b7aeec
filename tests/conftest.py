"""Test set-up: tf-keras before TensorFlow is imported (TFX_NOTES section 2), and fixtures that
write small image data sets."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import gzip  # noqa: E402
import io  # noqa: E402
import struct  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning, module="google.*")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_SUBSETS = os.path.join(os.path.dirname(REPO), "shared", "data", "imagenet_subsets")


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


def write_image_folder(root: str, classes: int = 4, train_per_class: int = 10,
                       test_per_class: int = 3) -> str:
    """root/{train,test}/class_<k>/<k>_<i>.{png,jpg}; alternating PNG and JPEG."""
    for part, count in (("train", train_per_class), ("test", test_per_class)):
        for label in range(classes):
            folder = os.path.join(root, part, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                ext = "png" if i % 2 == 0 else "jpg"
                class_image(label, i + (0 if part == "train" else 500)).save(
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
