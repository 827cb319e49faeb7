"""Evaluation the way the paper's Table 1 scores, split by job (import the module you need):

- ``metrics``: SAD, MSE, Grad, Conn, foreground MSE, trimaps from alpha, video metrics (numpy/scipy);
- ``score``: one prediction against its ground truth (quantisation, crop to multiples of 4, units);
- ``report``: ``EvalReport``, the per-image + mean table, CSV and JSON;
- ``files``: reading predictions, ground truth and trimaps, pairing folders (``evaluate_directories``);
- ``perturb``: the supplement's test-time background perturbation (D.2), from a seed;
- ``protocol``: a model over a test set (``open_test_set``, ``evaluate_model``, ``PredictionWriter``).

See docs/evaluation.md.
"""
