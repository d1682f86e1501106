"""The typed source config: plain values, checked fields, devices refused before any work."""

import pytest
import torch

from lossatlas._errors import InputError
from lossatlas.sources import Source, import_object, resolve_device
from lossatlas.training import TrainConfig
from lossatlas.typed import from_mapping


def test_source_round_trips_as_plain_values():
    src = Source(model="pkg.mod:make", model_args={"hidden": 8}, data="x.pt", data_seed=3)
    again = Source.from_dict(src.as_dict())
    assert again == src
    assert all(isinstance(v, (str, int, float, bool, dict, type(None))) for v in src.as_dict().values())


@pytest.mark.parametrize("field, value", [("data_seed", "3"), ("augment", "yes"), ("subset", 1.5), ("model_args", [1])])
def test_wrong_types_name_the_field(field, value):
    with pytest.raises(InputError, match=rf"{field} must be"):
        Source.from_dict({field: value}, "run/config/source.yaml")


def test_unknown_keys_are_refused_with_the_known_ones():
    with pytest.raises(InputError, match=r"unknown settings \['ensemble'\]"):
        Source.from_dict({"ensemble": "vmap"})


def test_yaml_type_error_in_train_settings_names_the_field():
    with pytest.raises(InputError, match=r"train.yaml: lr must be float, got '0.1'"):
        from_mapping(TrainConfig, {"lr": "0.1"}, "train.yaml")
    assert from_mapping(TrainConfig, {"lr": 1, "milestones": [2, 3]}, "x").lr == 1


def test_cuda_is_refused_cleanly_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be shown here")
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")


def test_import_object_errors_say_how_to_fix():
    with pytest.raises(InputError, match="cannot import"):
        import_object("no_such_pkg_xyz.mod:make")
    with pytest.raises(InputError, match="has no 'nothing'"):
        import_object("torch.nn:nothing")
    with pytest.raises(InputError, match="package.module:name"):
        import_object("just_a_name")


def test_rebuilt_data_with_another_fingerprint_is_refused():
    src = Source(data="digits", subset=100, data_fingerprint="0" * 16)
    with pytest.raises(InputError, match="fingerprint"):
        src.build_data()
    real = Source(data="digits", subset=100).build_data()
    assert Source(data="digits", subset=100, data_fingerprint=real.fingerprint).build_data().fingerprint == real.fingerprint
