"""Architecture and compression search (NAS) on Optuna, each trial a DVC experiment.

- `config`: a study from conf/search/ (space, objectives, constraint, budgets), checked
  against the pipeline's own composition before any trial runs;
- `metrics`: the objectives the pipeline produces, and where a trial's files hold them;
- `experiments`: DVC's experiment queue (queue a trial, start workers, see its state);
- `driver`: the ask-and-tell loop over an Optuna study kept in a journal file;
- `front`: the Pareto front, its hypervolume, and publishing it as zoo entries.
"""
