"""The instructor and CI application: the `labkit` command and what it runs.

- `cli`: the `labkit` command (doctor, run, batch, release, quiz);
- `envcheck`: `labkit doctor` / `labkit.doctor()`;
- `runner`: `labkit run`; `parameters`: the notebooks' declared parameters, tiers and their checks;
- `execution`: `execute_notebook` (one papermill run in a child process), shared by `run` and `batch`;
- `batch`, `batch_spec`, `batch_report`: `labkit batch SPEC.yaml`, its spec and its reports;
- `release`: `labkit release` (student notebooks and compiled quiz banks from solutions/);
- `sitting`: `labkit sitting` (each student notebook's estimated working time, against one class sitting);
- `ledger_check`, `reproductions`: the published claims ledger and its reproduction reports;
- `nbval_mode`: whether nbval compares the committed numbers exactly on this machine (conftest.py);
- `bands`: reference bands (batches/reference_bands.yaml); `notebooks`: notebook names -> files.

This layer sits above the course (labkit.claims, labkit.params, ...), the lessons (labkit.features, ...), the core
(labkit.train, labkit.data, ...) and the private leaf modules (labkit._io, ...); lower layers never import upper
ones (the contract is in pyproject.toml, tests/test_layers.py checks it). `python -m labkit` runs `cli`.
"""
