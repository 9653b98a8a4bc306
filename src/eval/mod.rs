//! Evaluation: the benchmark format, generation, scorers and lmms-eval-shaped outputs.
