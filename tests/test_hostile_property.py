"""Random bytes and random JSON fed to every reader of user files: only the project's own errors come out
(no IndexError, no ValueError, no MemoryError, no hang), whatever the input."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cnnlab.data.idx import parse_idx, read_idx
from cnnlab.data.preprocess import load_digit, load_scene
from cnnlab.errors import CnnlabError
from cnnlab.models.weights import read_state_dict
from cnnlab.train.config import TrainConfig
from cnnlab.train.runs import read_weights

# torch.load says so when random bytes claim an odd pickle protocol: expected here, and refused all the same
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol")
SETTINGS = settings(max_examples=int(__import__("os").environ.get("HYPOTHESIS_EXAMPLES", 150)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Bytes that look like the formats' starts, so that the readers go past their first check.
idx_headers = st.builds(lambda code, dims, rest: bytes([0, 0, code, len(dims)]) + b"".join(
    struct.pack(">I", d) for d in dims) + rest, st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]),
    st.lists(st.integers(0, 2 ** 32 - 1), max_size=4), st.binary(max_size=64))
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                       max_size=6), max_leaves=20)
config_like = st.dictionaries(st.sampled_from(["epochs", "lr", "model", "augment", "model_options", "device",
                                               "batch_size", "transfer", "seed", "schedule", "warmup", "name"]),
                              json_values, max_size=6)


def only_our_errors(call, *args):
    try:
        call(*args)
    except CnnlabError as err:
        assert "\n" not in str(err).strip()


@SETTINGS
@given(st.binary(max_size=256) | idx_headers)
def test_idx_parsing(data):
    only_our_errors(parse_idx, data)


@SETTINGS
@given(st.binary(max_size=256) | idx_headers)
def test_idx_files(tmp_path, data):
    path = tmp_path / "file.gz"
    path.write_bytes(data if data[:1] != b"\x00" else b"\x1f\x8b" + data)  # some as broken gzip
    only_our_errors(read_idx, path)


@SETTINGS
@given(st.binary(max_size=512) | st.builds(lambda b: b"\x89PNG\r\n\x1a\n" + b, st.binary(max_size=256))
       | st.builds(lambda b: b"\xff\xd8\xff\xe0" + b, st.binary(max_size=256)))
def test_images(data):
    only_our_errors(load_digit, data)
    only_our_errors(load_scene, data)


@SETTINGS
@given(st.binary(max_size=256).map(lambda b: b.decode("latin-1")) | json_values.map(json.dumps)
       | config_like.map(json.dumps))
def test_configs(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8")
    only_our_errors(lambda p: TrainConfig.load(p).validate(), path)


@SETTINGS
@given(config_like)
def test_settings(data):
    only_our_errors(lambda d: TrainConfig.from_dict(d).validate(), data)


safetensors_like = st.builds(lambda header, rest: struct.pack("<Q", len(header)) + header + rest,
                             json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64))


@SETTINGS
@given(st.binary(max_size=256) | safetensors_like)
# found by the search: safetensors's own error quotes the header's dtype, here a newline
@example(data=struct.pack("<Q", 20) + b'  {"":[{"\\n":null}]}')
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights(tmp_path, suffix, data):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(data)
    only_our_errors(read_state_dict, path)
    if suffix == ".safetensors":
        only_our_errors(read_weights, path)
