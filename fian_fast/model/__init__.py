"""The FIAN model (paper section 3): encoders, CGA, iterative attention, video-enhanced
integration, localization head, loss and decoding."""
from .decode import Prediction
from .fian import FIAN, FIANOutput
from .loss import FIANLoss

__all__ = ["FIAN", "FIANOutput", "FIANLoss", "Prediction"]
