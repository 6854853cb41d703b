"""TrainConfig rejects values of the wrong type with the key, the expected type and the value."""

from __future__ import annotations

import re

import numpy as np
import pytest

from raynas.errors import ConfigError
from raynas.train import TrainConfig


@pytest.mark.parametrize("key, value, message", [
    ("epochs", "five", "'epochs' must be an int, got 'five' (str)"),
    ("epochs", True, "'epochs' must be an int, got True (bool)"),
    ("epochs", 2.5, "'epochs' must be an int, got 2.5 (float)"),
    ("lr", [1], "'lr' must be a number, got [1] (list)"),
    ("lr", False, "'lr' must be a number, got False (bool)"),
    ("lr", "1e-3", "'lr' must be a number, got '1e-3' (str) (YAML reads a number like 1e-3 as text: write 1.0e-3)"),
    ("augment", "yes", "'augment' must be true or false, got 'yes' (str)"),
    ("augment", 1, "'augment' must be true or false, got 1 (int)"),
    ("mode", 3, "'mode' must be a string, got 3 (int)"),
    ("train_images", "all", "'train_images' must be an int or null, got 'all' (str)"),
])
def test_a_value_of_the_wrong_type_is_named(key, value, message):
    with pytest.raises(ConfigError, match=re.escape(f"training config key {message}")):
        TrainConfig.from_dict({key: value})


def test_ints_are_floats_and_numpy_scalars_become_python_ones():
    config = TrainConfig.from_dict({"lr": 1, "epochs": np.int64(3), "weight_decay": np.float32(0.5),
                                    "train_images": None})
    assert config == TrainConfig(lr=1.0, epochs=3, weight_decay=0.5)
    assert type(config.lr) is float and type(config.epochs) is int and type(config.weight_decay) is float
