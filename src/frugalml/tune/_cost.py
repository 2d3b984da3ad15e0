"""What a trial will cost before it runs: a prediction from its knobs, refined by the trials.

A configuration's knobs (model and its arguments, batch size, epochs) give, with the
dataset's split sizes and :func:`frugalml.models.count_costs`:

- ``flops``: floating-point operations of the trial, ``epochs x (3 x forward FLOPs per
  sample x training samples + forward FLOPs x validation samples)`` (a backward pass
  counted as twice the forward);
- ``steps``: batches, ``epochs x (ceil(train / batch) + ceil(validation / batch))``: on small
  models the per-batch overhead (Python, the optimiser, kernel launches) costs more than
  the arithmetic;
- one per trial: setting up the model and data.

:class:`CostModel` predicts ``energy_j = a x flops + b x steps + c`` with ``a, b, c >= 0``
(non-negative least squares, :func:`scipy.optimize.nnls`) fitted to the trials so far
(their whole-trial energy, sampler included, over the epochs they ran). Before three
trials with distinct knobs have run, the prediction scales a reference figure (the
calibration epoch or the trials' mean per epoch) by ``(flops / flops_ref + steps /
steps_ref) / 2`` per epoch (half of it by arithmetic, half by batches: a stated prior, not a
measurement), plus the trials' mean energy outside their epochs (set-up, sampler: a
pruned trial counts its epochs and one such part, not its whole energy over few epochs).
From four trials on, whichever of the two predicts the trials better when
each is left out in turn is used; :attr:`CostModel.error` is that leave-one-out median
relative error, the error a prediction states.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError
from frugalml.tune._planning import split_trial_energy

if TYPE_CHECKING:
    from frugalml.tune._results import TrialSummary
    from frugalml.tune._tuner import Tuner

#: Training FLOPs per forward FLOP (forward plus a backward of about twice the forward).
TRAIN_FLOPS_FACTOR = 3.0


@dataclass(frozen=True)
class Knobs:
    """A configuration's cost-relevant knobs, and the work they mean."""

    epochs: int
    batch_size: int
    forward_flops: float  # per sample
    train_samples: int
    val_samples: int

    @property
    def flops(self) -> float:
        per_epoch = self.forward_flops * (
            TRAIN_FLOPS_FACTOR * self.train_samples + self.val_samples
        )
        return self.epochs * per_epoch

    @property
    def steps(self) -> float:
        per_epoch = math.ceil(self.train_samples / self.batch_size) + math.ceil(
            self.val_samples / self.batch_size
        )
        return float(self.epochs * per_epoch)

    def features(self) -> tuple[float, float, float]:
        return (self.flops, self.steps, 1.0)

    def per_epoch(self) -> Knobs:
        return Knobs(1, self.batch_size, self.forward_flops, self.train_samples, self.val_samples)


@dataclass(frozen=True)
class Observation:
    """A trial that ran: its knobs (with the epochs it ran), its energy (sampler's work
    included) and the part of it outside its epochs (set-up, sampler; 0: not known)."""

    knobs: Knobs
    energy_j: float
    per_trial_j: float = 0.0


@dataclass(frozen=True)
class Reference:
    """A measured per-epoch energy of one configuration (the prior's anchor)."""

    knobs: Knobs  # one epoch
    energy_j: float


def _prior(reference: Reference, knobs: Knobs, per_trial_j: float = 0.0) -> float:
    ref = reference.knobs
    scale = 0.5 * knobs.per_epoch().flops / max(ref.flops, 1.0) + 0.5 * knobs.per_epoch().steps / (
        max(ref.steps, 1.0)
    )
    return reference.energy_j * scale * knobs.epochs + per_trial_j


def _per_trial(observations: Sequence[Observation]) -> float:
    """The observed trials' mean energy outside their epochs (0 without any)."""
    return sum(o.per_trial_j for o in observations) / len(observations) if observations else 0.0


def _fit(observations: Sequence[Observation]) -> tuple[float, float, float] | None:
    import numpy as np
    from scipy.optimize import nnls

    if len({o.knobs.features() for o in observations}) < 3:
        return None
    # columns scaled to comparable magnitudes so the solver is well conditioned
    matrix = np.array([o.knobs.features() for o in observations], dtype=float)
    scale = np.maximum(np.abs(matrix).max(axis=0), 1e-12)
    target = np.array([o.energy_j for o in observations], dtype=float)
    coefficients, _ = nnls(matrix / scale, target)
    a, b, c = (coefficients / scale).tolist()
    return (a, b, c)


def _relative_error(predicted: float, actual: float) -> float:
    return abs(predicted - actual) / actual if actual > 0 else math.nan


@dataclass
class CostModel:
    """Predicts a trial's energy (J) from its knobs (see the module docstring)."""

    reference: Reference | None = None
    coefficients: tuple[float, float, float] | None = None
    use_fit: bool = False
    error: float = math.nan  # leave-one-out median relative error; NaN: not yet known
    observations: tuple[Observation, ...] = ()
    per_trial_j: float = 0.0  # the prior's part outside the epochs: the trials' mean

    @classmethod
    def fitted(
        cls, observations: Sequence[Observation], reference: Reference | None = None
    ) -> CostModel:
        """The model refined by ``observations``; ``reference`` anchors the prior (default:
        the observations' mean energy per epoch at their mean knobs)."""
        ran = [o for o in observations if o.knobs.epochs > 0 and math.isfinite(o.energy_j)]
        if reference is None and ran:
            reference = _mean_reference(ran)
        model = cls(reference=reference, observations=tuple(ran), per_trial_j=_per_trial(ran))
        model.coefficients = _fit(ran)
        if len(ran) >= 4:
            prior_errors, fit_errors = [], []
            for i, held in enumerate(ran):
                rest = ran[:i] + ran[i + 1 :]
                anchor = reference if reference is not None else _mean_reference(rest)
                guess = _prior(anchor, held.knobs, _per_trial(rest))
                prior_errors.append(_relative_error(guess, held.energy_j))
                fitted = _fit(rest)
                if fitted is not None:
                    fit_errors.append(_relative_error(_linear(fitted, held.knobs), held.energy_j))
            prior_error = statistics.median(e for e in prior_errors if math.isfinite(e))
            fit_error = (
                statistics.median(e for e in fit_errors if math.isfinite(e))
                if len(fit_errors) == len(ran)
                else math.inf
            )
            model.use_fit = model.coefficients is not None and fit_error < prior_error
            model.error = fit_error if model.use_fit else prior_error
        return model

    def predict(self, knobs: Knobs) -> float | None:
        """Predicted energy (J) of a trial with ``knobs``; None without any reference."""
        if self.use_fit and self.coefficients is not None:
            return _linear(self.coefficients, knobs)
        if self.reference is None:
            return None
        return _prior(self.reference, knobs, self.per_trial_j)

    def describe(self) -> str:
        how = (
            "non-negative fit of energy to FLOPs, batches and a per-trial constant over "
            f"{len(self.observations)} trial(s)"
            if self.use_fit
            else "reference epoch scaled by FLOPs and batches (half each)"
        )
        error = "" if math.isnan(self.error) else f", leave-one-out median error {self.error:.0%}"
        return how + error


def _linear(coefficients: tuple[float, float, float], knobs: Knobs) -> float:
    a, b, c = coefficients
    flops, steps, one = knobs.features()
    return a * flops + b * steps + c * one


def _mean_reference(observations: Sequence[Observation]) -> Reference:
    epochs = sum(o.knobs.epochs for o in observations)
    energy = sum(o.energy_j - o.per_trial_j for o in observations) / max(epochs, 1)
    n = len(observations)
    first = observations[0].knobs
    flops = sum(o.knobs.forward_flops for o in observations) / n
    batch = round(statistics.median(o.knobs.batch_size for o in observations))
    return Reference(Knobs(1, max(batch, 1), flops, first.train_samples, first.val_samples), energy)


#: The parameters besides ``model.*`` that :class:`Knobs` depend on.
_KNOB_PARAMS = ("batch_size", "epochs")


class KnobCounter:
    """Turns a trial's parameters into :class:`Knobs` (FLOPs counted once per model)."""

    def __init__(
        self,
        count_flops: Callable[[str, dict[str, Any]], float],
        *,
        model: str,
        model_args: Mapping[str, Any],
        training: Any,
        train_samples: int,
        val_samples: int,
    ) -> None:
        if train_samples < 1:
            raise ConfigError(
                "the training split is empty", fix="use a larger fraction of the dataset"
            )
        self._count = count_flops
        self._model = model
        self._model_args = dict(model_args)
        self._training = training
        self._train = train_samples
        self._val = val_samples
        self._flops: dict[str, float] = {}
        self._knobs: dict[str, Knobs] = {}

    def knobs(self, params: Mapping[str, Any], epochs: int | None = None) -> Knobs:
        """The knobs of a trial with ``params`` (``epochs``: those it ran, default planned);
        kept per value of the parameters that set them (``model.*``, batch size, epochs), so
        the sampler's candidates, which differ mostly in the others, cost a look-up."""
        costly = [(k, v) for k, v in params.items() if k.startswith("model.") or k in _KNOB_PARAMS]
        cache_key = repr((costly, epochs))
        known = self._knobs.get(cache_key)
        if known is None:
            known = self._knobs[cache_key] = self._count_knobs(dict(costly), epochs)
        return known

    def _count_knobs(self, params: Mapping[str, Any], epochs: int | None) -> Knobs:
        from frugalml.tune._space import apply_params

        config, name, args = apply_params(params, self._training, self._model, self._model_args)
        key = repr((name, sorted(args.items())))
        if key not in self._flops:
            self._flops[key] = float(self._count(name, args))
        return Knobs(
            epochs=config.epochs if epochs is None else epochs,
            batch_size=int(config.batch_size),
            forward_flops=self._flops[key],
            train_samples=self._train,
            val_samples=self._val,
        )


class TrialCosts:
    """A tuner's cost predictions: per configuration (:class:`CostModel` over its trials,
    anchored on its calibration), the energy its budget has left, the trials it affords."""

    def __init__(self, tuner: Tuner) -> None:
        from frugalml.models import count_costs

        dataset = tuner._dataset
        if dataset is None:
            raise RuntimeError("the tuner has not loaded its dataset")
        spec = tuner.spec
        shape = (dataset.channels, *dataset.image_size)

        def count_flops(name: str, args: dict[str, Any]) -> float:
            model = tuner._create_model(name, args, dataset)
            return float(count_costs(model, shape).flops_per_sample)

        self._tuner = tuner
        self.counter = KnobCounter(
            count_flops,
            model=spec.model,
            model_args=spec.model_args,
            training=spec.training,
            train_samples=len(dataset.train.labels),
            val_samples=len(dataset.val.labels),
        )
        model_name = spec.search_space.get("model.name")
        self._base: dict[str, Any] = (
            {"model.name": model_name.choices[0]} if model_name is not None else {}
        )
        self._cached: tuple[tuple[Any, ...], CostModel] | None = None

    def model(self, trials: list[TrialSummary] | None = None) -> CostModel:
        """The cost model refined by every trial that ran so far (``trials``: as just read;
        refitted only when the trials changed: the fit with its leave-one-out check is the
        sampler's energy too)."""
        ran = [
            t
            for t in (self._summaries() if trials is None else trials)
            if t.epochs > 0 and math.isfinite(t.energy_j) and t.state != "skipped"
        ]
        calibration = self._tuner.calibration
        key = (
            tuple((t.number, t.epochs, t.total_energy_j) for t in ran),
            None if calibration is None else calibration.energy_j_per_epoch,
        )
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        observations = [
            Observation(
                self.counter.knobs(t.params, epochs=t.epochs),
                t.total_energy_j,
                split_trial_energy(t)[1],
            )
            for t in ran
        ]
        reference = None
        if calibration is not None:
            knobs = self.counter.knobs(self._base, epochs=1)
            reference = Reference(knobs, calibration.energy_j_per_epoch)
        model = CostModel.fitted(observations, reference)
        self._cached = (key, model)
        return model

    def _summaries(self) -> list[TrialSummary]:
        """The tuner's trials as recorded (:meth:`Tuner.trials`), read without copying each
        Optuna trial (this runs on every ask: the sampler's energy)."""
        from frugalml.tune._results import TrialSummary

        frozen = self._tuner.study.get_trials(deepcopy=False)
        return [TrialSummary.from_frozen(t) for t in sorted(frozen, key=lambda t: t.number)]

    def predict(
        self, params: Mapping[str, Any], trials: list[TrialSummary] | None = None
    ) -> float | None:
        """Predicted energy (J) of a trial with (decoded) ``params`` (``trials``: as just
        read; None: read them)."""
        return self.model(trials).predict(self.counter.knobs(params))

    def predict_candidates(
        self, candidates: list[dict[str, Any]], trials: list[TrialSummary] | None = None
    ) -> list[float | None]:
        """Predicted energy (J) of each of Optuna's candidate parameter sets."""
        model = self.model(trials)
        return [model.predict(self.counter.knobs(self._decode(c))) for c in candidates]

    def costs_and_left(
        self, candidates: list[dict[str, Any]]
    ) -> tuple[list[float | None], float | None]:
        """:meth:`predict_candidates` and :meth:`remaining_j` from one read of the trials."""
        trials = self._summaries()
        return self.predict_candidates(candidates, trials), self.remaining_j(trials)

    def _decode(self, optuna_params: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna's parameter values -> the values a trial applies (list choices decoded)."""
        from frugalml.tune._space import _encode

        decoded = dict(optuna_params)
        for param in self._tuner.spec.search_space.params:
            if param.type == "categorical" and param.name in decoded:
                encoded = [_encode(c) for c in param.choices]
                if decoded[param.name] in encoded:
                    decoded[param.name] = param.choices[encoded.index(decoded[param.name])]
        return decoded

    def remaining_j(self, trials: list[TrialSummary] | None = None) -> float | None:
        """Joules the energy budget has left (None: no energy limit; ``trials``: as just
        read)."""
        limit = self._tuner.spec.budget.energy_kwh
        if limit is None:
            return None
        from frugalml.meter import J_PER_KWH

        spent_j = self._tuner._spent(self._summaries() if trials is None else trials)[0]
        return limit * J_PER_KWH - spent_j

    def affordable_trials(self) -> float | None:
        """About how many trials the budget affords in all (those run included)."""
        spec = self._tuner.spec
        trials = [t for t in self._tuner._trials() if t.counted]
        estimates = []
        if spec.budget.max_trials is not None:
            estimates.append(float(spec.budget.max_trials))
        left = self.remaining_j()
        if left is not None:
            typical = self.predict(self._base)
            if typical is not None and typical > 0:
                estimates.append(len(trials) + max(left, 0.0) / typical)
        return min(estimates) if estimates else None
