//! Stage kinds: thin adapters from a task spec to models, training and evaluation.
