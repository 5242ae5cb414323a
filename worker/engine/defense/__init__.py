"""Defenses: harden a model (adversarial training, distillation, smoothing) or wrap it (preprocessing), and
evaluate the result adaptively (BPDA, EOT, logits) beside the undefended model.

Kept light: `worker.engine.defense.preprocessing` is imported by the model layer (defended models), so
the runner is imported from `worker.engine.defense.runner`.
"""
