//! Executors: the local worker pool (and Slurm), and the worker entry point `mlvf task run`.
