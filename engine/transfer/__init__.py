"""Transfer: train finite networks from scratch on a distilled set and test them on real data.

"Transfer" is the one word for this in the engine, the CLI (``dgkip-engine transfer``) and the app
(Run › Transfer…); bounds computed from the kernel model are "certificates" (:mod:`engine.certify`).

- :mod:`engine.transfer.networks` — the networks (MLP, ConvNet-3, ResNet-18) built for the data's shape;
- :mod:`engine.transfer.training` — recipes, the seeded training loop and :func:`run_transfer` on arrays;
- :mod:`engine.transfer.exported` — :func:`transfer_exported`: an export folder against a real dataset,
  with the results merged into its ``manifest.json``.
"""
from engine.transfer.exported import transfer_exported
from engine.transfer.networks import NETWORKS, make_network
from engine.transfer.training import (LABEL_LOSSES, QUICK_EPOCHS, RECIPES, TransferProgress, TransferScore,
                                      TransferSummary, label_loss_for, resolve_recipe, run_transfer,
                                      train_and_test)

__all__ = ["LABEL_LOSSES", "NETWORKS", "QUICK_EPOCHS", "RECIPES", "TransferProgress", "TransferScore",
           "TransferSummary", "label_loss_for", "make_network", "resolve_recipe", "run_transfer",
           "train_and_test", "transfer_exported"]
