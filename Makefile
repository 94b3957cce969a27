# Two commands set up everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := tools/venv
STAMP := tools/.installed
JOBS ?= 2

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml tools/install.sh
	bash tools/install.sh
	touch $(STAMP)

# The demo adds stage 9, the hybrid DNN-HMM recognizer (off by default in run.sh: on a real corpus
# it needs --lexicon; the synthetic corpus ships its own).
demo: $(STAMP)
	cd egs/librispeech && ./run.sh --hybrid true

# One test file per worker process (--dist loadfile: a module's fixtures and order stay in one process),
# JOBS workers: the recipe tests wait on chains of short subprocesses, so one process leaves cores idle.
test: $(STAMP)
	. ./path.sh && python -m pytest tests -n $(JOBS) --dist loadfile

test-fast: $(STAMP)
	. ./path.sh && python -m pytest tests -m "not slow" -n $(JOBS) --dist loadfile

bench: $(STAMP)
	. ./path.sh && python -m s3prl.bin.bench --out bench/results

clean:
	rm -rf egs/*/data egs/*/exp egs/*/dump egs/*/downloads
