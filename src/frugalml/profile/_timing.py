"""Per-module forward and backward time of real training steps.

How the time of one step is split (all clocks ``time.perf_counter``; on CUDA the device is
synchronised before every clock read, so kernel time lands where it was launched):

- Forward: forward pre/post hooks keep a stack of the modules whose forward is running,
  and a :class:`torch.overrides.TorchFunctionMode` times every torch call (``F.conv2d``,
  ``x + y``, ``torch.flatten``) and books it to the innermost running module. A module's
  own forward time is therefore the time of the torch calls its own ``forward`` makes;
  its children's calls are theirs. The Python between calls is not booked to anyone.
- Backward: the same mode notes, for every tensor a call returns, which module created its
  ``grad_fn``. After the forward the autograd graph is walked from the loss: nodes made
  inside a composite call (``F.multi_head_attention_forward``) belong to the module of the
  node that consumes them, and a parameter's ``AccumulateGrad`` to the module that owns the
  parameter. Each node gets a pre-hook and a hook (``Node.register_prehook`` /
  ``Node.register_hook``) that clock its execution. On CPU the autograd engine runs the
  nodes one after another on the calling thread, so these are honest per-node times.
- The loss (forward and backward) and the optimizer (``zero_grad`` and ``step``) are timed
  as two parts of their own.

The hooks and the mode cost time themselves (a few microseconds per call and per node);
that overhead falls between the clocked intervals, not inside them, and is reported as the
untimed part of the hooked step. Energy is never measured on hooked steps.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from frugalml.train._step import TrainStep

if TYPE_CHECKING:
    import torch

__all__ = ["LOSS_KEY", "OPTIMIZER_KEY", "StepTimes", "time_training_steps"]

#: Keys of the two parts of a step that are outside the model.
LOSS_KEY = "<loss>"
OPTIMIZER_KEY = "<optimizer>"


@dataclass(frozen=True)
class StepTimes:
    """Clocked seconds of each of ``steps`` hooked training steps.

    ``forward_s`` / ``backward_s`` map a module name (``""`` is the root) or
    :data:`LOSS_KEY` to one value per step; ``optimizer_s`` is ``zero_grad`` plus ``step``
    per step; ``wall_s`` the wall time of each hooked step, overhead included;
    ``plain_s`` the wall time of the unhooked steps interleaved with the hooked ones (empty
    when there were none).
    """

    forward_s: dict[str, list[float]]
    backward_s: dict[str, list[float]]
    optimizer_s: list[float]
    wall_s: list[float]
    plain_s: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.wall_s)

    def per_step(self, statistic: str = "median") -> dict[str, tuple[float, float]]:
        """``{part: (forward_s, backward_s)}`` per step, by ``statistic`` over the steps
        (``median``, robust to a step preempted by another process, or ``mean``);
        :data:`OPTIMIZER_KEY` holds the optimizer."""
        pick = _statistic(statistic)
        keys = sorted(set(self.forward_s) | set(self.backward_s))
        zeros = [0.0] * self.steps
        out = {
            key: (pick(self.forward_s.get(key, zeros)), pick(self.backward_s.get(key, zeros)))
            for key in keys
        }
        out[OPTIMIZER_KEY] = (pick(self.optimizer_s), 0.0)
        return out

    def wall_per_step(self, statistic: str = "median") -> float:
        """A hooked step's wall time."""
        return _statistic(statistic)(self.wall_s)

    def plain_per_step(self, statistic: str = "median") -> float:
        """An unhooked step's wall time (NaN without interleaved plain steps)."""
        return _statistic(statistic)(self.plain_s) if self.plain_s else math.nan

    def untimed_fraction(self, statistic: str = "median") -> float:
        """Share of a hooked step's wall time that fell between clocked intervals (Python
        glue, the autograd engine's bookkeeping, the hooks' own overhead)."""
        wall = self.wall_per_step(statistic)
        if wall <= 0:
            return 0.0
        timed = sum(f + b for f, b in self.per_step(statistic).values())
        return max(0.0, 1.0 - timed / wall)


def _statistic(name: str) -> Callable[[Sequence[float]], float]:
    import statistics

    if name == "median":
        return lambda values: float(statistics.median(values)) if values else 0.0
    if name == "mean":
        return lambda values: float(statistics.fmean(values)) if values else 0.0
    from frugalml.errors import ConfigError

    raise ConfigError(f"unknown statistic {name!r}", fix="use 'median' or 'mean'")


class _Clock:
    def __init__(self, device: torch.device) -> None:
        import torch

        self._sync: Callable[[], None] | None = (
            (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
        )

    def __call__(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter()


def _make_mode(recorder: _Recorder) -> Any:
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_flatten

    class _TimingMode(TorchFunctionMode):
        def __torch_function__(
            self,
            func: Callable[..., Any],
            types: Sequence[type],
            args: Sequence[Any] = (),
            kwargs: dict[str, Any] | None = None,
        ) -> Any:
            owner = recorder.stack[-1]
            clock = recorder.clock
            t0 = clock()
            out = func(*args, **(kwargs or {}))
            recorder.forward_s[owner] += clock() - t0
            for leaf in tree_flatten(out)[0]:
                grad_fn = getattr(leaf, "grad_fn", None)
                if grad_fn is not None and grad_fn not in recorder.node_owner:
                    recorder.node_owner[grad_fn] = owner
            return out

    return _TimingMode()


class _Recorder:
    """The state the hooks and the mode share during the hooked steps."""

    def __init__(self, model: torch.nn.Module, clock: _Clock) -> None:
        self.clock = clock
        self.stack: list[str] = [""]
        self.forward_s: defaultdict[str, float] = defaultdict(float)
        self.backward_s: defaultdict[str, float] = defaultdict(float)
        self.node_owner: dict[Any, str] = {}
        self.param_owner: dict[int, str] = {}
        for name, module in model.named_modules():
            for param in module.parameters(recurse=False):
                self.param_owner.setdefault(id(param), name)

    def assign_graph(self, root: Any) -> list[Any]:
        """Give every node reachable from ``root`` an owner; return them all."""
        owner = self.node_owner
        owner.setdefault(root, LOSS_KEY)
        nodes = [root]
        seen = {root}
        index = 0
        while index < len(nodes):
            node = nodes[index]
            index += 1
            for child, _ in node.next_functions:
                if child is None or child in seen:
                    continue
                seen.add(child)
                if child not in owner:
                    variable = getattr(child, "variable", None)
                    if variable is not None and id(variable) in self.param_owner:
                        owner[child] = self.param_owner[id(variable)]
                    else:
                        owner[child] = owner[node]
                nodes.append(child)
        return nodes

    def hook_nodes(self, nodes: list[Any]) -> list[Any]:
        handles: list[Any] = []
        started: dict[int, float] = {}
        clock = self.clock
        backward_s = self.backward_s
        for node in nodes:
            key = id(node)
            owner = self.node_owner[node]

            def pre(grad_outputs: Any, key: int = key) -> None:
                started[key] = clock()

            def post(
                grad_inputs: Any, grad_outputs: Any, key: int = key, owner: str = owner
            ) -> None:
                t1 = clock()
                t0 = started.pop(key, None)
                if t0 is not None:
                    backward_s[owner] += t1 - t0

            handles.append(node.register_prehook(pre))
            handles.append(node.register_hook(post))
        return handles


def _add_module_hooks(
    modules: list[tuple[str, torch.nn.Module]], stack: list[str], handles: list[Any]
) -> None:
    """Forward hooks that keep ``stack`` at the module running now; their handles go to
    ``handles`` as they are made (so a failure leaves none behind)."""

    def push(name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any) -> None:
            stack.append(name)

        return hook

    def pop(module: Any, args: Any, output: Any) -> None:
        if len(stack) > 1:
            stack.pop()

    for name, module in modules:
        handles.append(module.register_forward_pre_hook(push(name)))
        handles.append(module.register_forward_hook(pop, always_call=True))


def _hooked_step(
    model: torch.nn.Module,
    recorder: _Recorder,
    mode: Any,
    modules: list[tuple[str, torch.nn.Module]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
) -> tuple[float, float]:
    """One training step with every clock on: (optimizer seconds, wall seconds); the
    forward and backward seconds per owner are left in ``recorder``."""
    clock, stack = recorder.clock, recorder.stack
    del stack[1:]
    recorder.node_owner.clear()
    recorder.forward_s.clear()
    recorder.backward_s.clear()
    module_handles: list[Any] = []
    try:
        _add_module_hooks(modules, stack, module_handles)
        start = clock()
        with mode:
            output = model(x)
            stack.append(LOSS_KEY)
            loss = loss_fn(output, y)
            stack.pop()
    finally:
        for handle in module_handles:
            handle.remove()
    t0 = clock()
    optimizer.zero_grad(set_to_none=True)
    optimizer_s = clock() - t0
    node_handles = recorder.hook_nodes(recorder.assign_graph(loss.grad_fn))
    try:
        loss.backward()  # type: ignore[no-untyped-call]
    finally:
        for handle in node_handles:
            handle.remove()
    t0 = clock()
    optimizer.step()
    end = clock()
    recorder.node_owner.clear()
    return optimizer_s + end - t0, end - start


def time_training_steps(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    device: torch.device,
    *,
    plain_steps: bool = True,
) -> StepTimes:
    """Run ``steps`` real training steps (cycling through ``batches``) with timing hooks.

    The steps train the model (forward, loss, ``zero_grad``, backward, ``step``) exactly as
    :func:`frugalml.train.train` does; only the clocks are added. With ``plain_steps``,
    each hooked step is preceded by a plain one (no hook at all, only a clock around it),
    so that the cost of an unhooked step is known under the same machine load as the
    hooked ones (``StepTimes.plain_s``). See the module docstring.
    """
    clock = _Clock(device)
    recorder = _Recorder(model, clock)
    mode = _make_mode(recorder)
    train_step = TrainStep(model, optimizer, loss_fn=loss_fn)

    def plain_step(x: torch.Tensor, y: torch.Tensor) -> float:
        start = clock()
        train_step(x, y)
        return clock() - start

    modules = list(model.named_modules())
    forward_steps: defaultdict[str, list[float]] = defaultdict(list)
    backward_steps: defaultdict[str, list[float]] = defaultdict(list)
    optimizer_steps: list[float] = []
    wall_steps: list[float] = []
    plain: list[float] = []
    for step in range(steps):
        x, y = batches[step % len(batches)]
        if plain_steps:
            plain.append(plain_step(x, y))
        optimizer_s, wall_s = _hooked_step(model, recorder, mode, modules, loss_fn, optimizer, x, y)
        optimizer_steps.append(optimizer_s)
        wall_steps.append(wall_s)
        for source, target in (
            (recorder.forward_s, forward_steps),
            (recorder.backward_s, backward_steps),
        ):
            for key in set(source) | set(target):
                target[key].extend([0.0] * (step - len(target[key])))
                target[key].append(source.get(key, 0.0))
    return StepTimes(
        forward_s=dict(forward_steps),
        backward_s=dict(backward_steps),
        optimizer_s=optimizer_steps,
        wall_s=wall_steps,
        plain_s=plain,
    )
