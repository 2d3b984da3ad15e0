"""The contract every registered built-in model passes (:class:`BuiltinModelContract`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from frugalml.errors import ConfigError, ModelError
from frugalml.models import list_builtin_models
from frugalml.models._builtin import build_builtin, builtin_config, get_builtin

__all__ = ["BuiltinModelContract"]


def _bad_value(default: Any) -> Any:
    """A value no knob with this default accepts: a negative count, a non-bool flag, an
    unknown choice, a probability below 0."""
    if isinstance(default, bool):
        return "yes"
    if isinstance(default, int):
        return -1
    if isinstance(default, float):
        return -1.0
    if isinstance(default, str):
        return "no-such-choice"
    return object()


class BuiltinModelContract:
    """Contract tests run once per registered built-in model (``model`` parameter).

    Every built-in has a description and knobs with defaults that validate; it builds for
    any class count and channel count and maps a batch of images of any usual size
    (8 x 8 to 64 x 64) to one finite logit per class; an unknown knob and a value out of
    range are refused with a :class:`ConfigError` that names the knob; asking for
    pretrained weights without a local file is a :class:`ModelError` with a fix.

    Subclass it (the name starting with ``Test``); override :meth:`models` to test only
    some.
    """

    #: (in_chans, height, width) inputs every built-in must take.
    input_shapes: tuple[tuple[int, int, int], ...] = ((1, 8, 8), (3, 28, 28), (1, 64, 64))

    def models(self) -> list[str]:
        """The models under test (default: every registered built-in, at collection)."""
        return list_builtin_models()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "model" in metafunc.fixturenames:
            metafunc.parametrize("model", self.models())

    def test_described_with_valid_defaults(self, model: str) -> None:
        entry = get_builtin(model)
        assert entry.name == model and entry.description and "\n" not in entry.description
        assert entry.knobs, "a built-in has knobs"
        config = builtin_config(model, {})
        assert dataclasses.asdict(config) == entry.knobs

    def test_forward_gives_one_logit_per_class(self, model: str) -> None:
        import torch

        torch.manual_seed(0)
        for in_chans, height, width in self.input_shapes:
            net = build_builtin(model, num_classes=3, in_chans=in_chans)
            net.eval()
            with torch.no_grad():
                out = net(torch.rand(2, in_chans, height, width))
            assert tuple(out.shape) == (2, 3), (in_chans, height, width)
            assert bool(torch.isfinite(out).all())
            assert sum(p.numel() for p in net.parameters()) > 0

    def test_unknown_knob_is_refused(self, model: str) -> None:
        with pytest.raises(ConfigError) as caught:
            builtin_config(model, {"no_such_knob": 1})
        assert "no_such_knob" in str(caught.value)
        assert caught.value.fix and all(k in caught.value.fix for k in get_builtin(model).knobs)

    def test_every_knob_refuses_a_bad_value(self, model: str) -> None:
        for knob, default in get_builtin(model).knobs.items():
            with pytest.raises(ConfigError) as caught:
                builtin_config(model, {knob: _bad_value(default)})
            assert knob in str(caught.value), knob

    def test_pretrained_needs_a_local_file(self, model: str) -> None:
        with pytest.raises(ModelError) as caught:
            build_builtin(model, num_classes=2, in_chans=1, pretrained=True)
        assert caught.value.fix
