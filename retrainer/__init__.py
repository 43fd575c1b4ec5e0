"""driftline.retrainer: alerts become challengers in MLflow, promoted only when they beat the
champion, announced on ``driftline.models`` so the workers switch their reference.

The only package that imports mlflow; plain synchronous code in its own process
(``driftline retrainer`` or ``python -m retrainer``). Modules: ``policy`` (when to retrain),
``dataset`` (joined predictions and labels read back from Kafka), ``trainer`` (plug-ins),
``evaluation`` (challenger vs champion), ``registry`` (MLflow), ``publisher`` (ModelEvents),
``pipeline`` (one alert -> one outcome), ``service`` (the consumer loop), ``cli``.
Submodules are imported on use, so ``import retrainer`` stays cheap.
"""

__all__: list[str] = []
