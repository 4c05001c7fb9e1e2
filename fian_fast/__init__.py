"""fian_fast: a fast, paper-faithful FIAN (Qu et al., ACM MM 2020) for temporal sentence grounding.

Public API::

    from fian_fast import FIAN, FIANConfig, Predictor
    model = FIAN(FIANConfig.preset("tacos"))
    predictor = Predictor.from_checkpoint("runs/syn/best.pt")     # a trained model, loaded once
    predictor.predict(["the person opens the door"], features, duration=31.5)  # [[(start, end, score), ...]]

Importing the package never imports Triton and never fails because the compiled extension is
missing; :func:`has_ops` says whether it is there.
"""
from ._extension import extension_error, has_cuda_ops, has_ops
from .config import FIANConfig
from . import ops, reference

__version__ = "0.1.0"

__all__ = ["FIANConfig", "ops", "reference", "has_ops", "has_cuda_ops", "extension_error", "__version__"]

from .model import FIAN, FIANLoss, FIANOutput, Prediction  # noqa: E402
from .predict import Predictor  # noqa: E402

__all__ += ["FIAN", "FIANOutput", "FIANLoss", "Prediction", "Predictor"]
