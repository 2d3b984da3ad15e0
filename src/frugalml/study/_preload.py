"""Imported once by the local executor's forkserver, so that a forked trial does not pay
these imports (torch and timm: 1.8 s median here; scikit-learn's datasets, which load
digits, and metrics). Nothing runs at import beyond imports."""

from __future__ import annotations

import sklearn.datasets  # digits: 2.7-5.4 s to import after torch here, under load
import sklearn.metrics  # noqa: F401
import timm  # noqa: F401
import torch  # noqa: F401

import frugalml.data
import frugalml.meter
import frugalml.models
import frugalml.study._results
import frugalml.study._store
import frugalml.study._trial
import frugalml.study._worker
import frugalml.train  # noqa: F401
