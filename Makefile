# Everything runs inside .venv, created on first use by `make setup` (idempotent).
# Variables: DATA=<dataset root>  EXECUTOR=local|debug|slurm  PARTITION=<slurm partition>  OUT=<results dir>
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
export BENCHMARKS_NO_PROGRESS ?= 0

.PHONY: setup demo audio-demo audio-demo-data espeak-ng test parity-report check-data test-fast bench-step step-ops triton-check bench-engine tables plots report compare \
        reproduce-toy reproduce-imagenet reproduce-retrieval reproduce-lm reproduce-audio reproduce-all \
        slurm-up slurm-down clean

setup: $(STAMP)
$(STAMP): requirements.txt requirements-lock.txt pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c requirements-lock.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

## The README's main command: the paper's toy problems and the digits multi-optimizer demo, then tables,
## the comparison against AdamP and a report. Everything lands under $(OUT)/ (git-ignored).
demo: setup
	$(RUN) configs/toy/toy2d.yaml --out $(OUT)/toy2d
	$(RUN) configs/toy/toy3d.yaml --out $(OUT)/toy3d
	$(PYTHON) scripts/toy_report.py $(OUT)/toy2d $(OUT)/toy3d --out $(OUT)/toy-report --no-animation
	$(RUN) configs/demo/digits.yaml --out $(OUT)/digits
	$(PYTHON) -m benchmarks report $(OUT)/digits
	$(PYTHON) -m benchmarks compare $(OUT)/digits --baseline adamp
	@echo "toy tables: $(OUT)/toy-report/table.md | digits report: $(OUT)/digits/report.md"

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

# tables / plots / report: every results folder under $(OUT) (the demo's: toy2d, toy3d, digits), or SWEEP=name.
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
	$(PYTHON) -m benchmarks compare $(OUT)/$(or $(SWEEP),digits) --baseline $(or $(BASELINE),adamp)

reproduce-toy: setup
	$(RUN) configs/toy/toy2d.yaml --out $(OUT)/toy2d
	$(RUN) configs/toy/toy3d.yaml --out $(OUT)/toy3d
	$(RUN) configs/toy/toy2d_lr_sweep.yaml --out $(OUT)/toy2d_lr_sweep
	$(PYTHON) scripts/toy_report.py $(OUT)/toy2d $(OUT)/toy3d $(OUT)/toy2d_lr_sweep --out results/toy

check-data:
	@test -n "$(DATA)" || { echo "error: set DATA=/path/to/dataset (see README: Reproducing the paper)" >&2; exit 2; }

reproduce-imagenet: setup check-data
	$(RUN) configs/paper/table1_*.yaml configs/paper/table2_*.yaml --set data.root=$(DATA) --out $(OUT)/imagenet
	$(PYTHON) -m benchmarks tables $(OUT)/imagenet

# DATA holds CUB_200_2011/, cars196/, Stanford_Online_Products/, InShop/; WEIGHTS is torchvision's ImageNet
# ResNet-50 state dict on local disk (never downloaded).
WEIGHTS ?= weights/resnet50-0676ba61.pth
reproduce-retrieval: setup check-data
	$(RUN) configs/paper/table6_*.yaml --set data.root=$(DATA) --set model.pretrained_path=$(WEIGHTS) --out $(OUT)/retrieval
	$(PYTHON) -m benchmarks tables $(OUT)/retrieval

# DATA: the folder holding wiki.{train,valid,test}.tokens (or its parent with wikitext-103/).
reproduce-lm: setup check-data
	$(RUN) configs/paper/table7_transformer_xl.yaml configs/paper/table7_transformer_xl_wn.yaml \
	  --set data.root=$(DATA) --out $(OUT)/lm
	$(PYTHON) -m benchmarks tables $(OUT)/lm

# DATA holds speech_commands_v0.02/, magnatagatune/, dcase2017_task4/ (layouts: benchmarks/data/audio.py).
reproduce-audio: setup check-data
	$(RUN) configs/paper/table5_speech_commands.yaml --set data.root=$(DATA)/speech_commands_v0.02 --out $(OUT)/audio
	$(RUN) configs/paper/table5_magnatagatune.yaml --set data.root=$(DATA)/magnatagatune --out $(OUT)/audio
	$(RUN) configs/paper/table5_dcase2017.yaml --set data.root=$(DATA)/dcase2017_task4 --out $(OUT)/audio
	$(PYTHON) -m benchmarks tables $(OUT)/audio

reproduce-all: reproduce-toy reproduce-imagenet reproduce-retrieval reproduce-lm reproduce-audio
	for d in $(OUT)/imagenet $(OUT)/retrieval $(OUT)/lm $(OUT)/audio; do $(PYTHON) -m benchmarks report $$d; done

slurm-up:
	bash scripts/slurm_local.sh up

slurm-down:
	bash scripts/slurm_local.sh down

clean:
	rm -rf .pytest_cache .hypothesis
