# One-command set-up: every target below creates .venv on first use.
# torch is installed first and pinned: on machines with the local CPU wheel (torch==2.13.0) this
# avoids a multi-GB CUDA download; override with `make TORCH_SPEC="torch==2.x" ...` elsewhere.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sum_monai-installed

.PHONY: demo test test-slow lint bench busi busi-cv busi-score mias mri-phantom mri install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sum-monai demo

lint: $(STAMP)
	$(VENV)/bin/ruff check sum_monai tests bench bundles

test: $(STAMP) lint
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) -m bench all

# The two-stage BUSI recipe of the 0.3.0 weights (one split; the shipped ensemble is busi-cv) (~2 h on 2 CPU cores):
# leakage-free datalist, stage 1 (configs/busi.json), stage 2 warm-started from it
# (configs/busi_finetune.json), then the validation table of the model card.
BUSI ?= ../shared/data/busi
SUM := $(VENV)/bin/sum-monai
busi: $(STAMP)
	$(SUM) datalist busi $(BUSI) --out runs/busi/datalist.json --seed 0
	$(SUM) train --bundle breast_us_seg_2d --data runs/busi/datalist.json --config configs/busi.json --output runs/busi/main
	$(SUM) train --bundle breast_us_seg_2d --data runs/busi/datalist.json --config configs/busi.json \
		--config configs/busi_finetune.json --init runs/busi/main/models/model.pt --output runs/busi/finetune
	$(SUM) evaluate --bundle breast_us_seg_2d --run runs/busi/finetune --split validation

# Cross-validated BUSI recipe (issue of the ultrasound generalisation): 5 group-aware folds over the
# whole pool, each fold trained from scratch, scored out of fold (levers, operating point, mean +- sd),
# then the same 30 epochs twice more with a fresh cosine schedule, fold k warm-started from its own
# fold-k model (the shipped 0.6.0 weights; about 2.5 h per CV on
# 2 CPU cores, 3 CVs; the second restart took 45 min as five 1-thread `--folds K` processes at once).
# Ship: sum-monai cv ... --no-train --package DIR
busi-cv: $(STAMP)
	$(SUM) datalist busi $(BUSI) --out runs/cv/busi_folds.json --folds 5 --seed 0
	$(SUM) cv --bundle breast_us_seg_2d --data runs/cv/busi_folds.json --config configs/busi_cv.json \
		--config configs/busi_batch_dice.json --output runs/cv/busi_bdice
	$(SUM) cv --bundle breast_us_seg_2d --data runs/cv/busi_folds.json --config configs/busi_cv.json \
		--config configs/busi_batch_dice.json --init 'runs/cv/busi_bdice/fold{fold}/models/model.pt' \
		--output runs/cv/busi_restart
	$(SUM) cv --bundle breast_us_seg_2d --data runs/cv/busi_folds.json --config configs/busi_cv.json \
		--config configs/busi_batch_dice.json --init 'runs/cv/busi_restart/fold{fold}/models/model.pt' \
		--output runs/cv/busi_restart2

# The shipped ultrasound bundle's card figures re-measured on this machine, without training: each
# fold member scored on the fold it never saw (the folds are checked against the bundle's), then the
# same lever table and operating point as the CV that trained it (runs/cv/busi_shipped/cv_report.md).
busi-score: $(STAMP)
	$(SUM) datalist busi $(BUSI) --out runs/cv/busi_folds.json --folds 5 --seed 0
	$(SUM) cv --bundle breast_us_seg_2d --data runs/cv/busi_folds.json --members --output runs/cv/busi_shipped

# mini-MIAS mammography from the raw folder: datalist with circle label maps and 5 woman-grouped
# folds, then the cross-validation of configs/mias.json (FROC, film class, Dice; ~5 h on 2 CPU cores).
MIAS ?= ../shared/data/mias
mias: $(STAMP)
	$(SUM) datalist mias $(MIAS) --out runs/mias/folds.json --folds 5 --seed 0
	$(SUM) cv --bundle mammo_seg_2d --data runs/mias/folds.json --config configs/mias.json --output runs/cv/mias

# The phantom recipe of the shipped breast_mri_seg_3d weights (about 32 min of one CPU thread):
# 48 phantoms, leakage-free split, 80 epochs of configs/mri_phantom.json, the held-out test split.
MRI_PHANTOMS ?= runs/mri/phantoms
mri-phantom: $(STAMP)
	$(SUM) synth --modality mri --n 48 --format nifti --seed 0 --out $(MRI_PHANTOMS) --overwrite
	$(SUM) datalist msd $(MRI_PHANTOMS) --out $(MRI_PHANTOMS)/datalist.json --seed 0
	OMP_NUM_THREADS=1 $(SUM) train --bundle breast_mri_seg_3d --data $(MRI_PHANTOMS)/datalist.json \
		--config configs/mri_phantom.json --device cpu --output runs/mri/phantom
	$(SUM) evaluate --bundle breast_mri_seg_3d --run runs/mri/phantom --split test

# Your own DCE-MRI in the msd layout (dataset.json, labelsTr/, imagesTr/ channel files or dicom/<case>/
# series or study folders): make mri MRI=data/my_dce. Warm-started from the shipped phantom weights.
MRI ?= data/mri
mri: $(STAMP)
	$(SUM) datalist msd $(MRI) --out runs/mri/datalist.json --seed 0
	$(SUM) train --bundle breast_mri_seg_3d --data runs/mri/datalist.json --config configs/mri_msd.json \
		--init bundles/breast_mri_seg_3d/models/model.pt --output runs/mri/main
	$(SUM) evaluate --bundle breast_mri_seg_3d --run runs/mri/main --split test

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo_output
