"""The unit tier's guard: ray.init is refused in every unit test."""

from __future__ import annotations

import pytest


def test_ray_init_is_refused() -> None:
    import ray

    with pytest.raises(RuntimeError, match="unit tests must not start Ray"):
        ray.init(num_cpus=1)
    assert not ray.is_initialized()
