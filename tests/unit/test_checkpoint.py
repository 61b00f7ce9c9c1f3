import shutil

import pytest

from evalsuite.backends import HFConfig, load_backend
from evalsuite.errors import CheckpointError
from evalsuite.models.checkpoint import check_checkpoint_dir


@pytest.fixture
def copy(tiny_model_dir, tmp_path):
    dest = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, dest)
    return dest


def test_good_checkpoint_passes(copy):
    assert check_checkpoint_dir(copy) == copy


def test_missing_and_file_paths(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        check_checkpoint_dir(tmp_path / "nope")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(CheckpointError, match="models prepare"):
        check_checkpoint_dir(gguf)


def test_missing_or_corrupt_config(copy):
    (copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt .*config.json"):
        check_checkpoint_dir(copy)
    (copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        check_checkpoint_dir(copy)


def test_truncated_weights_are_caught_before_loading(copy):
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt weights file"):
        check_checkpoint_dir(copy)
    with pytest.raises(CheckpointError, match="corrupt weights file"):
        load_backend(HFConfig(model=str(copy)))


def test_pickle_only_weights_are_refused_unless_allowed(copy):
    (copy / "model.safetensors").unlink()
    (copy / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match="pickle"):
        check_checkpoint_dir(copy)
    assert check_checkpoint_dir(copy, allow_pickle=True) == copy
    (copy / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        check_checkpoint_dir(copy)
