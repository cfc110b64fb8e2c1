"""Training: fit the learned predictors and encoders, adapt them to a new device, score them.

>>> from costmodel.training import train, pretrain, adapt, load_rows, report
>>> train("dippm", epochs=100, output="my_dippm")        # costmodel train ... -o my_dippm
>>> pretrain("gae", corpus=500, epochs=5, output="gae")  # costmodel pretrain ...
>>> adapt("dippm", load_rows("rows.jsonl", device="cpu"), shots=32)

The ``costmodel train``, ``pretrain`` and ``adapt`` commands parse their
flags and call these functions.
"""

from .adapt import AdaptResult, adapt, load_rows
from .artifacts import TrainResult, artifact_dir, pretrained_dir, user_data_dir
from .metrics import acc_within, kendall_tau, mape, report, rmse
from .pretrain import METHODS, pretrain
from .train import PREDICTORS, train

__all__ = [
    "METHODS",
    "PREDICTORS",
    "AdaptResult",
    "TrainResult",
    "acc_within",
    "adapt",
    "artifact_dir",
    "kendall_tau",
    "load_rows",
    "mape",
    "pretrain",
    "pretrained_dir",
    "report",
    "rmse",
    "train",
    "user_data_dir",
]
