"""The instructor and CI application: the `labkit` command and what it runs.

- `cli`: the `labkit` command (doctor, run, batch, release, quiz);
- `envcheck`: `labkit doctor` / `labkit.doctor()`;
- `runner`: `labkit run` and `execute_notebook` (one papermill run in a child process);
- `batch`, `batch_report`: `labkit batch SPEC.yaml` and its reports;
- `release`: `labkit release` (student notebooks and compiled quiz banks from solutions/);
- `bands`: reference bands (batches/reference_bands.yaml); `notebooks`: notebook names -> files.

This layer sits above the lesson modules (labkit.assets, labkit.train, ...), which sit above the private leaf
modules (labkit._io, labkit._tables, labkit._torchutil); lower layers never import upper ones (the contract is in
pyproject.toml, tests/test_layers.py checks it). `python -m labkit` runs `cli`.
"""
