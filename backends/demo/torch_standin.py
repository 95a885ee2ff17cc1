"""THE DEMO'S STAND-IN FOR PYTORCH, not PyTorch: copied onto every demo pod as
``<pod>/lib/torch/__init__.py`` (on the pod's PYTHONPATH), so ``gpuctl check`` finds a
demo pod the way it finds a real GPU pod, instead of failing on ``import torch``.

It answers only what ``sessions.preflight``'s probe asks (``__version__``,
``version.cuda``, ``cuda.is_available()``, ``cuda.device_count()``), from the simulated
GPUs' state file that the pod's fake ``nvidia-smi`` reads (``$GPUCTL_SIM_GPU_STATE``),
so torch sees as many GPUs as nvidia-smi lists and a CUDA build the simulated driver
supports. The demo's trainer never imports it. Standard library only: the pod's
PYTHONPATH holds nothing of gpuctl.
"""

import json
import os

__version__ = "2.4.0+cu124 (gpuctl demo stand-in)"


def _state():
    try:
        with open(os.environ.get("GPUCTL_SIM_GPU_STATE", ""), encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


class version:  # noqa: N801 - torch.version.cuda, as torch spells it
    cuda = str(_state().get("cuda_version") or "12.4")


class cuda:  # noqa: N801 - torch.cuda
    @staticmethod
    def device_count():
        state = _state()
        gpus = state.get("gpus")
        return len(gpus) if isinstance(gpus, list) and not state.get("fail") else 0

    @staticmethod
    def is_available():
        return cuda.device_count() > 0
