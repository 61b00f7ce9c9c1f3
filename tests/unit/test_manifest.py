import json

import pytest

from evalsuite.errors import CheckpointError
from evalsuite.manifest import MANIFEST_NAME, CheckpointManifest, read_manifest, write_manifest


def test_roundtrip_keeps_unknown_fields(tmp_path):
    m = CheckpointManifest(stage="base", base_model="x", prompt_format="plain", dtype="float32", lambda_p=0.2)
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path)
    assert back.stage == "base" and back.model_extra["lambda_p"] == 0.2
    assert "torch" in back.versions and "evalsuite" in back.versions
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_NAME]  # no temp file left behind


def test_add_bos_token_is_unrecorded_in_older_manifests(tmp_path):
    old = CheckpointManifest(stage="sft", base_model="x", prompt_format="plain", dtype="float32").model_dump(mode="json")
    del old["add_bos_token"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(old))
    assert read_manifest(tmp_path).add_bos_token is None  # not recorded: not "False"
    write_manifest(tmp_path, CheckpointManifest(stage="sft", base_model="x", prompt_format="plain", dtype="float32",
                                                add_bos_token=True))
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["add_bos_token"] is True


def test_absent_and_corrupt(tmp_path):
    assert read_manifest(tmp_path) is None
    (tmp_path / MANIFEST_NAME).write_text("{")
    with pytest.raises(CheckpointError, match="corrupt manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"stage": "pretrain"}))
    with pytest.raises(CheckpointError, match="corrupt manifest"):
        read_manifest(tmp_path)
