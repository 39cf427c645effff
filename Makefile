# `make demo` and `make test` do all set-up on a fresh machine: they create .venv if it is
# missing and install camkit with what it needs (the stamp file is redone when pyproject.toml changes).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.camkit-installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench study seg-study compare-study notebooks lint clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev,notebooks,timm]'
	$(PIP) --no-deps 'grad-cam>=1.5' 'quantus>=0.5'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/camkit demo

test: $(STAMP)
	$(PY) -m ruff check camkit tests benchmarks notebooks
	$(PY) -m pytest

# Re-execute the notebooks and write their outputs in place (the demo's models are reused from
# camkit-demo/ or trained there); `make test` fails when the committed outputs are stale.
notebooks: $(STAMP)
	$(PY) notebooks/execute.py

# The channel-variant study of the README: variants C = 2048, 512, 128 of the demo classifier,
# fine-tuned one epoch each (layer4.2 + fc), compared on the demo's 200 held-out images.
STUDY := camkit-demo/variants
study: $(STAMP)
	$(VENV)/bin/camkit demo
	$(VENV)/bin/camkit data shapes --out $(STUDY)/test --n 200 --size 128 --seed 2
	for c in 2048 512 128; do \
	  $(VENV)/bin/camkit variant --channels $$c --from camkit-demo/classifier.ckpt \
	    --data camkit-demo/data/train --val camkit-demo/data/val --out $(STUDY)/c$$c.ckpt --epochs 1 || exit 1; \
	done
	for s in 16 32; do \
	  $(VENV)/bin/camkit variants compare camkit-demo/classifier.ckpt $(STUDY)/c2048.ckpt $(STUDY)/c512.ckpt \
	    $(STUDY)/c128.ckpt --data $(STUDY)/test --output-stride $$s --out $(STUDY)/compare-stride$$s || exit 1; \
	done

# The segmenter comparison of the README: the notes' `seed` ResUNet against the `unet`, both
# trained on the same 160 images (seed costs ~17x more per image on a CPU).
seg-study: $(STAMP)
	$(VENV)/bin/camkit demo --compare-seed 160

# The heatmap-vs-mask table of the README: Grad-CAM at layer4.2 of the demo classifier against
# the ground-truth masks and against the demo ResUNet's predicted masks, on 200 held-out images.
CMP := camkit-demo/compare
compare-study: $(STAMP)
	$(VENV)/bin/camkit demo
	$(VENV)/bin/camkit data shapes --out $(CMP)/test --n 200 --size 128 --seed 2
	for s in 16 32; do \
	  $(VENV)/bin/camkit compare $(CMP)/test/images --masks $(CMP)/test/masks --weights camkit-demo/classifier.ckpt \
	    --output-stride $$s --out $(CMP)/truth-stride$$s || exit 1; \
	  $(VENV)/bin/camkit compare $(CMP)/test/images --segmenter camkit-demo/segmenter-unet.ckpt \
	    --weights camkit-demo/classifier.ckpt --output-stride $$s --out $(CMP)/resunet-stride$$s || exit 1; \
	done

bench: $(STAMP)
	$(PY) benchmarks/bench_explain.py
	$(PY) benchmarks/bench_methods.py
	$(PY) benchmarks/bench_forward.py
	$(PY) benchmarks/bench_export.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
